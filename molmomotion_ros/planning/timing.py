"""Time parameterisation of joint paths under velocity, acceleration and jerk limits (TOPP-RA).

TOPP-RA gives the time-optimal profile under the velocity and acceleration limits; the jerk limit,
which TOPP-RA does not model, is then met by slowing the whole trajectory down (time scaled by k
scales jerk by 1/k³). Every sample is checked before a trajectory is returned: a trajectory that
breaks a limit is never handed out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .limits import JointLimits

SAMPLE_PERIOD_S = 0.01  # limits are checked at this period (finite differences for jerk)
LIMIT_TOLERANCE = 1e-6  # relative


class TimingError(ValueError):
    """A path cannot be time-parameterised within the limits (or is malformed)."""


@dataclass(frozen=True)
class TimedTrajectory:
    """Samples of a joint trajectory every ``SAMPLE_PERIOD_S`` (convertible to trajectory_msgs/JointTrajectory)."""

    joint_names: tuple[str, ...]
    times_s: np.ndarray  # (N,) from 0
    positions_rad: np.ndarray  # (N, J)
    velocities_rad_s: np.ndarray  # (N, J)
    accelerations_rad_s2: np.ndarray  # (N, J)

    @property
    def duration_s(self) -> float:
        return float(self.times_s[-1])

    def jerks_rad_s3(self) -> np.ndarray:
        return np.diff(self.accelerations_rad_s2, axis=0) / np.diff(self.times_s)[:, None]

    def violations(self, limits: JointLimits) -> list[str]:
        """Every limit this trajectory breaks (empty = safe), relative tolerance LIMIT_TOLERANCE."""
        out = []
        tol = 1 + LIMIT_TOLERANCE
        if not np.all(limits.within_position_limits(self.positions_rad, 1e-9)):
            out.append("position")
        for name, values, bound in (
            ("velocity", self.velocities_rad_s, limits.max_velocity),
            ("acceleration", self.accelerations_rad_s2, limits.max_acceleration),
            ("jerk", self.jerks_rad_s3(), limits.max_jerk),
        ):
            if len(values) and np.any(np.abs(values) > bound * tol):
                worst = float(np.max(np.abs(values) / bound))
                out.append(f"{name} ({worst:.3f}x the limit)")
        return out


def _densify(path: np.ndarray, max_step_rad: float = 0.05) -> np.ndarray:
    """Insert linear waypoints so no joint moves more than ``max_step_rad`` between two (keeps the spline close)."""
    out = [path[0]]
    for a, b in zip(path[:-1], path[1:], strict=True):
        n = max(1, int(np.ceil(np.max(np.abs(b - a)) / max_step_rad)))
        out.extend(a + (b - a) * (i / n) for i in range(1, n + 1))
    return np.asarray(out)


def _path_spline(path: np.ndarray, limits: JointLimits):
    """A cubic spline through the densified path that stays inside the position limits.

    A cubic overshoots where the path turns; near a limit that can cross it by a fraction of a
    milliradian, so the path is densified more finely until the sampled spline stays inside.
    """
    import toppra

    for max_step_rad in (0.05, 0.02, 0.01):
        dense = _densify(path, max_step_rad)
        s = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))]
        s /= s[-1]
        spline = toppra.SplineInterpolator(s, dense)
        if np.all(limits.within_position_limits(spline(np.linspace(0.0, 1.0, 20 * len(dense))))):
            return spline, dense
    raise TimingError("the path runs so close to a joint limit that its smooth interpolation leaves it")


def time_parameterize(path_rad: np.ndarray, limits: JointLimits, max_slowdowns: int = 8) -> TimedTrajectory:
    """Waypoints (M, J) → a trajectory from rest to rest that respects every limit of ``limits``."""
    import toppra.algorithm as algo
    import toppra.constraint as constraint

    path = np.asarray(path_rad, dtype=float)
    J = len(limits.joint_names)
    if path.ndim != 2 or path.shape[1] != J or len(path) < 2:
        raise TimingError(f"path must be (M >= 2, {J}) joint positions, got {path.shape}")
    if not np.all(np.isfinite(path)):
        raise TimingError("path holds NaN or infinite joint positions")
    if not np.all(limits.within_position_limits(path)):
        raise TimingError("path leaves the joint position limits")
    keep = np.r_[True, np.any(np.abs(np.diff(path, axis=0)) > 1e-9, axis=1)]
    path = path[keep]
    if len(path) < 2:  # already there: a one-sample trajectory at rest
        zeros = np.zeros((1, J))
        return TimedTrajectory(limits.joint_names, np.zeros(1), path[:1], zeros, zeros)
    spline, dense = _path_spline(path, limits)
    # Aim a little inside the limits: sampling and the spline's small overshoots then stay legal.
    margin = 0.95
    vel = constraint.JointVelocityConstraint(np.c_[-limits.max_velocity, limits.max_velocity] * margin)
    acc = constraint.JointAccelerationConstraint(np.c_[-limits.max_acceleration, limits.max_acceleration] * margin)
    instance = algo.TOPPRA([vel, acc], spline, gridpoints=np.linspace(0, 1, max(100, 4 * len(dense))))
    trajectory = instance.compute_trajectory(0.0, 0.0)
    if trajectory is None:
        raise TimingError("TOPP-RA found no feasible time parameterisation")
    scale = 1.0
    for _ in range(max_slowdowns):
        duration = trajectory.duration * scale
        n = max(2, int(np.ceil(duration / SAMPLE_PERIOD_S)) + 1)
        t = np.linspace(0.0, duration, n)
        tau = t / scale
        timed = TimedTrajectory(limits.joint_names, t, trajectory(tau), trajectory(tau, 1) / scale,
                                trajectory(tau, 2) / scale**2)
        jerk_ratio = float(np.max(np.abs(timed.jerks_rad_s3()) / limits.max_jerk)) if n > 2 else 0.0
        problems = timed.violations(limits)
        if not problems:
            return timed
        # Slow down: jerk scales with 1/k³, acceleration with 1/k², velocity with 1/k.
        scale *= max(1.05, (jerk_ratio * 1.05) ** (1 / 3))
    raise TimingError(f"no legal timing after {max_slowdowns} slow-downs: {', '.join(problems)}")
