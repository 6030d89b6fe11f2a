"""Full message definitions for MCAP schemas (bags/definitions.py): rosbag2's concatenated format, built from the
installed .msg files (nested types, each once, dependencies in sorted order), the .idl fallback, and a missing
definition named with its cause."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mcap_ros2._dynamic import generate_dynamic, serialize_dynamic

from molmomotion_ros.bags import DefinitionNotFoundError, DefinitionSource
from molmomotion_ros.bags.definitions import SEPARATOR, msg_dependencies

SHARE = Path(sys.prefix) / "share"


def installed(type_path: str) -> str:
    return (SHARE / type_path).read_text()


def test_separator_is_80_equals_signs():
    assert SEPARATOR == "=" * 80 + "\n"


def test_image_nests_header_and_time_as_installed():
    """sensor_msgs/Image → std_msgs/Header → builtin_interfaces/Time, depth first, each text verbatim."""
    definition = DefinitionSource([Path(sys.prefix)]).get("sensor_msgs/msg/Image")
    assert definition.encoding == "ros2msg"
    assert definition.type_name == "sensor_msgs/msg/Image"
    assert definition.text == (
        installed("sensor_msgs/msg/Image.msg")
        + "\n" + "=" * 80 + "\nMSG: std_msgs/Header\n" + installed("std_msgs/msg/Header.msg")
        + "\n" + "=" * 80 + "\nMSG: builtin_interfaces/Time\n" + installed("builtin_interfaces/msg/Time.msg"))


def test_tf_message_holds_every_nested_type_once():
    text = DefinitionSource([Path(sys.prefix)]).get("tf2_msgs/msg/TFMessage").text
    nested = [line[5:] for line in text.splitlines() if line.startswith("MSG: ")]
    assert nested == ["geometry_msgs/TransformStamped", "geometry_msgs/Transform", "geometry_msgs/Quaternion",
                      "geometry_msgs/Vector3", "std_msgs/Header", "builtin_interfaces/Time"]


@pytest.mark.parametrize("type_name", ["sensor_msgs/msg/Image", "tf2_msgs/msg/TFMessage", "sensor_msgs/msg/CameraInfo",
                                       "trajectory_msgs/msg/MultiDOFJointTrajectory",
                                       "visualization_msgs/msg/MarkerArray", "diagnostic_msgs/msg/DiagnosticArray"])
def test_an_independent_parser_reads_the_definition(type_name):
    """mcap_ros2 (what Foxglove's Python counterpart uses) builds an encoder and decoder from the text alone."""
    text = DefinitionSource([Path(sys.prefix)]).get(type_name).text
    assert type_name in serialize_dynamic(type_name, text)
    assert type_name in generate_dynamic(type_name, text)


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / "share" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


TREE = {
    "demo_msgs/msg/Basic.msg": "float32 c\n",
    "demo_msgs/msg/Complex.msg": "demo_msgs/Basic b\n",
    # A comment naming a type, a bare same-package type, a constant, a bounded string and array, a repeat.
    "demo_msgs/msg/Root.msg": "# not a field: demo_msgs/Ghost g\nZed[] zeds\nother_msgs/Alpha alpha  # trailing\n"
                              "uint8 FLAG=1\nstring<=5 short\nother_msgs/Alpha[<=3] again\n",
    "demo_msgs/msg/Zed.msg": "other_msgs/Alpha a\nfloat64 z\n",
    "other_msgs/msg/Alpha.msg": "int32 a\n",
    "demo_msgs/msg/Broken.msg": "demo_msgs/Missing m\n",
    "demo_msgs/msg/OnlyIdl.idl": '#include "other_msgs/msg/Alpha.idl"\n\nmodule demo_msgs {\n  module msg {\n'
                                 "    struct OnlyIdl {\n      other_msgs::msg::Alpha a;\n    };\n  };\n};\n",
    "other_msgs/msg/Alpha.idl": "module other_msgs {\n  module msg {\n    struct Alpha {\n      int32 a;\n    };\n"
                                "  };\n};\n",
}


def test_one_nested_type_in_rosbag2_form(tmp_path):
    source = DefinitionSource([write_tree(tmp_path, TREE)])
    assert source.get("demo_msgs/msg/Complex").text == (
        "demo_msgs/Basic b\n\n" + "=" * 80 + "\nMSG: demo_msgs/Basic\nfloat32 c\n")
    assert source.get("demo_msgs/Complex").text == source.get("demo_msgs/msg/Complex").text


def test_dependencies_sorted_depth_first_each_once(tmp_path):
    source = DefinitionSource([write_tree(tmp_path, TREE)])
    assert msg_dependencies(TREE["demo_msgs/msg/Root.msg"], "demo_msgs") == ["demo_msgs/Zed", "other_msgs/Alpha"]
    assert source.get("demo_msgs/msg/Root").text == (
        TREE["demo_msgs/msg/Root.msg"]
        + "\n" + SEPARATOR + "MSG: demo_msgs/Zed\n" + TREE["demo_msgs/msg/Zed.msg"]
        + "\n" + SEPARATOR + "MSG: other_msgs/Alpha\n" + TREE["other_msgs/msg/Alpha.msg"])


def test_a_type_with_only_an_idl_falls_back_to_ros2idl(tmp_path):
    definition = DefinitionSource([write_tree(tmp_path, TREE)]).get("demo_msgs/msg/OnlyIdl")
    assert definition.encoding == "ros2idl"
    assert definition.text == (
        SEPARATOR + "IDL: demo_msgs/msg/OnlyIdl\n" + TREE["demo_msgs/msg/OnlyIdl.idl"]
        + "\n" + SEPARATOR + "IDL: other_msgs/msg/Alpha\n" + TREE["other_msgs/msg/Alpha.idl"])


def test_missing_definitions_name_the_type_and_the_cause(tmp_path):
    source = DefinitionSource([write_tree(tmp_path, TREE)])
    with pytest.raises(DefinitionNotFoundError, match=r"ghost_msgs/msg/Nope: package ghost_msgs is not installed "
                                                      r"\(searched .*share\)"):
        source.get("ghost_msgs/msg/Nope")
    with pytest.raises(DefinitionNotFoundError, match=r"demo_msgs/msg/Broken: it uses demo_msgs/Missing, which has "
                                                      r"none: cannot read .*Missing\.msg"):
        source.get("demo_msgs/msg/Broken")
    with pytest.raises(DefinitionNotFoundError, match="not a message type name"):
        source.get("not a type")


def test_the_first_prefix_with_the_package_wins(tmp_path):
    overlay = write_tree(tmp_path / "overlay", {"demo_msgs/msg/Basic.msg": "float64 c  # overlay\n"})
    underlay = write_tree(tmp_path / "underlay", TREE)
    assert DefinitionSource([overlay, underlay]).get("demo_msgs/msg/Basic").text == "float64 c  # overlay\n"
    with pytest.raises(DefinitionNotFoundError):  # the overlay's demo_msgs has no Complex: no mixing of prefixes
        DefinitionSource([overlay, underlay]).get("demo_msgs/msg/Complex")


def test_default_prefixes_are_ament_prefix_path_then_this_interpreter(monkeypatch, tmp_path):
    monkeypatch.setenv("AMENT_PREFIX_PATH", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    assert DefinitionSource().prefixes == [tmp_path / "a", tmp_path / "b", Path(sys.prefix)]
