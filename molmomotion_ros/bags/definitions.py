"""Full message definitions for MCAP schemas, built the way rosbag2 builds them.

A ROS 2 bag's schema is the topic type's ``.msg`` text followed by the text of every type it uses, each
once, behind a separator line (80 ``=``) and ``MSG: pkg/Type``. Readers (Foxglove, ``mcap_ros2``, ``ros2 bag
play`` through rosbag2's own decoder) decode the CDR payload from that text alone, so the text must be the
installed definitions and complete. The order and spelling follow rosbag2_cpp's
``LocalMessageDefinitionSource`` (Jazzy): the root text as installed, then its dependencies depth-first, each
type's dependencies taken in sorted order, every type once; a type without a ``.msg`` file falls back to its
``.idl`` (encoding ``ros2idl``, every part behind an ``IDL: pkg/msg/Type`` separator, the root's too).

Definitions are read from ``<prefix>/share/<pkg>/msg/`` of every prefix on ``AMENT_PREFIX_PATH`` and then of
this interpreter's prefix (the venv of the ROS 2 wheels, which sets no ``AMENT_PREFIX_PATH``); a package is
taken from the first prefix that has it, as ament_index does.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import DefinitionNotFoundError

SEPARATOR = "=" * 80 + "\n"
MSG_ENCODING = "ros2msg"
IDL_ENCODING = "ros2idl"

# "foo_msgs/Bar" or "foo_msgs/msg/Bar"; the same pattern rosbag2 accepts.
_TYPE_NAME = re.compile(r"^([a-zA-Z0-9_]+)/(?:msg/)?([a-zA-Z0-9_]+)$")
# A field's type at the start of a line ("foo_msgs/Bar" in "foo_msgs/Bar[] bar"); comment lines start with '#'.
_MSG_FIELD_TYPE = re.compile(r"(?:^|\n)\s*([a-zA-Z0-9_/]+)(?:\[[^\]]*\])?\s+", re.ASCII)
# "foo_msgs/msg/Bar" in `#include "foo_msgs/msg/Bar.idl"` or `#include <foo_msgs/msg/Bar.idl>`.
_IDL_INCLUDE = re.compile(r"(?:^|\n)#include\s+(?:\"|<)([a-zA-Z0-9_/]+)\.idl(?:\"|>)", re.ASCII)
# The .msg primitive types: no definition of their own. (rosbag2's list; a wstring field sends a type to its IDL.)
PRIMITIVE_TYPES = frozenset({"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16",
                             "int32", "uint32", "int64", "uint64", "string"})
MAX_DEPTH = 50  # nesting levels before a definition is taken for circular


@dataclass(frozen=True)
class MessageDefinition:
    """A schema's text and its MCAP schema encoding (``ros2msg`` or ``ros2idl``)."""

    type_name: str  # as asked for, e.g. sensor_msgs/msg/Image (the schema's name)
    encoding: str
    text: str


def msg_dependencies(text: str, package: str) -> list[str]:
    """The non-primitive field types of a ``.msg`` text, sorted, as ``pkg/Type`` (a bare ``Type`` is in ``package``)."""
    found = set()
    for match in _MSG_FIELD_TYPE.finditer(text):
        name = match.group(1)
        if name in PRIMITIVE_TYPES:
            continue
        found.add(name if "/" in name else f"{package}/{name}")
    return sorted(found)


def idl_dependencies(text: str) -> list[str]:
    """The ``pkg/msg/Type`` names an ``.idl`` text includes, sorted."""
    return sorted({match.group(1) for match in _IDL_INCLUDE.finditer(text)})


def default_prefixes() -> list[Path]:
    """``AMENT_PREFIX_PATH``'s prefixes, then this interpreter's (the venv of the ROS 2 wheels), without repeats."""
    prefixes: list[Path] = []
    for entry in [*os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep), sys.prefix]:
        if entry and Path(entry) not in prefixes:
            prefixes.append(Path(entry))
    return prefixes


class DefinitionSource:
    """Builds (and caches) full definitions from the installed ``.msg``/``.idl`` files under ``prefixes``."""

    def __init__(self, prefixes: list[Path] | None = None):
        self.prefixes = [Path(p) for p in prefixes] if prefixes is not None else default_prefixes()
        self._files: dict[tuple[str, str], str] = {}
        self._full: dict[str, MessageDefinition] = {}

    def share_dir(self, package: str) -> Path | None:
        """``<prefix>/share/<package>`` of the first prefix that has the package (ament index marker or folder)."""
        for prefix in self.prefixes:
            share = prefix / "share"
            if (share / "ament_index" / "resource_index" / "packages" / package).exists() or (share / package).is_dir():
                return share / package
        return None

    def _read(self, type_name: str, extension: str) -> tuple[str, str]:
        """(text, package) of one type's definition file; DefinitionNotFoundError when there is none."""
        match = _TYPE_NAME.match(type_name)
        if match is None:
            raise DefinitionNotFoundError(type_name, f"{type_name!r} is not a message type name (pkg/msg/Type)")
        package, name = match.groups()
        key = (f"{package}/{name}", extension)
        if key not in self._files:
            share = self.share_dir(package)
            if share is None:
                searched = ", ".join(str(p / "share") for p in self.prefixes) or "no prefix"
                raise DefinitionNotFoundError(type_name, f"package {package} is not installed (searched {searched})")
            path = share / "msg" / f"{name}{extension}"
            try:
                self._files[key] = path.read_text(encoding="utf-8")
            except OSError as err:
                raise DefinitionNotFoundError(
                    type_name, f"cannot read {path}: {err.strerror or type(err).__name__}") from None
        return self._files[key], package

    def _full_text(self, root: str, extension: str) -> str:
        seen: set[str] = set()

        def append(type_name: str, depth: int) -> str:
            if depth <= 0:
                raise DefinitionNotFoundError(root, f"definitions nest deeper than {MAX_DEPTH} levels (circular?)")
            text, package = self._read(type_name, extension)
            deps = msg_dependencies(text, package) if extension == ".msg" else idl_dependencies(text)
            for dep in deps:
                if dep not in seen:
                    seen.add(dep)
                    text += "\n" + SEPARATOR + ("MSG: " if extension == ".msg" else "IDL: ") + dep + "\n"
                    text += append(dep, depth - 1)
            return text

        return append(root, MAX_DEPTH)

    def get(self, type_name: str) -> MessageDefinition:
        """The full definition of ``type_name`` (``pkg/msg/Type``): its ``.msg`` text with every nested type, or,
        when some ``.msg`` file is missing, the ``.idl`` texts. DefinitionNotFoundError names the type and why."""
        if type_name not in self._full:
            try:
                definition = MessageDefinition(type_name, MSG_ENCODING, self._full_text(type_name, ".msg"))
            except DefinitionNotFoundError as msg_error:
                try:
                    text = SEPARATOR + "IDL: " + type_name + "\n" + self._full_text(type_name, ".idl")
                except DefinitionNotFoundError:
                    if msg_error.type_name == type_name:
                        raise msg_error from None
                    raise DefinitionNotFoundError(type_name, f"it uses {msg_error.type_name}, which has none: "
                                                             f"{msg_error.reason}") from None
                definition = MessageDefinition(type_name, IDL_ENCODING, text)
            self._full[type_name] = definition
        return self._full[type_name]
