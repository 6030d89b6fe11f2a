"""Actions an agent hands to the harness; the world executes them with IK under real physics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PickPlace:
    """Top-down grasp with the grasp target at ``pick_m``, release with it at ``place_m`` (world, m)."""

    pick_m: np.ndarray
    pick_yaw_rad: float
    place_m: np.ndarray
    place_yaw_rad: float


@dataclass(frozen=True)
class Push:
    """Closed gripper lowered at ``start_m`` and driven in a straight line to ``end_m`` (world, m)."""

    start_m: np.ndarray
    end_m: np.ndarray


@dataclass(frozen=True)
class JointMotion:
    """A timed trajectory of the 7 arm joints (radians), as a JointTrajectory controller takes it."""

    times_s: np.ndarray  # (N,) from the start of the motion, strictly increasing
    positions_rad: np.ndarray  # (N, 7)


@dataclass(frozen=True)
class GripperCommand:
    """Close (with force) or open the gripper; ``opening_m`` per finger overrides the target."""

    closed: bool
    opening_m: float | None = None


@dataclass(frozen=True)
class MotionSequence:
    """Low-level steps executed in order (what a planner-based agent produces for one skill)."""

    steps: tuple[JointMotion | GripperCommand, ...]
    label: str = ""


Action = PickPlace | Push | MotionSequence
