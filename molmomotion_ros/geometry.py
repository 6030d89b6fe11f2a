"""Geometry helpers shared by perception, forecasting, planning, the harness and the policies.

Rigid fits (forecast point tracks → object poses), quaternions and poses, and pixel masks (erosion,
dilation, depth-continuous region growing, farthest-point sampling). Numpy only; frames and units are
in the argument names (``_m`` metres, ``_xyzw`` quaternion order, ``(u, v)`` / ``(v, u)`` pixels).
"""

from __future__ import annotations

import numpy as np


# --- rigid fits ---------------------------------------------------------------------------------
class FitError(ValueError):
    """Too few or degenerate points for a rigid fit."""


def kabsch(source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The 4x4 rigid transform T minimising sum w |T·source − target|² (points (N, 3), N >= 3)."""
    src, dst = np.asarray(source, float), np.asarray(target, float)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3:
        raise FitError(f"need matching (N, 3) point sets, got {src.shape} and {dst.shape}")
    valid = np.all(np.isfinite(src), 1) & np.all(np.isfinite(dst), 1)
    if valid.sum() < 3:
        raise FitError("a rigid fit needs at least 3 finite point pairs")
    w = np.ones(len(src)) if weights is None else np.asarray(weights, float)
    w = np.where(valid, w, 0.0)
    src, dst = np.where(valid[:, None], src, 0.0), np.where(valid[:, None], dst, 0.0)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    cov = ((dst - mu_d) * w[:, None]).T @ (src - mu_s)  # (3, 3)
    u, s, vt = np.linalg.svd(cov)
    if s[1] < 1e-12:
        raise FitError("the points are collinear: rotation about their line is undetermined")
    d = np.sign(np.linalg.det(u @ vt))
    R = u @ np.diag([1.0, 1.0, d]) @ vt  # a proper rotation, never a reflection
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, mu_d - R @ mu_s
    return T


def object_motion_from_tracks(points_t0: np.ndarray, tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-step rigid motions (F, 4, 4) that carry the t0 points onto the tracks (P, F, 3), and the RMS
    residual per step (F,) in metres (a rigidity check of the forecast).

    :func:`kabsch` for every step at once (one batched SVD: it runs on every forecast, in the
    forecaster's latency budget); same results, same FitErrors.
    """
    src = np.asarray(points_t0, float)
    dst = np.moveaxis(np.asarray(tracks, float), 1, 0)  # (F, P, 3)
    if src.ndim != 2 or src.shape[1] != 3 or dst.shape[1:] != src.shape:
        raise FitError(f"need t0 points (P, 3) and tracks (P, F, 3), got {src.shape} and {np.shape(tracks)}")
    valid = np.isfinite(src).all(-1)[None] & np.isfinite(dst).all(-1)  # (F, P)
    if (valid.sum(1) < 3).any():
        raise FitError("a rigid fit needs at least 3 finite point pairs")
    w = valid / valid.sum(1, keepdims=True)
    src_f = np.where(valid[..., None], src[None], 0.0)
    dst_f = np.where(valid[..., None], dst, 0.0)
    mu_s = np.einsum("fp,fpc->fc", w, src_f)
    mu_d = np.einsum("fp,fpc->fc", w, dst_f)
    cov = np.einsum("fp,fpi,fpj->fij", w, dst_f - mu_d[:, None], src_f - mu_s[:, None])
    u, sv, vt = np.linalg.svd(cov)
    if (sv[:, 1] < 1e-12).any():
        raise FitError("the points are collinear: rotation about their line is undetermined")
    flip = np.ones((len(cov), 3))
    flip[:, 2] = np.sign(np.linalg.det(u @ vt))  # a proper rotation, never a reflection
    R = (u * flip[:, None]) @ vt
    motions = np.tile(np.eye(4), (len(cov), 1, 1))
    motions[:, :3, :3] = R
    motions[:, :3, 3] = mu_d - np.einsum("fij,fj->fi", R, mu_s)
    moved = np.einsum("fij,pj->fpi", R, src) + motions[:, None, :3, 3]
    squared = np.where(valid, np.sum((moved - dst) ** 2, -1), np.nan)
    return motions, np.sqrt(np.nanmean(squared, 1))


# --- rotations and poses ------------------------------------------------------------------------
def quat_to_matrix(quat_xyzw: np.ndarray) -> np.ndarray:
    """Quaternions (..., 4) xyzw → rotation matrices (..., 3, 3)."""
    q = np.asarray(quat_xyzw, dtype=float)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = np.moveaxis(q, -1, 0)
    return np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ], axis=-1).reshape(q.shape[:-1] + (3, 3))


def points_along_poses(poses: np.ndarray, local_m: np.ndarray) -> np.ndarray:
    """World positions (P, T, 3) of body-frame points ``local_m`` (P, 3) under poses (T, 7)."""
    R = quat_to_matrix(poses[:, 3:])  # (T, 3, 3)
    return np.einsum("tij,pj->pti", R, local_m) + poses[None, :, :3]


# --- pixel masks --------------------------------------------------------------------------------
def erode(mask: np.ndarray) -> np.ndarray:
    """Binary erosion by one pixel with a 3x3 square (pixels on the image border are dropped)."""
    m = mask.astype(bool)
    out = np.zeros_like(m)
    core = m[1:-1, 1:-1].copy()
    for dv in (-1, 0, 1):
        for du in (-1, 0, 1):
            core &= m[1 + dv : m.shape[0] - 1 + dv, 1 + du : m.shape[1] - 1 + du]
    out[1:-1, 1:-1] = core
    return out


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Binary dilation by ``pixels`` 4-connected steps (a diamond), image border not wrapped."""
    out = mask.copy()
    for _ in range(pixels):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def grow_region(seed_vu: tuple[int, int], allowed: np.ndarray, xyz: np.ndarray, max_step_m: float) -> np.ndarray:
    """4-connected component of ``allowed`` around ``seed_vu`` whose neighbours are at most ``max_step_m`` apart."""
    with np.errstate(invalid="ignore"):
        link_u = np.linalg.norm(xyz[:, 1:] - xyz[:, :-1], axis=-1) <= max_step_m  # (h, w-1): (v, u) ~ (v, u+1)
        link_v = np.linalg.norm(xyz[1:] - xyz[:-1], axis=-1) <= max_step_m  # (h-1, w): (v, u) ~ (v+1, u)
    link_u &= allowed[:, 1:] & allowed[:, :-1]
    link_v &= allowed[1:] & allowed[:-1]
    region = np.zeros_like(allowed, dtype=bool)
    if not allowed[seed_vu]:
        return region
    region[seed_vu] = True
    while True:  # dilate along the allowed links until nothing is added (one ring per pass)
        grown = region.copy()
        grown[:, 1:] |= region[:, :-1] & link_u
        grown[:, :-1] |= region[:, 1:] & link_u
        grown[1:] |= region[:-1] & link_v
        grown[:-1] |= region[1:] & link_v
        if np.array_equal(grown, region):
            return region
        region = grown


def farthest_point_pixels(region: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` pixels (u, v) of a non-empty ``region`` spread by farthest-point sampling; (count, 2) int64.

    The region is eroded by one pixel first when at least ``count`` pixels survive, so points avoid
    the silhouette (where depth mixes object and background). The first pixel is drawn from ``rng``;
    with fewer pixels than ``count``, pixels repeat.
    """
    interior = erode(region)
    candidates = interior if interior.sum() >= count else region.astype(bool)
    vs, us = np.nonzero(candidates)
    if len(us) == 0:
        raise ValueError("farthest_point_pixels needs a non-empty region")
    uv = np.stack([us, vs], axis=1)  # (M, 2)
    chosen = [int(rng.integers(len(uv)))]
    dist = np.linalg.norm(uv - uv[chosen[0]], axis=1)
    for _ in range(count - 1):
        nxt = int(np.argmax(dist))  # 0 once every pixel is taken: pixels repeat
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(uv - uv[nxt], axis=1))
    return uv[chosen].astype(np.int64)
