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
    residual per step (F,) in metres (a rigidity check of the forecast)."""
    P, F, _ = tracks.shape
    motions = np.empty((F, 4, 4))
    residuals = np.empty(F)
    for f in range(F):
        T = kabsch(points_t0, tracks[:, f])
        moved = points_t0 @ T[:3, :3].T + T[:3, 3]
        motions[f] = T
        residuals[f] = float(np.sqrt(np.nanmean(np.sum((moved - tracks[:, f]) ** 2, 1))))
    return motions, residuals
