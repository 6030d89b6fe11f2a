"""Query points on the instruction's target: where to forecast when the user names no pixels.

    points = select_query_points(rgb, depth_m, K, "put the red block in the blue bowl")  # method="encoder"
    points.points_2d        # (8, 2) pixels (u, v) on the red block
    points.points_cam_m     # (8, 3) camera frame at t0, metres

Two methods share the base encoder's target heat-map (:class:`GroundingModel`, channel 0):

* ``encoder``: from the heat-map's strongest pixel with valid depth, grow the 4-connected region of
  pixels that stay hot (``heat_fraction`` of that pixel's heat), lie within ``radius_m`` of its 3D
  point and step at most ``max_step_m`` in 3D from a neighbour (no jumps across depth edges). The
  heat-map is coarser than a small object, so the hot pixels spill onto the surface it stands on:
  a plane fitted (RANSAC, numpy) to the cooler surroundings removes them.
* ``open3d``: depth → point cloud → RANSAC removal of the supporting plane (the table) and of
  everything behind it → DBSCAN clusters; the cluster holding the most heat-map mass wins.

Either way the region is eroded by one pixel when ``num_points`` pixels survive (points then avoid
the silhouette, where depth mixes object and background), and ``num_points`` pixels are spread on
it by farthest-point sampling in pixel space, the first one drawn from ``seed``: the layout of the
training data's query points (``sim/dataset.py``). Same inputs and seed → same points.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from molmomotion_ros.geometry import farthest_point_pixels, grow_region

from .preprocess import depth_to_xyz_cam
from .types import POINTS_PER_GROUP

if TYPE_CHECKING:
    from .predictor import GroundingModel

logger = logging.getLogger(__name__)
METHODS = ("encoder", "open3d")


class GroundingError(ValueError):
    """Query points cannot be chosen: bad input, no valid depth, or no candidate object; one-line message."""


@dataclass(frozen=True)
class GroundingConfig:
    """Thresholds of both methods (metres, pixels, fractions)."""

    heat_fraction: float = 0.25  # encoder: a region pixel keeps this fraction of the seed pixel's heat
    radius_m: float = 0.06  # encoder: ... and lies this close to the seed pixel's 3D point
    surround_radius_m: float = 0.12  # encoder: cooler pixels this close to the seed outline the supporting surface
    min_plane_points: int = 30  # encoder: fewer surrounding points fit no surface
    min_plane_inliers: float = 0.4  # encoder: the surface must hold this share of the surrounding points
    max_step_m: float = 0.015  # both: largest 3D step between 4-neighbours inside one surface
    plane_distance_m: float = 0.008  # both: points this close to the supporting plane belong to it
    plane_iterations: int = 200  # both: RANSAC iterations
    cluster_eps_m: float = 0.02  # open3d: DBSCAN neighbourhood radius
    cluster_min_points: int = 6  # open3d: DBSCAN core-point neighbourhood size
    min_region_pixels: int = 3  # fewer pixels than this is no object


@dataclass(frozen=True)
class QueryPoints:
    """The chosen query points and the region they were drawn from."""

    points_2d: np.ndarray  # (P, 2) float32 pixels (u, v), integer pixel centres
    points_cam_m: np.ndarray  # (P, 3) float32 camera frame, metres
    target_mask: np.ndarray  # (h, w) bool: the chosen object region (before erosion)
    score: float  # fraction of the target heat-map's mass on ``target_mask``
    method: str
    heatmap: np.ndarray | None = None  # (h, w) float32 target heat-map that was used


@lru_cache(maxsize=1)
def default_grounding_model() -> GroundingModel:
    """The shipped base checkpoint's grounding model, built on first use and kept."""
    from .predictor import GroundingModel

    return GroundingModel()


def select_query_points(rgb: np.ndarray, depth_m: np.ndarray, K: np.ndarray, instruction: str,
                        method: str = "encoder", num_points: int = POINTS_PER_GROUP,
                        grounding: GroundingModel | None = None, seed: int = 0,
                        config: GroundingConfig | None = None) -> QueryPoints:
    """``num_points`` pixels on the object ``instruction`` names, with their camera-frame 3D points.

    rgb (h, w, 3) uint8; depth_m (h, w) metres, NaN or <= 0 = no return; K (3, 3) intrinsics.
    ``grounding`` defaults to :func:`default_grounding_model`. Raises :class:`GroundingError`.
    """
    cfg = config or GroundingConfig()
    rgb, depth, K, text = _check_inputs(rgb, depth_m, K, instruction, method, num_points)
    model = grounding if grounding is not None else default_grounding_model()
    heat = np.asarray(model.heatmaps(rgb, depth, K, text)[0], dtype=np.float32)  # (h, w)
    xyz = np.moveaxis(depth_to_xyz_cam(depth, K), 0, -1)  # (h, w, 3), NaN where invalid
    valid = np.isfinite(xyz).all(-1)
    if method == "encoder":
        region = _encoder_region(heat, xyz, valid, cfg, np.random.default_rng(seed))
    else:
        region = _open3d_region(heat, xyz, valid, cfg, seed)
    if region.sum() < min(cfg.min_region_pixels, num_points):
        raise GroundingError(f"no candidate object found for {text!r} (the best region has {int(region.sum())} "
                             "pixels)")
    uv = farthest_point_pixels(region, num_points, np.random.default_rng(seed))  # (P, 2) int
    points_cam = xyz[uv[:, 1], uv[:, 0]]  # (P, 3)
    score = float(heat[region].sum() / max(float(heat.sum()), 1e-12))
    logger.debug("%s grounding of %r: %d region pixels, score %.3f", method, text, int(region.sum()), score)
    return QueryPoints(uv.astype(np.float32), points_cam.astype(np.float32), region, score, method, heat)


# --- shared helpers ------------------------------------------------------------------------------
def clean_depth(depth_m: np.ndarray) -> np.ndarray:
    """float32 metres with every invalid return (NaN, inf, <= 0) as NaN."""
    depth = np.asarray(depth_m)
    return np.where(np.isfinite(depth) & (depth > 0), depth, np.nan).astype(np.float32)


def _check_inputs(rgb, depth_m, K, instruction, method, num_points):
    if method not in METHODS:
        raise GroundingError(f"unknown grounding method {method!r}; choose {' or '.join(METHODS)}")
    if not isinstance(num_points, (int, np.integer)) or num_points < 1:
        raise GroundingError(f"num_points must be a positive integer, got {num_points!r}")
    if not isinstance(instruction, str) or not instruction.split():
        raise GroundingError("the instruction is empty")
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise GroundingError(f"rgb must be (h, w, 3) uint8, got {rgb.shape} {rgb.dtype}")
    depth = np.asarray(depth_m)
    if depth.shape != rgb.shape[:2] or not np.issubdtype(depth.dtype, np.floating):
        raise GroundingError(f"depth must be float metres of shape {rgb.shape[:2]}, got {depth.shape} {depth.dtype}")
    K = np.asarray(K, dtype=float)
    if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise GroundingError("K must be a finite 3x3 intrinsic matrix with positive focal lengths")
    depth = clean_depth(depth)
    if not np.isfinite(depth).any():
        raise GroundingError("the depth image has no valid pixel")
    return rgb, depth, K, " ".join(instruction.split())


# --- encoder: region growing from the heat-map's peak ---------------------------------------------
def _encoder_region(heat: np.ndarray, xyz: np.ndarray, valid: np.ndarray, cfg: GroundingConfig,
                    rng: np.random.Generator) -> np.ndarray:
    seed = np.unravel_index(int(np.argmax(np.where(valid, heat, -np.inf))), heat.shape)
    distance = np.linalg.norm(np.nan_to_num(xyz - xyz[seed], nan=np.inf), axis=-1)  # (h, w) metres from the seed
    hot = heat >= cfg.heat_fraction * heat[seed]
    allowed = valid & hot & (distance <= cfg.radius_m)
    # The heat-map is coarser than the object, so the hot region spills onto the surface it stands on: fit
    # that surface to the cooler surroundings and keep only what stands above it.
    surroundings = valid & ~hot & (distance <= cfg.surround_radius_m)
    plane = fit_plane(xyz[surroundings], rng, cfg) if surroundings.sum() >= cfg.min_plane_points else None
    if plane is not None:
        above = allowed & (height_above(xyz, plane) > cfg.plane_distance_m)
        if above.any():
            if not above[seed]:  # the peak lies on the surface itself: start from the hottest pixel above it
                seed = np.unravel_index(int(np.argmax(np.where(above, heat, -np.inf))), heat.shape)
            allowed = above
    return grow_region(seed, allowed, xyz, cfg.max_step_m)


def fit_plane(points: np.ndarray, rng: np.random.Generator, cfg: GroundingConfig) -> np.ndarray | None:
    """RANSAC plane (a, b, c, d), unit normal towards the camera (d > 0), through points (N, 3); None if no
    plane holds ``min_plane_inliers`` of them within ``plane_distance_m``."""
    n = len(points)
    if n < 3:
        return None
    samples = points[rng.integers(n, size=(cfg.plane_iterations, 3))]  # (I, 3, 3)
    normals = np.cross(samples[:, 1] - samples[:, 0], samples[:, 2] - samples[:, 0])  # (I, 3)
    norms = np.linalg.norm(normals, axis=1)
    ok = norms > 1e-9
    if not ok.any():
        return None
    normals = normals[ok] / norms[ok, None]
    offsets = -np.einsum("ij,ij->i", normals, samples[ok, 0])  # (I,)
    inliers = np.abs(points @ normals.T + offsets) <= cfg.plane_distance_m  # (N, I)
    counts = inliers.sum(0)
    best = int(np.argmax(counts))
    if counts[best] < cfg.min_plane_inliers * n:
        return None
    members = points[inliers[:, best]]
    centre = members.mean(0)
    normal = np.linalg.svd(members - centre, full_matrices=False)[2][-1]  # least squares over the inliers
    offset = -float(normal @ centre)
    return np.append(normal, offset) * (1.0 if offset > 0 else -1.0)  # the camera (origin) on the positive side


def height_above(xyz: np.ndarray, plane: np.ndarray) -> np.ndarray:
    """Signed distance (..., ) of points (..., 3) from ``plane``, positive on the camera's side; NaN stays NaN."""
    return xyz @ plane[:3] + plane[3]


# --- open3d: plane removal + clustering, scored by the heat-map -----------------------------------
def _open3d_region(heat: np.ndarray, xyz: np.ndarray, valid: np.ndarray, cfg: GroundingConfig,
                   seed: int) -> np.ndarray:
    import open3d as o3d

    vs, us = np.nonzero(valid)
    points = xyz[vs, us].astype(np.float64)  # (N, 3)
    o3d.utility.random.seed(int(seed))  # RANSAC draws from open3d's global generator
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    keep = np.ones(len(points), dtype=bool)
    if len(points) >= 3:
        plane, _ = cloud.segment_plane(cfg.plane_distance_m, 3, cfg.plane_iterations)
        normal, offset = np.asarray(plane[:3]), float(plane[3])
        scale = np.linalg.norm(normal)
        signed = (points @ normal + offset) / scale  # the camera (origin) is on the side of sign(offset)
        keep = signed * np.sign(offset or 1.0) > cfg.plane_distance_m  # above the table, on the camera's side
    if keep.sum() < cfg.cluster_min_points:
        raise GroundingError("no candidate object found: nothing stands out of the supporting plane")
    above = cloud.select_by_index(np.flatnonzero(keep).tolist())
    labels = np.asarray(above.cluster_dbscan(cfg.cluster_eps_m, cfg.cluster_min_points, print_progress=False))
    kv, ku = vs[keep], us[keep]
    best, best_mass = None, -1.0
    for label in range(int(labels.max(initial=-1)) + 1):
        members = labels == label
        mass = float(heat[kv[members], ku[members]].sum())
        if mass > best_mass:
            best, best_mass = members, mass
    if best is None:
        raise GroundingError("no candidate object found: the points above the supporting plane form no cluster")
    region = np.zeros_like(valid)
    region[kv[best], ku[best]] = True
    return region
