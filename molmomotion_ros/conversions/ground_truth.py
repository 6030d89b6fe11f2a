"""The sim profile's ``sim/ground_truth`` topic ⇄ numpy: an episode's target-object pose trace under the oracle.

``trajectory_msgs/MultiDOFJointTrajectory`` with ``joint_names = ["target"]`` (the object's language name in
``header.frame_id``'s world frame), ``header.stamp`` = the episode's reset, and one point per 15 fps trace sample:
``points[j].transforms[0]`` = the target's pose, ``time_from_start`` = j / 15 s from t0 (the scene at rest).
A forecast made before the arm moves is scored against it (``molmomotion eval-forecast --bag``).
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Quaternion, Transform, Vector3
from trajectory_msgs.msg import MultiDOFJointTrajectory, MultiDOFJointTrajectoryPoint

from .errors import ConversionError
from .forecasts import duration, duration_s

TARGET_JOINT = "target"


def ground_truth_to_msg(times_s: np.ndarray, poses: np.ndarray, stamp: Time, frame_id: str) -> MultiDOFJointTrajectory:
    """times (T,) from 0, poses (T, 7) position + quaternion xyzw → ``sim/ground_truth``."""
    times_s, poses = np.asarray(times_s, float), np.asarray(poses, float)
    if poses.ndim != 2 or poses.shape[1] != 7 or times_s.shape != (poses.shape[0],) or not len(times_s):
        raise ConversionError(f"ground truth needs times (T,) and poses (T, 7), got {times_s.shape} and {poses.shape}")
    if not (np.all(np.isfinite(times_s)) and np.all(np.isfinite(poses))):
        raise ConversionError("ground-truth times and poses must be finite")
    if times_s[0] != 0 or np.any(np.diff(times_s) <= 0):
        raise ConversionError("ground-truth times must start at 0 and increase")
    points = []
    for (x, y, z, qx, qy, qz, qw), t in zip(poses.tolist(), times_s.tolist(), strict=True):
        transform = Transform(translation=Vector3(x=x, y=y, z=z), rotation=Quaternion(x=qx, y=qy, z=qz, w=qw))
        points.append(MultiDOFJointTrajectoryPoint(transforms=[transform], time_from_start=duration(t)))
    msg = MultiDOFJointTrajectory(joint_names=[TARGET_JOINT], points=points)
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    return msg


def msg_to_ground_truth(msg) -> tuple[np.ndarray, np.ndarray]:
    """``sim/ground_truth`` (an rclpy message or a decoded one from a bag) → times (T,), poses (T, 7)."""
    if list(msg.joint_names) != [TARGET_JOINT]:
        raise ConversionError(f"ground truth has joint_names {list(msg.joint_names)}, expected [{TARGET_JOINT!r}]")
    if not msg.points or any(len(p.transforms) != 1 for p in msg.points):
        raise ConversionError("ground truth needs at least one point with one transform each")
    times = np.array([duration_s(p.time_from_start) for p in msg.points])
    poses = np.array([[t.translation.x, t.translation.y, t.translation.z,
                       t.rotation.x, t.rotation.y, t.rotation.z, t.rotation.w]
                      for t in (p.transforms[0] for p in msg.points)])
    return times, poses
