"""4x4 rigid transforms ⇄ geometry_msgs Pose / PoseStamped / Transform (quaternions x, y, z, w).

Also reads the ``[x, y, z, qx, qy, qz, qw]`` list form that node parameters use for extrinsics.
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion, Transform, Vector3
from scipy.spatial.transform import Rotation

from .errors import ConversionError

_MIN_QUAT_NORM = 1e-6
_RIGID_ATOL = 1e-4


def check_rigid(T: np.ndarray) -> np.ndarray:
    """``T`` as a float 4x4 after checking it is finite and rigid (a proper rotation)."""
    T = np.asarray(T, dtype=float)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise ConversionError(f"pose must be a finite 4x4 matrix, got shape {T.shape}")
    R = T[:3, :3]
    if not np.allclose(R @ R.T, np.eye(3), atol=_RIGID_ATOL) or np.linalg.det(R) < 0:
        raise ConversionError("pose matrix's rotation block is not a proper rotation")
    return T


def _quat_xyzw_to_rotation(xyzw: np.ndarray) -> np.ndarray:
    xyzw = np.asarray(xyzw, dtype=float)
    norm = np.linalg.norm(xyzw)
    if not np.all(np.isfinite(xyzw)) or norm < _MIN_QUAT_NORM:
        raise ConversionError(f"quaternion {xyzw.tolist()} is not finite and non-zero")
    return Rotation.from_quat(xyzw / norm).as_matrix()  # scipy order: x, y, z, w


def xyz_quat_to_matrix(xyz_xyzw) -> np.ndarray:
    """``[x, y, z, qx, qy, qz, qw]`` (metres; quaternion normalised) → 4x4."""
    values = np.asarray(xyz_xyzw, dtype=float).reshape(-1)
    if values.shape != (7,):
        raise ConversionError(f"a pose list needs 7 numbers [x, y, z, qx, qy, qz, qw], got {values.size}")
    if not np.all(np.isfinite(values[:3])):
        raise ConversionError(f"pose translation {values[:3].tolist()} is not finite")
    T = np.eye(4)
    T[:3, :3] = _quat_xyzw_to_rotation(values[3:])
    T[:3, 3] = values[:3]
    return T


def matrix_to_xyz_quat(T: np.ndarray) -> list[float]:
    """4x4 → ``[x, y, z, qx, qy, qz, qw]``."""
    T = check_rigid(T)
    return [*T[:3, 3].tolist(), *Rotation.from_matrix(T[:3, :3]).as_quat().tolist()]


def matrix_to_pose(T: np.ndarray) -> Pose:
    x, y, z, qx, qy, qz, qw = matrix_to_xyz_quat(T)
    return Pose(position=Point(x=x, y=y, z=z), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))


def pose_to_matrix(pose: Pose) -> np.ndarray:
    p, q = pose.position, pose.orientation
    return xyz_quat_to_matrix([p.x, p.y, p.z, q.x, q.y, q.z, q.w])


def pose_stamped(T: np.ndarray, stamp: Time, frame_id: str) -> PoseStamped:
    msg = PoseStamped(pose=matrix_to_pose(T))
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    return msg


def matrix_to_transform(T: np.ndarray) -> Transform:
    x, y, z, qx, qy, qz, qw = matrix_to_xyz_quat(T)
    return Transform(translation=Vector3(x=x, y=y, z=z), rotation=Quaternion(x=qx, y=qy, z=qz, w=qw))


def transform_to_matrix(transform: Transform) -> np.ndarray:
    t, q = transform.translation, transform.rotation
    return xyz_quat_to_matrix([t.x, t.y, t.z, q.x, q.y, q.z, q.w])
