"""Plugins named by import path (molmomotion_ros.plugins)."""

import pytest

from molmomotion_ros.plugins import PluginError, load_object, with_entry_points


def test_an_import_path_leads_to_its_object():
    from molmomotion_ros.camera import PinholeCamera

    assert load_object("molmomotion_ros.camera:PinholeCamera") is PinholeCamera
    assert load_object("molmomotion_ros.camera:PinholeCamera.from_yaml") == PinholeCamera.from_yaml


@pytest.mark.parametrize("path, words", [
    ("molmomotion_ros.camera", "package.module:attribute"),
    ("molmomotion_ros.no_such_module:X", "cannot import"),
    ("molmomotion_ros.camera:NoSuchThing", "has no 'NoSuchThing'"),
])
def test_a_bad_import_path_is_a_plugin_error_naming_it(path, words):
    with pytest.raises(PluginError, match=words):
        load_object(path)


def test_built_in_names_win_over_entry_points():
    assert with_entry_points({"x": "a:b"}, group="molmomotion_ros.no_such_group") == {"x": "a:b"}
