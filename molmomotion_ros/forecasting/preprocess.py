"""One home for turning camera data into network inputs (used by training and by the predictor alike)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def depth_to_xyz_cam(depth_m: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Depth (h, w) metres (NaN or <= 0 = no return) → camera-frame points (3, h, w), NaN where invalid."""
    h, w = depth_m.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    z = np.where(np.isfinite(depth_m) & (depth_m > 0), depth_m, np.nan).astype(np.float32)
    x = (u - K[0, 2]) / K[0, 0] * z
    y = (v - K[1, 2]) / K[1, 1] * z
    return np.stack([x, y, z])


def resize_inputs(rgb: np.ndarray, xyz_cam_m: np.ndarray, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """rgb (h, w, 3) uint8 and xyz (3, h, w) → area-resized tensors (3, H, W) uint8 and (3, H, W) float32.

    Invalid xyz pixels are left out of the average; a model pixel with no valid source pixel is NaN.
    """
    rgb_t = torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1)[None].float()
    rgb_small = F.interpolate(rgb_t, size=(height, width), mode="area")[0].round().clamp(0, 255).to(torch.uint8)
    xyz_t = torch.from_numpy(np.array(xyz_cam_m, dtype=np.float32, copy=True))[None]
    valid = torch.isfinite(xyz_t).all(1, keepdim=True).float()
    summed = F.interpolate(torch.nan_to_num(xyz_t) * valid, size=(height, width), mode="area")
    weight = F.interpolate(valid, size=(height, width), mode="area")
    xyz_small = torch.where(weight > 0.25, summed / weight.clamp_min(1e-6), torch.full_like(summed, float("nan")))
    return rgb_small, xyz_small[0]


def pixels_to_model(points_uv: np.ndarray, image_size: tuple[int, int], model_size: tuple[int, int]) -> np.ndarray:
    """Camera pixels (..., 2) → model-input pixels, both with pixel centres at integer coordinates."""
    (w, h), (mw, mh) = image_size, model_size
    scale = np.array([mw / w, mh / h], dtype=np.float32)
    return (np.asarray(points_uv, dtype=np.float32) + 0.5) * scale - 0.5


def grounding_targets(target_mask: np.ndarray, goal_uv: np.ndarray | None, size: tuple[int, int],
                      sigma_px: float = 1.0) -> np.ndarray:
    """Target-object mask and goal pixel → two spatial distributions (2, H, W) on the feature grid.

    ``size`` is the feature map's (width, height); the goal is a Gaussian of ``sigma_px`` feature pixels.
    """
    mw, mh = size
    h, w = target_mask.shape
    mask = torch.from_numpy(target_mask.astype(np.float32))[None, None]
    mask_small = F.interpolate(mask, size=(mh, mw), mode="area")[0, 0].numpy()
    out = np.zeros((2, mh, mw), dtype=np.float32)
    if mask_small.sum() > 0:
        out[0] = mask_small / mask_small.sum()
    if goal_uv is not None and np.all(np.isfinite(goal_uv)):
        gu, gv = pixels_to_model(goal_uv, (w, h), (mw, mh))
        v, u = np.mgrid[0:mh, 0:mw]
        g = np.exp(-((u - gu) ** 2 + (v - gv) ** 2) / (2 * sigma_px**2))
        if g.sum() > 1e-8:
            out[1] = g / g.sum()
    return out
