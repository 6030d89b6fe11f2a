"""Plugins named by import path: a registry maps a name to ``"package.module:attribute"`` and the module
is imported only when that plugin is built.

Why strings and not imported objects: a registry that imports its plugins ties every layer below it to
every plugin's dependencies (torch, checkpoints, the simulator), and a plugin that registers itself
on import makes the registry and its plugins import each other. Third-party packages add plugins
through an entry-point group instead of editing a registry.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any


class PluginError(LookupError):
    """A plugin name is unknown or its import path does not lead to an object."""


def load_object(path: str) -> Any:
    """``"package.module:attribute"`` → the attribute (dots after the colon walk nested attributes)."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise PluginError(f"an import path reads 'package.module:attribute', got {path!r}")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as err:
        raise PluginError(f"cannot import {module_name!r} for {path!r}: {err}") from err
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise PluginError(f"{module_name!r} has no {attribute!r} (from {path!r})") from None
    return obj


def with_entry_points(builtin: dict[str, str], group: str) -> dict[str, str]:
    """The built-in registry plus the entry points of ``group`` that other packages declare (a built-in
    name wins over an entry point of the same name)."""
    found = {ep.name: ep.value for ep in entry_points(group=group)}
    return {**found, **builtin}
