"""Pixel-mask helpers shared by the dataset's query points and the grounding's point selection."""

from __future__ import annotations

import numpy as np


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
