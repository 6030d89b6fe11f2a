"""The robot and its cell, read once from ``config/robot.yaml``: joint names, the home pose, the gripper's
opening, where the arm stands and the tasks' workspace.

The one home of these constants for the harness, planning, the policies and the nodes (a real cell
passes its own joint names to the nodes as parameters; these are the defaults). Joint limits are read
from the same file by :class:`molmomotion_ros.planning.limits.JointLimits`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from .paths import config_path


class RobotDescriptionError(ValueError):
    """``config/robot.yaml`` lacks a field or holds a malformed one."""


@dataclass(frozen=True)
class RobotDescription:
    name: str
    arm_joint_names: tuple[str, ...]
    finger_joint_names: tuple[str, ...]
    home_joints_rad: tuple[float, ...]
    gripper_open_m: float  # per finger
    table_top_z_m: float  # world z of the table top, where the arm's base stands
    workspace_x_m: tuple[float, float]
    workspace_y_m: tuple[float, float]

    @property
    def base_position_m(self) -> tuple[float, float, float]:
        """The arm's base in the world frame."""
        return (0.0, 0.0, self.table_top_z_m)

    @classmethod
    def from_yaml(cls, path: str | Path | None = None) -> "RobotDescription":
        path = Path(path) if path else config_path("robot.yaml")
        try:
            raw = yaml.safe_load(path.read_text())
            robot, cell = raw["robot"], raw["cell"]
            description = cls(
                name=str(robot["name"]),
                arm_joint_names=tuple(str(n) for n in robot["arm_joints"]),
                finger_joint_names=tuple(str(n) for n in robot["finger_joints"]),
                home_joints_rad=tuple(float(q) for q in robot["home_rad"]),
                gripper_open_m=float(robot["gripper_open_m"]),
                table_top_z_m=float(cell["table_top_z_m"]),
                workspace_x_m=tuple(float(x) for x in cell["workspace_x_m"]),
                workspace_y_m=tuple(float(y) for y in cell["workspace_y_m"]),
            )
        except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as err:
            raise RobotDescriptionError(f"cannot read the robot description from {path}: {err!r}") from None
        if len(description.home_joints_rad) != len(description.arm_joint_names):
            raise RobotDescriptionError(f"{path}: home_rad needs one value per arm joint "
                                        f"({len(description.arm_joint_names)})")
        for name in ("workspace_x_m", "workspace_y_m"):
            low, high = getattr(description, name)
            if not low < high:
                raise RobotDescriptionError(f"{path}: {name} must be [low, high] with low < high")
        return description


ROBOT = RobotDescription.from_yaml()

# The harness's robot, as constants for code that reads them often.
ARM_JOINT_NAMES = ROBOT.arm_joint_names
FINGER_JOINT_NAMES = ROBOT.finger_joint_names
HOME_JOINTS_RAD = ROBOT.home_joints_rad
GRIPPER_OPEN_M = ROBOT.gripper_open_m
TABLE_TOP_Z_M = ROBOT.table_top_z_m
ROBOT_BASE_M = ROBOT.base_position_m
WORKSPACE_X_M = ROBOT.workspace_x_m
WORKSPACE_Y_M = ROBOT.workspace_y_m
