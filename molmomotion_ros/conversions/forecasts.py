"""Forecasts ⇄ standard messages: the package's public topic contract for point-trajectory forecasts.

Every message uses only standard interfaces, so any node can subscribe without our packages.
Positions are in the world frame (``header.frame_id``, REP-103, metres); ``header.stamp`` is the
stamp t0 of the colour image the forecast was made from. With P query points, F future steps and
K hypotheses (best first, see ``Forecast``):

``forecast/trajectory`` — ``trajectory_msgs/MultiDOFJointTrajectory``, the best hypothesis:
  * ``joint_names = ["point_0", ..., "point_{P-1}"]`` (P = 8 for MolmoMotion).
  * ``points`` has F + 1 entries. ``points[0]`` has ``time_from_start = 0`` and holds the query
    points' positions **at t0** (where the forecast starts, i.e. on the target object);
    ``points[f + 1]`` has ``time_from_start = Forecast.timestamps_s[f]`` (stride 2 on MolmoMotion's
    15 fps clock: 2 (f + 1) / 15 s) and holds the forecast positions at that step.
  * ``points[j].transforms[i].translation`` = point i's position; ``rotation`` = identity (points
    have no orientation); ``velocities`` and ``accelerations`` are empty.

``forecast/hypotheses`` — ``trajectory_msgs/MultiDOFJointTrajectory``, all K hypotheses:
  * ``joint_names = ["h0_point_0", ..., "h0_point_{P-1}", "h1_point_0", ...]`` (hypothesis-major;
    k = 0 is the best and equals ``forecast/trajectory``), so ``transforms[k * P + i]``.
  * The same time layout: ``points[0]`` at 0 s holds the t0 positions (repeated for every k).

``forecast/scores`` — ``std_msgs/Float32MultiArray``, the K hypothesis scores (higher = more
  likely, sorted descending, same order as ``h{k}``); ``layout.dim = [MultiArrayDimension(label=
  "hypothesis", size=K, stride=K)]``. It has no header: it is published immediately before the
  ``forecast/hypotheses`` message it belongs to, and its K equals that message's joint count / P.

``forecast/markers`` — ``visualization_msgs/MarkerArray`` for RViz: a DELETEALL marker first, then
  namespace ``forecast_best`` (LINE_STRIP id i per point i, t0 then every step, 6 mm, opaque),
  ``forecast_hypotheses`` (LINE_STRIP id (k-1)·P + i for k ≥ 1, 2 mm, translucent),
  ``forecast_t0`` (SPHERE_LIST id 0, the t0 points, 15 mm) and ``forecast_goal`` (ARROWs id 0, 1, 2:
  the goal pose's x, y, z axes, red/green/blue, 8 cm), omitted when there is no goal pose.
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Point, Quaternion, Transform, Vector3
from std_msgs.msg import ColorRGBA, Float32MultiArray, MultiArrayDimension, MultiArrayLayout
from trajectory_msgs.msg import MultiDOFJointTrajectory, MultiDOFJointTrajectoryPoint
from visualization_msgs.msg import Marker, MarkerArray

from .errors import ConversionError
from .poses import check_rigid

_NS_PER_S = 1_000_000_000
BEST_WIDTH_M = 0.006
HYPOTHESIS_WIDTH_M = 0.002
T0_SPHERE_M = 0.015
GOAL_AXIS_M = 0.08


def duration(seconds: float) -> Duration:
    ns = int(round(float(seconds) * _NS_PER_S))
    return Duration(sec=ns // _NS_PER_S, nanosec=ns % _NS_PER_S)


def duration_s(d: Duration) -> float:
    return d.sec + d.nanosec / _NS_PER_S


def _check_tracks(points_t0_m: np.ndarray, tracks_m: np.ndarray, times_s: np.ndarray) -> None:
    """points_t0 (..., P, 3), tracks (..., P, F, 3), times (F,): consistent and finite."""
    if tracks_m.ndim < 3 or tracks_m.shape[-1] != 3 or points_t0_m.shape != tracks_m.shape[:-2] + (3,):
        raise ConversionError(f"t0 points {points_t0_m.shape} and tracks {tracks_m.shape} do not match "
                              "((..., P, 3) and (..., P, F, 3))")
    if times_s.shape != (tracks_m.shape[-2],):
        raise ConversionError(f"{tracks_m.shape[-2]} forecast steps but {times_s.shape} timestamps")
    if not (np.all(np.isfinite(points_t0_m)) and np.all(np.isfinite(tracks_m)) and np.all(np.isfinite(times_s))):
        raise ConversionError("forecast positions and timestamps must be finite")
    if np.any(times_s <= 0) or np.any(np.diff(times_s) <= 0):
        raise ConversionError("forecast timestamps must be positive and increasing")


def _trajectory(names: list[str], positions_m: np.ndarray, times_s: np.ndarray, stamp: Time,
                frame_id: str) -> MultiDOFJointTrajectory:
    """positions (F+1, N, 3) with times (F+1,) → one trajectory point per step, N transforms each."""
    identity = Quaternion()  # (0, 0, 0, 1); shared: messages are only read when serialised
    points = []
    for positions_step_m, t in zip(positions_m.tolist(), times_s.tolist(), strict=True):
        transforms = [Transform(translation=Vector3(x=x, y=y, z=z), rotation=identity) for x, y, z in positions_step_m]
        points.append(MultiDOFJointTrajectoryPoint(transforms=transforms, time_from_start=duration(t)))
    msg = MultiDOFJointTrajectory(joint_names=names, points=points)
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    return msg


def tracks_to_trajectory(points_t0_m: np.ndarray, tracks_m: np.ndarray, times_s: np.ndarray, stamp: Time,
                         frame_id: str) -> MultiDOFJointTrajectory:
    """One hypothesis: t0 points (P, 3), tracks (P, F, 3), times (F,) → ``forecast/trajectory``."""
    points_t0_m, tracks_m = np.asarray(points_t0_m, float), np.asarray(tracks_m, float)
    times_s = np.asarray(times_s, float)
    _check_tracks(points_t0_m, tracks_m, times_s)
    positions_m = np.concatenate([points_t0_m[:, None], tracks_m], axis=1).transpose(1, 0, 2)  # (F+1, P, 3)
    names = [f"point_{i}" for i in range(points_t0_m.shape[0])]
    return _trajectory(names, positions_m, np.concatenate([[0.0], times_s]), stamp, frame_id)


def hypotheses_to_trajectory(points_t0_m: np.ndarray, tracks_m: np.ndarray, times_s: np.ndarray, stamp: Time,
                             frame_id: str) -> MultiDOFJointTrajectory:
    """All hypotheses: t0 points (P, 3), tracks (K, P, F, 3), times (F,) → ``forecast/hypotheses``."""
    tracks_m, times_s = np.asarray(tracks_m, float), np.asarray(times_s, float)
    if tracks_m.ndim != 4:
        raise ConversionError(f"hypotheses must be (K, P, F, 3), got {tracks_m.shape}")
    k, p, f, _ = tracks_m.shape
    points_t0_m = np.broadcast_to(np.asarray(points_t0_m, float), (k, p, 3))
    _check_tracks(points_t0_m, tracks_m, times_s)
    positions_m = np.concatenate([points_t0_m[:, :, None], tracks_m], axis=2)  # (K, P, F+1, 3)
    positions_m = positions_m.transpose(2, 0, 1, 3).reshape(f + 1, k * p, 3)  # (F+1, K·P, 3) hypothesis-major
    names = [f"h{h}_point_{i}" for h in range(k) for i in range(p)]
    return _trajectory(names, positions_m, np.concatenate([[0.0], times_s]), stamp, frame_id)


def forecast_to_trajectory(forecast, points_world_t0_m: np.ndarray, stamp: Time,
                           frame_id: str) -> MultiDOFJointTrajectory:
    """``Forecast``'s best hypothesis (world frame) → ``forecast/trajectory``."""
    return tracks_to_trajectory(points_world_t0_m, forecast.best_world_m, forecast.timestamps_s, stamp, frame_id)


def forecast_to_hypotheses(forecast, points_world_t0_m: np.ndarray, stamp: Time,
                           frame_id: str) -> MultiDOFJointTrajectory:
    """All of ``Forecast``'s hypotheses (world frame) → ``forecast/hypotheses``."""
    return hypotheses_to_trajectory(points_world_t0_m, forecast.points_world_m, forecast.timestamps_s, stamp,
                                    frame_id)


def scores_to_msg(scores: np.ndarray) -> Float32MultiArray:
    """K hypothesis scores → ``forecast/scores``."""
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    k = int(scores.size)
    return Float32MultiArray(layout=MultiArrayLayout(dim=[MultiArrayDimension(label="hypothesis", size=k, stride=k)]),
                             data=scores.tolist())


def msg_to_scores(msg: Float32MultiArray) -> np.ndarray:
    scores = np.asarray(msg.data, dtype=np.float32)
    dims = msg.layout.dim
    if len(dims) != 1 or dims[0].label != "hypothesis" or dims[0].size != scores.size:
        raise ConversionError(f"scores need one 'hypothesis' dimension of size {scores.size}, "
                              f"got {[(d.label, d.size) for d in dims]}")
    return scores


def _trajectory_positions(msg: MultiDOFJointTrajectory) -> tuple[np.ndarray, np.ndarray]:
    """→ positions (F+1, N, 3) and times (F+1,), checking the t0-first layout."""
    n = len(msg.joint_names)
    if n == 0 or len(msg.points) < 2:
        raise ConversionError(f"a forecast trajectory needs joint names and ≥ 2 points (t0 + a step), got "
                              f"{n} names and {len(msg.points)} points")
    times_s = np.array([duration_s(p.time_from_start) for p in msg.points])
    if times_s[0] != 0.0 or np.any(np.diff(times_s) <= 0):
        raise ConversionError(f"trajectory times must start at 0 (t0) and increase, got {times_s[:4].tolist()}...")
    positions = []
    for j, point in enumerate(msg.points):
        if len(point.transforms) != n:
            raise ConversionError(f"trajectory point {j} has {len(point.transforms)} transforms for {n} joint names")
        positions.append([(t.translation.x, t.translation.y, t.translation.z) for t in point.transforms])
    return np.asarray(positions, dtype=np.float64), times_s


def msg_to_forecast_tracks(msg: MultiDOFJointTrajectory) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``forecast/trajectory`` → t0 points (P, 3), tracks (P, F, 3), step times (F,) (frame: the header's)."""
    positions, times_s = _trajectory_positions(msg)
    expected = [f"point_{i}" for i in range(len(msg.joint_names))]
    if list(msg.joint_names) != expected:
        raise ConversionError(f"forecast joint names must be point_0..point_{len(expected) - 1}, "
                              f"got {list(msg.joint_names)[:3]}...")
    return positions[0], positions[1:].transpose(1, 0, 2), times_s[1:]


def msg_to_forecast_hypotheses(msg: MultiDOFJointTrajectory) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``forecast/hypotheses`` → t0 points (P, 3), tracks (K, P, F, 3), step times (F,)."""
    positions, times_s = _trajectory_positions(msg)
    names = list(msg.joint_names)
    p = sum(1 for name in names if name.startswith("h0_point_"))
    if p == 0 or len(names) % p:
        raise ConversionError(f"hypothesis joint names must be h{{k}}_point_{{i}}, got {names[:3]}...")
    k = len(names) // p
    if names != [f"h{h}_point_{i}" for h in range(k) for i in range(p)]:
        raise ConversionError(f"hypothesis joint names must be h0_point_0.. in hypothesis-major order, "
                              f"got {names[:3]}...")
    tracks = positions[1:].reshape(len(times_s) - 1, k, p, 3).transpose(1, 2, 0, 3)  # (K, P, F, 3)
    return positions[0, :p], tracks, times_s[1:]


def _color(r: float, g: float, b: float, a: float) -> ColorRGBA:
    return ColorRGBA(r=r, g=g, b=b, a=a)


def _marker(ns: str, marker_id: int, marker_type: int, stamp: Time, frame_id: str) -> Marker:
    marker = Marker(ns=ns, id=marker_id, type=marker_type, action=Marker.ADD)
    marker.header.stamp, marker.header.frame_id = stamp, frame_id
    marker.pose.orientation.w = 1.0
    return marker


def _points(positions_m: np.ndarray) -> list[Point]:
    return [Point(x=x, y=y, z=z) for x, y, z in positions_m.tolist()]


def forecast_to_markers(points_world_t0_m: np.ndarray, tracks_world_m: np.ndarray, stamp: Time, frame_id: str,
                        goal_pose_world: np.ndarray | None = None) -> MarkerArray:
    """t0 points (P, 3), hypotheses (K, P, F, 3) best first, optional goal pose (4x4) → RViz markers."""
    points_t0_m = np.asarray(points_world_t0_m, float)
    tracks_m = np.asarray(tracks_world_m, float)
    if tracks_m.ndim != 4:
        raise ConversionError(f"marker tracks must be (K, P, F, 3), got {tracks_m.shape}")
    k, p, f, _ = tracks_m.shape
    if points_t0_m.shape != (p, 3):
        raise ConversionError(f"t0 points {points_t0_m.shape} do not match tracks {tracks_m.shape}")
    delete_all = Marker(action=Marker.DELETEALL)
    delete_all.header.stamp, delete_all.header.frame_id = stamp, frame_id
    markers = [delete_all]
    lines_m = np.concatenate([np.broadcast_to(points_t0_m[None, :, None], (k, p, 1, 3)), tracks_m], axis=2)
    for h in range(k):
        for i in range(p):
            if h == 0:
                line = _marker("forecast_best", i, Marker.LINE_STRIP, stamp, frame_id)
                line.scale.x, line.color = BEST_WIDTH_M, _color(1.0, 0.5, 0.0, 1.0)
            else:
                line = _marker("forecast_hypotheses", (h - 1) * p + i, Marker.LINE_STRIP, stamp, frame_id)
                line.scale.x, line.color = HYPOTHESIS_WIDTH_M, _color(0.2, 0.6, 1.0, 0.35)
            line.points = _points(lines_m[h, i])
            markers.append(line)
    spheres = _marker("forecast_t0", 0, Marker.SPHERE_LIST, stamp, frame_id)
    spheres.scale.x = spheres.scale.y = spheres.scale.z = T0_SPHERE_M
    spheres.color, spheres.points = _color(1.0, 1.0, 0.0, 1.0), _points(points_t0_m)
    markers.append(spheres)
    if goal_pose_world is not None:
        goal = check_rigid(goal_pose_world)
        for axis, rgb in enumerate(((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))):
            arrow = _marker("forecast_goal", axis, Marker.ARROW, stamp, frame_id)
            start = goal[:3, 3]
            arrow.points = _points(np.stack([start, start + GOAL_AXIS_M * goal[:3, axis]]))  # start, end; pose = I
            arrow.scale.x, arrow.scale.y, arrow.scale.z = 0.008, 0.016, 0.02  # shaft Ø, head Ø, head length
            arrow.color = _color(*rgb, 1.0)
            markers.append(arrow)
    return MarkerArray(markers=markers)
