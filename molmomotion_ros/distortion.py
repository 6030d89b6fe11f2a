"""Lens distortion: the ``plumb_bob`` model of sensor_msgs/CameraInfo, and raw (distorted) images made from a
pinhole render.

``plumb_bob`` is OpenCV's Brown-Conrady model with D = [k1, k2, p1, p2, k3]: an undistorted normalised
image point (x, y) = (X/Z, Y/Z) appears in the raw image at

    r2 = x² + y²,  s = 1 + k1 r2 + k2 r2² + k3 r2³
    x_d = x s + 2 p1 x y + p2 (r2 + 2 x²),   y_d = y s + p1 (r2 + 2 y²) + 2 p2 x y
    u = fx x_d + cx,   v = fy y_d + cy

which is how every consumer of a CameraInfo (image_geometry, OpenCV's undistortPoints) reads it.

:class:`DistortedView` turns a pinhole render into the raw image such a camera would deliver: for
every raw pixel it looks up where its ray lands in a slightly larger pinhole canvas (same focal
lengths; the canvas covers every raw pixel's ray) and samples the render there, bilinearly for colour
and by nearest neighbour for depth and labels (a depth edge must not blend two surfaces). Depth along
the optical axis is the same number in both images, so an aligned depth image is remapped the same
way. With all coefficients zero the view is the render itself.

:class:`Rectifier` goes the other way, as the nodes do with a real camera's raw images: it resamples them into
the pinhole image of the same K.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from .camera import CameraConfigError, PinholeCamera

UNDISTORT_ITERATIONS = 40  # fixed-point iterations; converges to < 1e-12 for lens-like coefficients
UNDISTORT_TOL = 1e-9  # largest |distort(undistort(p)) - p| accepted (normalised image units)


class DistortionError(ValueError):
    """Coefficients that are not a plumb_bob model, or so strong that the model cannot be inverted."""


@dataclass(frozen=True)
class PlumbBob:
    """The plumb_bob (Brown-Conrady) coefficients D = [k1, k2, p1, p2, k3]."""

    k1: float = 0.0
    k2: float = 0.0
    p1: float = 0.0
    p2: float = 0.0
    k3: float = 0.0

    @classmethod
    def from_list(cls, d) -> "PlumbBob":
        values = np.asarray(d, dtype=float).reshape(-1)
        if values.shape != (5,) or not np.all(np.isfinite(values)):
            raise DistortionError(f"plumb_bob needs 5 finite coefficients [k1, k2, p1, p2, k3], got {list(d)!r}")
        return cls(*map(float, values))

    def as_list(self) -> list[float]:
        return [self.k1, self.k2, self.p1, self.p2, self.k3]

    @property
    def is_zero(self) -> bool:
        return not any(self.as_list())

    def distort(self, xy: np.ndarray) -> np.ndarray:
        """Undistorted normalised points (..., 2) → where they appear in the raw image (normalised)."""
        xy = np.asarray(xy, dtype=float)
        x, y = xy[..., 0], xy[..., 1]
        r2 = x * x + y * y
        radial = 1 + r2 * (self.k1 + r2 * (self.k2 + r2 * self.k3))
        xd = x * radial + 2 * self.p1 * x * y + self.p2 * (r2 + 2 * x * x)
        yd = y * radial + self.p1 * (r2 + 2 * y * y) + 2 * self.p2 * x * y
        return np.stack([xd, yd], axis=-1)

    def undistort(self, xy_d: np.ndarray) -> np.ndarray:
        """Raw normalised points (..., 2) → undistorted ones (the inverse of :meth:`distort`), by the
        fixed-point iteration OpenCV's undistortPoints uses; raises DistortionError if it does not converge."""
        xy_d = np.asarray(xy_d, dtype=float)
        xd, yd = xy_d[..., 0], xy_d[..., 1]
        x, y = xd.copy(), yd.copy()
        for _ in range(UNDISTORT_ITERATIONS):
            r2 = x * x + y * y
            radial = 1 + r2 * (self.k1 + r2 * (self.k2 + r2 * self.k3))
            dx = 2 * self.p1 * x * y + self.p2 * (r2 + 2 * x * x)
            dy = self.p1 * (r2 + 2 * y * y) + 2 * self.p2 * x * y
            x, y = (xd - dx) / radial, (yd - dy) / radial
        xy = np.stack([x, y], axis=-1)
        residual = np.abs(self.distort(xy) - xy_d).max(initial=0.0)
        if not np.isfinite(residual) or residual > UNDISTORT_TOL:
            raise DistortionError(f"distortion {self.as_list()} cannot be inverted over the image "
                                  f"(residual {residual:.2g}): the coefficients are too strong for the field of view")
        return xy


@dataclass(frozen=True)
class DistortedView:
    """A raw camera (``camera``: its K, size and pose; ``distortion``) rendered through a pinhole canvas
    (``source``: render this one, then :meth:`rgb` / :meth:`depth` / :meth:`labels` give the raw images)."""

    camera: PinholeCamera
    distortion: PlumbBob
    source: PinholeCamera
    source_u: np.ndarray  # (H, W) float: the canvas pixel each raw pixel samples
    source_v: np.ndarray  # (H, W)

    @classmethod
    def build(cls, camera: PinholeCamera, distortion: PlumbBob) -> "DistortedView":
        v, u = np.mgrid[0 : camera.height, 0 : camera.width].astype(float)
        raw = np.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy], axis=-1)
        xy = distortion.undistort(raw)  # (H, W, 2)
        u_pin = camera.fx * xy[..., 0] + camera.cx  # where each raw pixel's ray meets the undistorted image
        v_pin = camera.fy * xy[..., 1] + camera.cy
        # One pixel of margin beyond the extreme sample positions, so bilinear neighbours stay inside.
        left = max(0, int(np.ceil(-u_pin.min())) + 1)
        top = max(0, int(np.ceil(-v_pin.min())) + 1)
        right = max(0, int(np.ceil(u_pin.max() - (camera.width - 1))) + 1)
        bottom = max(0, int(np.ceil(v_pin.max() - (camera.height - 1))) + 1)
        try:
            source = replace(camera, width=camera.width + left + right, height=camera.height + top + bottom,
                             cx=camera.cx + left, cy=camera.cy + top)
        except CameraConfigError as err:  # pragma: no cover - replace keeps a valid camera valid
            raise DistortionError(str(err)) from None
        return cls(camera, distortion, source, u_pin + left, v_pin + top)

    def with_pose(self, T_world_cam: np.ndarray) -> "DistortedView":
        """The same view from another pose (the maps do not depend on the pose)."""
        return replace(self, camera=self.camera.with_pose(T_world_cam), source=self.source.with_pose(T_world_cam))

    def rgb(self, source_rgb: np.ndarray) -> np.ndarray:
        """(Hs, Ws, 3) uint8 canvas render → (H, W, 3) uint8 raw image (bilinear)."""
        img = np.asarray(source_rgb, dtype=np.float32)
        u0 = np.floor(self.source_u).astype(int)
        v0 = np.floor(self.source_v).astype(int)
        fu = (self.source_u - u0)[..., None].astype(np.float32)
        fv = (self.source_v - v0)[..., None].astype(np.float32)
        top = img[v0, u0] * (1 - fu) + img[v0, u0 + 1] * fu
        bottom = img[v0 + 1, u0] * (1 - fu) + img[v0 + 1, u0 + 1] * fu
        out = top * (1 - fv) + bottom * fv
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def _nearest(self, source: np.ndarray) -> np.ndarray:
        return np.asarray(source)[np.rint(self.source_v).astype(int), np.rint(self.source_u).astype(int)]

    def depth(self, source_depth_m: np.ndarray) -> np.ndarray:
        """(Hs, Ws) canvas depth (metres along the optical axis, NaN = none) → (H, W) raw-geometry depth."""
        return self._nearest(source_depth_m)

    def labels(self, source_labels: np.ndarray) -> np.ndarray:
        """(Hs, Ws) canvas segmentation → (H, W)."""
        return self._nearest(source_labels)

    def project(self, points_cam_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Camera-frame points (..., 3) → raw-image pixels (..., 2) and z-depth, distortion included."""
        pts = np.asarray(points_cam_m, dtype=float)
        z = pts[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            xy_d = self.distortion.distort(pts[..., :2] / z[..., None])
        cam = self.camera
        return np.stack([cam.fx * xy_d[..., 0] + cam.cx, cam.fy * xy_d[..., 1] + cam.cy], axis=-1), z

    def deproject(self, pixels_uv: np.ndarray, depth_m: np.ndarray) -> np.ndarray:
        """Raw-image pixels (..., 2) and z-depth → camera-frame points (..., 3), distortion removed."""
        uv = np.asarray(pixels_uv, dtype=float)
        cam = self.camera
        xy = self.distortion.undistort(np.stack([(uv[..., 0] - cam.cx) / cam.fx, (uv[..., 1] - cam.cy) / cam.fy],
                                                axis=-1))
        z = np.asarray(depth_m, dtype=float)
        return np.stack([xy[..., 0] * z, xy[..., 1] * z, z], axis=-1)


@dataclass(frozen=True, eq=False)
class Rectifier:
    """Raw (distorted) images → the pinhole images of the same K, as image_proc's rectify does with P = K.

    For every rectified pixel, :meth:`PlumbBob.distort` says where its ray lands in the raw image; colour is
    sampled there bilinearly, depth and labels by nearest neighbour (blending two surfaces would invent a
    depth). Rectified pixels whose ray falls outside the raw image get 0 colour and NaN depth. The maps depend
    only on (K, D, size): :meth:`for_camera` caches them."""

    camera: PinholeCamera  # the rectified camera: the raw one's K and size, no distortion
    distortion: PlumbBob
    raw_u: np.ndarray  # (H, W) float: the raw pixel each rectified pixel samples
    raw_v: np.ndarray  # (H, W)
    inside: np.ndarray  # (H, W) bool: that raw pixel lies inside the raw image

    @classmethod
    def for_camera(cls, camera: PinholeCamera, distortion: PlumbBob) -> "Rectifier":
        maps = _rectify_maps(camera.width, camera.height, camera.fx, camera.fy, camera.cx, camera.cy, distortion)
        return cls(camera, distortion, *maps)

    def rgb(self, raw_rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 raw colour → (H, W, 3) uint8 rectified (bilinear)."""
        img = np.asarray(raw_rgb, dtype=np.float32)
        h, w = img.shape[:2]
        u0 = np.clip(np.floor(self.raw_u).astype(int), 0, w - 2)
        v0 = np.clip(np.floor(self.raw_v).astype(int), 0, h - 2)
        fu = np.clip(self.raw_u - u0, 0, 1)[..., None].astype(np.float32)
        fv = np.clip(self.raw_v - v0, 0, 1)[..., None].astype(np.float32)
        top = img[v0, u0] * (1 - fu) + img[v0, u0 + 1] * fu
        bottom = img[v0 + 1, u0] * (1 - fu) + img[v0 + 1, u0 + 1] * fu
        out = np.clip(np.rint(top * (1 - fv) + bottom * fv), 0, 255).astype(np.uint8)
        out[~self.inside] = 0
        return out

    def depth(self, raw_depth_m: np.ndarray) -> np.ndarray:
        """(H, W) raw-geometry depth (m along the optical axis, NaN = none) → rectified (nearest; NaN outside)."""
        depth = np.asarray(raw_depth_m, dtype=np.float32)
        h, w = depth.shape
        out = depth[np.clip(np.rint(self.raw_v).astype(int), 0, h - 1), np.clip(np.rint(self.raw_u).astype(int), 0,
                                                                                  w - 1)]
        out[~self.inside] = np.nan
        return out


@lru_cache(maxsize=8)
def _rectify_maps(width: int, height: int, fx: float, fy: float, cx: float, cy: float, distortion: PlumbBob):
    v, u = np.mgrid[0:height, 0:width].astype(float)
    xy_d = distortion.distort(np.stack([(u - cx) / fx, (v - cy) / fy], axis=-1))  # (H, W, 2)
    raw_u, raw_v = fx * xy_d[..., 0] + cx, fy * xy_d[..., 1] + cy
    # Nearest-neighbour reach: a raw pixel covers ±0.5 around its centre.
    inside = (raw_u > -0.5) & (raw_u < width - 0.5) & (raw_v > -0.5) & (raw_v < height - 0.5)
    for array in (raw_u, raw_v, inside):
        array.flags.writeable = False  # shared by every Rectifier of this camera
    return raw_u, raw_v, inside
