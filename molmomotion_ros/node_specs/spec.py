"""The data types of a node's specification (its parameters, executable and parameter file), imported by
each node's spec module in this package and by :mod:`molmomotion_ros.graph`; pure Python, no rclpy."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..paths import config_path


@dataclass(frozen=True)
class ParamSpec:
    """One declared node parameter: its default, what it means and which values are allowed."""

    name: str
    default: Any
    description: str
    choices: tuple | None = None  # allowed values (strings or numbers)
    range: tuple[float, float] | None = None  # inclusive numeric bounds
    read_only: bool = False  # may only be set at start (e.g. the backend that loads a model); in a managed node:
    # read at configure, so it may be set while the node is unconfigured (then configure again)

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable for this parameter, or None when it is."""
        expected = type(self.default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if expected is list:
            if not isinstance(value, (list, tuple)):
                return f"{self.name} must be a list, got {type(value).__name__}"
        elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            return f"{self.name} must be {expected.__name__}, got {type(value).__name__} {value!r}"
        if self.choices is not None and value not in self.choices:
            return f"{self.name}={value!r} is not one of {', '.join(map(str, self.choices))}"
        if self.range is not None and not (self.range[0] <= value <= self.range[1]):
            return f"{self.name}={value!r} is outside [{self.range[0]}, {self.range[1]}]"
        return None


# Every managed node's: as nav2's lifecycle_manager ``autostart``, but on the node, so that a node started alone
# (ros2 run, a test, a launch file without lifecycle events) comes up by itself.
AUTOSTART = ParamSpec("autostart", True, "configure and activate at start; false: stay unconfigured until a "
                      "lifecycle manager (molmomotion launch, a launch file) asks on ~/change_state", read_only=True)


@dataclass(frozen=True)
class NodeSpec:
    """A node of the package: ROS name, console-script executable, parameter file and parameters."""

    name: str
    executable: str  # console script installed by setup.py (lib/<package>/<executable> on colcon)
    module: str  # python module with main()
    params_file: str  # under config/
    parameters: tuple[ParamSpec, ...] = field(default_factory=tuple)
    # A managed (lifecycle) node: configure loads its model or robot connection, activate starts its topics.
    # Its parameters include AUTOSTART.
    managed: bool = False

    def __post_init__(self):
        if self.managed != any(p.name == AUTOSTART.name for p in self.parameters):
            raise ValueError(f"{self.name}: a managed node declares {AUTOSTART.name!r}, a plain node does not")

    def spec(self, name: str) -> ParamSpec:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(f"{self.name} declares no parameter {name!r}")

    @property
    def params_path(self) -> Path:
        return config_path(self.params_file)

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.parameters}
