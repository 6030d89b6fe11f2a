"""Joint-trajectory following: the controller both the harness and sim_node drive the arm with.

A real arm's joint_trajectory_controller interpolates a timed JointTrajectory and servoes to it;
here ``JointTrajectoryFollower`` gives the interpolated set-point at any time since the start and
the world's position controllers do the servoing on every physics step.
"""

from __future__ import annotations

import numpy as np

from molmomotion_ros.robot import ARM_JOINT_NAMES


class TrajectoryError(ValueError):
    """A joint trajectory that cannot be followed (bad shapes, times not increasing, unknown joints)."""


class JointTrajectoryFollower:
    """Linear interpolation of a timed joint path (the samples are dense: TOPP-RA output or a
    controller's message), holding the last point after the end."""

    def __init__(self, times_s, positions_rad, joint_names=None):
        times = np.asarray(times_s, dtype=float).reshape(-1)
        positions = np.asarray(positions_rad, dtype=float)
        if positions.ndim != 2 or positions.shape[0] != times.shape[0] or positions.shape[0] == 0:
            raise TrajectoryError(f"positions {positions.shape} do not match {times.shape[0]} time stamps")
        if not np.all(np.isfinite(times)) or not np.all(np.isfinite(positions)):
            raise TrajectoryError("trajectory contains NaN or infinite values")
        if times[0] < 0 or np.any(np.diff(times) <= 0):
            raise TrajectoryError("time_from_start must start at >= 0 and strictly increase")
        if joint_names is not None:
            names = list(joint_names)
            if sorted(names) != sorted(ARM_JOINT_NAMES) or len(names) != positions.shape[1]:
                raise TrajectoryError(f"expected the 7 arm joints {ARM_JOINT_NAMES}, got {names}")
            positions = positions[:, [names.index(n) for n in ARM_JOINT_NAMES]]
        elif positions.shape[1] != 7:
            raise TrajectoryError(f"expected 7 joint columns, got {positions.shape[1]}")
        self.times_s = times
        self.positions_rad = positions

    @property
    def duration_s(self) -> float:
        return float(self.times_s[-1])

    @property
    def final_rad(self) -> np.ndarray:
        return self.positions_rad[-1]

    def target(self, t_s: float) -> np.ndarray:
        """Set-point (7,) at ``t_s`` seconds after the trajectory started."""
        return np.array([np.interp(t_s, self.times_s, self.positions_rad[:, j]) for j in range(7)])
