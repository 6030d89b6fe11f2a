"""Pinhole RGB-D camera model shared by the simulator, perception and the ROS adapters.

Conventions (REP-103 / REP-105):
  * The camera frame is the *optical* frame: x right, y down, z forward (into the scene).
  * ``T_world_cam`` maps points in the optical frame to the world frame (metres).
  * Depth images hold metric z-depth along the optical axis in metres (float32); pixels with no
    return are NaN. ROS messages may carry 16UC1 millimetres instead (0 = no return).
  * Pixel (u, v) has its origin at the top-left pixel's centre; u grows right, v down.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import yaml


class CameraConfigError(ValueError):
    """A camera description is missing a field or holds an impossible value."""


def look_at(eye_m: np.ndarray, target_m: np.ndarray, up: np.ndarray = (0.0, 0.0, 1.0)) -> np.ndarray:
    """``T_world_cam`` (4x4) of an optical-frame camera at ``eye_m`` looking at ``target_m``."""
    eye_m = np.asarray(eye_m, dtype=float)
    forward = np.asarray(target_m, dtype=float) - eye_m
    norm = np.linalg.norm(forward)
    if norm < 1e-9:
        raise CameraConfigError("camera eye and look-at target coincide")
    z_axis = forward / norm
    x_axis = np.cross(z_axis, np.asarray(up, dtype=float))  # optical x points right of the view
    if np.linalg.norm(x_axis) < 1e-9:
        raise CameraConfigError("camera up vector is parallel to its viewing direction")
    x_axis /= np.linalg.norm(x_axis)
    y_axis = np.cross(z_axis, x_axis)  # optical y points down in the image
    T_world_cam = np.eye(4)
    T_world_cam[:3, 0], T_world_cam[:3, 1], T_world_cam[:3, 2] = x_axis, y_axis, z_axis
    T_world_cam[:3, 3] = eye_m
    return T_world_cam


@dataclass(frozen=True)
class PinholeCamera:
    """Intrinsics, image size, clipping range and pose of one RGB-D camera."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    T_world_cam: np.ndarray = field(default_factory=lambda: np.eye(4))
    near_m: float = 0.05
    far_m: float = 3.0
    frame_id: str = "camera_color_optical_frame"

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise CameraConfigError(f"image size must be positive, got {self.width}x{self.height}")
        if self.fx <= 0 or self.fy <= 0:
            raise CameraConfigError(f"focal lengths must be positive, got fx={self.fx} fy={self.fy}")
        if not 0 < self.near_m < self.far_m:
            raise CameraConfigError(f"need 0 < near < far, got near={self.near_m} far={self.far_m}")
        T = np.asarray(self.T_world_cam, dtype=float)
        if T.shape != (4, 4) or not np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-6):
            raise CameraConfigError("T_world_cam must be a 4x4 rigid transform")
        object.__setattr__(self, "T_world_cam", T)

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, cfg: dict) -> "PinholeCamera":
        """Build from the ``config/camera.yaml`` layout (intrinsics from a vertical FOV or fx/fy)."""
        try:
            width, height = int(cfg["width"]), int(cfg["height"])
            if "fx" in cfg:
                fx, fy = float(cfg["fx"]), float(cfg.get("fy", cfg["fx"]))
            else:
                fy = 0.5 * height / np.tan(np.deg2rad(float(cfg["vertical_fov_deg"])) / 2)
                fx = fy
            cx = float(cfg.get("cx", (width - 1) / 2))
            cy = float(cfg.get("cy", (height - 1) / 2))
            pose = cfg["pose"]
            T = look_at(pose["eye_m"], pose["look_at_m"], pose.get("up", (0, 0, 1)))
        except KeyError as missing:
            raise CameraConfigError(f"camera config lacks the field {missing}") from None
        except (TypeError, ValueError) as bad:
            raise CameraConfigError(f"camera config has a malformed value: {bad}") from None
        return cls(
            width=width, height=height, fx=fx, fy=fy, cx=cx, cy=cy, T_world_cam=T,
            near_m=float(cfg.get("near_m", 0.05)), far_m=float(cfg.get("far_m", 3.0)),
            frame_id=str(cfg.get("frame_id", "camera_color_optical_frame")),
        )

    @classmethod
    def from_yaml(cls, path: str | Path) -> "PinholeCamera":
        path = Path(path)
        try:
            cfg = yaml.safe_load(path.read_text())
        except OSError as err:
            raise CameraConfigError(f"cannot read camera config {path}: {err.strerror}") from None
        except yaml.YAMLError as err:
            raise CameraConfigError(f"camera config {path} is not valid YAML: {err}") from None
        if not isinstance(cfg, dict):
            raise CameraConfigError(f"camera config {path} must be a mapping")
        return cls.from_dict(cfg.get("camera", cfg))

    def with_pose(self, T_world_cam: np.ndarray) -> "PinholeCamera":
        return replace(self, T_world_cam=np.asarray(T_world_cam, dtype=float))

    # --- geometry -----------------------------------------------------------------------------
    @property
    def K(self) -> np.ndarray:
        """3x3 intrinsic matrix."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])

    @property
    def T_cam_world(self) -> np.ndarray:
        T = np.eye(4)
        R, t = self.T_world_cam[:3, :3], self.T_world_cam[:3, 3]
        T[:3, :3], T[:3, 3] = R.T, -R.T @ t
        return T

    def world_to_cam(self, points_world_m: np.ndarray) -> np.ndarray:
        return transform_points(self.T_cam_world, points_world_m)

    def cam_to_world(self, points_cam_m: np.ndarray) -> np.ndarray:
        return transform_points(self.T_world_cam, points_cam_m)

    def project(self, points_cam_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Camera-frame points (..., 3) → pixels (..., 2) and z-depth (...) in metres."""
        pts = np.asarray(points_cam_m, dtype=float)
        z = pts[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = self.fx * pts[..., 0] / z + self.cx
            v = self.fy * pts[..., 1] / z + self.cy
        return np.stack([u, v], axis=-1), z

    def deproject(self, pixels_uv: np.ndarray, depth_m: np.ndarray) -> np.ndarray:
        """Pixels (..., 2) and z-depth (...) → camera-frame points (..., 3)."""
        uv = np.asarray(pixels_uv, dtype=float)
        z = np.asarray(depth_m, dtype=float)
        x = (uv[..., 0] - self.cx) / self.fx * z
        y = (uv[..., 1] - self.cy) / self.fy * z
        return np.stack([x, y, z], axis=-1)

    def depth_to_points_cam(self, depth_m: np.ndarray) -> np.ndarray:
        """Depth image (H, W) → organised point cloud (H, W, 3) in the camera frame."""
        v, u = np.mgrid[0 : self.height, 0 : self.width]
        return self.deproject(np.stack([u, v], axis=-1), depth_m)

    def to_dict(self) -> dict:
        return {
            "width": self.width, "height": self.height, "fx": self.fx, "fy": self.fy,
            "cx": self.cx, "cy": self.cy, "near_m": self.near_m, "far_m": self.far_m,
            "frame_id": self.frame_id, "T_world_cam": self.T_world_cam.tolist(),
        }


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 rigid transform to points (..., 3)."""
    pts = np.asarray(points, dtype=float)
    return pts @ T[:3, :3].T + T[:3, 3]
