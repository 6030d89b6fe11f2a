"""sensor_msgs/JointState and trajectory_msgs/JointTrajectory ⇄ numpy arrays.

The driver side (sim_node, a real arm's controller) needs an incoming trajectory either fully
usable or refused with one reason, because a half-checked trajectory moves a robot somewhere
nobody planned. So :func:`msg_to_trajectory` checks names, lengths, finiteness, timing and
(optionally) position limits before any array leaves it, and reorders the columns into the order the
caller asks for: joint_trajectory_controller accepts the joints in any order, so we do too.
Every bad input raises :class:`~molmomotion_ros.conversions.errors.ConversionError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from builtin_interfaces.msg import Duration, Time
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from .errors import ConversionError

_NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class JointTrajectoryArrays:
    """A validated trajectory, columns in the order of ``joint_names`` (times from the trajectory's start)."""

    joint_names: tuple[str, ...]
    times_s: np.ndarray  # (N,) strictly increasing, >= 0
    positions_rad: np.ndarray  # (N, J)
    velocities_rad_s: np.ndarray | None  # (N, J) when every point carries velocities, else None

    @property
    def duration_s(self) -> float:
        return float(self.times_s[-1])


# --- time ---------------------------------------------------------------------------------------
def duration_msg(seconds: float) -> Duration:
    """Non-negative seconds → builtin_interfaces/Duration (rounded to the nanosecond)."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ConversionError(f"duration must be finite and >= 0 s, got {seconds!r}")
    ns = round(seconds * _NS_PER_S)
    return Duration(sec=ns // _NS_PER_S, nanosec=ns % _NS_PER_S)


def duration_to_s(msg: Duration) -> float:
    return msg.sec + msg.nanosec * 1e-9


def time_msg(seconds: float) -> Time:
    """Non-negative seconds (e.g. simulated time) → builtin_interfaces/Time."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ConversionError(f"time must be finite and >= 0 s, got {seconds!r}")
    ns = round(seconds * _NS_PER_S)
    return Time(sec=ns // _NS_PER_S, nanosec=ns % _NS_PER_S)


def time_to_s(msg: Time) -> float:
    return msg.sec + msg.nanosec * 1e-9


# --- JointState ---------------------------------------------------------------------------------
def joint_state_msg(joint_names: Sequence[str], positions_rad, stamp: Time, velocities_rad_s=None,
                    efforts=None) -> JointState:
    """Arrays (J,) → JointState; velocities and efforts are optional (left empty, as the message allows)."""
    names = list(joint_names)
    msg = JointState(name=names)
    msg.header.stamp = stamp
    for field, values in (("position", positions_rad), ("velocity", velocities_rad_s), ("effort", efforts)):
        if values is None:
            continue
        array = np.asarray(values, dtype=float).reshape(-1)
        if array.shape != (len(names),):
            raise ConversionError(f"JointState {field} has {array.size} values for {len(names)} joints")
        setattr(msg, field, array.tolist())
    return msg


def msg_to_joint_positions(msg: JointState, joint_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """(positions (J,), velocities (J,) or None) of ``joint_names`` from ``msg`` (any order, extra joints ignored)."""
    index = _name_index(list(msg.name), "JointState")
    missing = [n for n in joint_names if n not in index]
    if missing:
        raise ConversionError(f"JointState lacks joints {missing} (has {list(msg.name)})")
    if len(msg.position) != len(msg.name):
        raise ConversionError(f"JointState has {len(msg.position)} positions for {len(msg.name)} names")
    columns = [index[n] for n in joint_names]
    positions = np.asarray(msg.position, dtype=float)[columns]
    velocities = None
    if len(msg.velocity) == len(msg.name):
        velocities = np.asarray(msg.velocity, dtype=float)[columns]
    elif len(msg.velocity):
        raise ConversionError(f"JointState has {len(msg.velocity)} velocities for {len(msg.name)} names")
    return positions, velocities


# --- JointTrajectory ----------------------------------------------------------------------------
def trajectory_msg(times_s, positions_rad, joint_names: Sequence[str], stamp: Time | None = None,
                   velocities_rad_s=None, accelerations_rad_s2=None) -> JointTrajectory:
    """Arrays → JointTrajectory. ``stamp`` zero/None means "start on arrival" (joint_trajectory_controller)."""
    names = list(joint_names)
    times = np.asarray(times_s, dtype=float).reshape(-1)
    positions = np.asarray(positions_rad, dtype=float)
    if positions.ndim != 2 or positions.shape != (times.size, len(names)):
        raise ConversionError(f"positions {positions.shape} do not match {times.size} times x {len(names)} joints")
    optional = {}
    for field, values in (("velocities", velocities_rad_s), ("accelerations", accelerations_rad_s2)):
        if values is not None:
            array = np.asarray(values, dtype=float)
            if array.shape != positions.shape:
                raise ConversionError(f"{field} {array.shape} do not match positions {positions.shape}")
            optional[field] = array
    msg = JointTrajectory(joint_names=names)
    if stamp is not None:
        msg.header.stamp = stamp
    for i, t in enumerate(times):
        point = JointTrajectoryPoint(positions=positions[i].tolist(), time_from_start=duration_msg(float(t)))
        for field, array in optional.items():
            setattr(point, field, array[i].tolist())
        msg.points.append(point)
    return msg


def timed_trajectory_to_msg(timed, stamp: Time | None = None,
                            joint_names: Sequence[str] | None = None) -> JointTrajectory:
    """The planner's :class:`~molmomotion_ros.planning.timing.TimedTrajectory` → JointTrajectory with
    positions, velocities and accelerations; ``joint_names`` renames the columns (same order)."""
    names = list(joint_names) if joint_names is not None else list(timed.joint_names)
    if len(names) != len(timed.joint_names):
        raise ConversionError(f"{len(names)} joint names for a {len(timed.joint_names)}-joint trajectory")
    return trajectory_msg(timed.times_s, timed.positions_rad, names, stamp, timed.velocities_rad_s,
                          timed.accelerations_rad_s2)


def msg_to_trajectory(msg: JointTrajectory, joint_names: Sequence[str], lower_rad=None,
                      upper_rad=None) -> JointTrajectoryArrays:
    """Validate ``msg`` and return its arrays with columns in the order of ``joint_names``.

    Refused (ConversionError): no points; unknown, missing or duplicate joint names; a point whose
    positions (or velocities, when given) do not hold one value per joint; NaN/inf; time_from_start
    negative or not strictly increasing; positions outside [lower_rad, upper_rad] (per joint, in the
    order of ``joint_names``) when the limits are given. Velocities are returned only when every point
    carries them.
    """
    expected = list(joint_names)
    names = list(msg.joint_names)
    index = _name_index(names, "JointTrajectory")
    unknown = [n for n in names if n not in expected]
    missing = [n for n in expected if n not in index]
    if unknown or missing:
        parts = ([f"unknown joints {unknown}"] if unknown else []) + ([f"missing joints {missing}"] if missing else [])
        raise ConversionError(f"JointTrajectory has {' and '.join(parts)}; expected {expected}")
    if not msg.points:
        raise ConversionError("JointTrajectory has no points")
    columns = [index[n] for n in expected]
    times, positions, velocities = [], [], []
    for i, point in enumerate(msg.points):
        if len(point.positions) != len(names):
            raise ConversionError(f"point {i} has {len(point.positions)} positions for {len(names)} joints")
        if len(point.velocities) not in (0, len(names)):
            raise ConversionError(f"point {i} has {len(point.velocities)} velocities for {len(names)} joints")
        times.append(duration_to_s(point.time_from_start))
        positions.append(np.asarray(point.positions, dtype=float)[columns])
        velocities.append(np.asarray(point.velocities, dtype=float)[columns] if len(point.velocities) else None)
    times_s = np.asarray(times)  # (N,)
    positions_rad = np.stack(positions)  # (N, J)
    if not np.all(np.isfinite(positions_rad)):
        bad = np.argwhere(~np.isfinite(positions_rad))[0]
        raise ConversionError(f"point {bad[0]} {expected[bad[1]]} position is {positions_rad[tuple(bad)]}")
    if times_s[0] < 0 or np.any(np.diff(times_s) <= 0):
        raise ConversionError(f"time_from_start must be >= 0 and strictly increase, got {times_s[:8].tolist()}"
                              + (" ..." if times_s.size > 8 else ""))
    for bound, name, outside in ((lower_rad, "lower", np.less), (upper_rad, "upper", np.greater)):
        if bound is None:
            continue
        bound = np.asarray(bound, dtype=float).reshape(-1)
        if bound.shape != (len(expected),):
            raise ConversionError(f"{name} limits hold {bound.size} values for {len(expected)} joints")
        beyond = outside(positions_rad, bound)  # (N, J)
        if np.any(beyond):
            i, j = np.argwhere(beyond)[0]
            raise ConversionError(f"point {i} {expected[j]} = {positions_rad[i, j]:.4f} rad is beyond its "
                                  f"{name} limit {bound[j]:.4f} rad")
    velocities_rad_s = None
    if all(v is not None for v in velocities):
        velocities_rad_s = np.stack(velocities)  # (N, J)
        if not np.all(np.isfinite(velocities_rad_s)):
            raise ConversionError("JointTrajectory velocities contain NaN or infinite values")
    return JointTrajectoryArrays(tuple(expected), times_s, positions_rad, velocities_rad_s)


def _name_index(names: list[str], what: str) -> dict[str, int]:
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConversionError(f"{what} names joints {duplicates} more than once")
    return {n: i for i, n in enumerate(names)}
