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


Action = PickPlace | Push
