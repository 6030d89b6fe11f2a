"""Rigid fits: turn forecast point tracks into object poses (Kabsch / Umeyama without scale)."""

from __future__ import annotations

import numpy as np


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
