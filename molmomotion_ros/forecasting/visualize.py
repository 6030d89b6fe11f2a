"""Forecasts drawn on the camera image: every hypothesis's projected tracks, the ground truth, the query points.

    fig = overlay_forecast(rgb, K, forecast.points_cam_m, gt_cam, points_2d, "fm: stack the red block ...")
    save_overlay("results/forecast.png", rgb, K, forecast.points_cam_m)
    contact_grid([fig_a, fig_b, rgb_array], "results/sheet.png", columns=4)

Figures are built on the Agg canvas directly (no pyplot, no global figure registry), so this works
headless and in worker threads; nothing here shows a window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

POINT_COLOURS = "tab10"  # one colour per query point (cycled beyond 10)
BEST_LINEWIDTH = 2.4
OTHER_LINEWIDTH = 1.0
OTHER_ALPHA = (0.55, 0.15)  # alpha of the second-best ... worst hypothesis, linearly
MIN_DEPTH_M = 1e-3  # points closer than this to the camera plane are not projected


def project(points_cam_m: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera-frame points (..., 3) → pixels (..., 2); NaN for points at or behind the camera."""
    pts = np.asarray(points_cam_m, dtype=float)
    z = pts[..., 2]
    ok = np.isfinite(z) & (z > MIN_DEPTH_M)
    safe_z = np.where(ok, z, 1.0)
    u = K[0, 0] * pts[..., 0] / safe_z + K[0, 2]
    v = K[1, 1] * pts[..., 1] / safe_z + K[1, 2]
    return np.where(ok[..., None], np.stack([u, v], -1), np.nan)


def overlay_forecast(rgb: np.ndarray, K: np.ndarray, forecast_points_cam: np.ndarray,
                     gt_cam: np.ndarray | None = None, points_2d: np.ndarray | None = None, title: str = "",
                     width_in: float = 6.4) -> Figure:
    """A figure of ``rgb`` with the forecast's tracks projected through ``K``.

    forecast_points_cam (K, P, F, 3) (or (P, F, 3)), best hypothesis first, camera frame at t0; gt_cam
    (P, F, 3) or None, drawn dashed; points_2d (P, 2) query pixels, drawn as circles (when None, the
    tracks start from nothing). Colour = query point; the best hypothesis is opaque and thick, the
    others fade with rank.
    """
    image = np.asarray(rgb)
    h, w = image.shape[:2]
    K = np.asarray(K, dtype=float)
    pred = np.asarray(forecast_points_cam, dtype=float)
    if pred.ndim == 3:
        pred = pred[None]
    if pred.ndim != 4 or pred.shape[-1] != 3:
        raise ValueError(f"forecast_points_cam must be (K, P, F, 3), got {pred.shape}")
    num_hyp, num_points = pred.shape[:2]
    colours = _point_colours(num_points)
    starts = None if points_2d is None else np.asarray(points_2d, dtype=float).reshape(-1, 2)

    fig = Figure(figsize=(width_in, width_in * h / w + (0.35 if title else 0.0)))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, h / (h + (0.35 / width_in * w if title else 0.0))))
    ax.imshow(image, interpolation="nearest")
    tracks = project(pred, K)  # (K, P, F, 2)
    alphas = np.linspace(*OTHER_ALPHA, max(num_hyp - 1, 1))
    for k in reversed(range(num_hyp)):  # the best hypothesis is drawn last, on top
        alpha, width = (1.0, BEST_LINEWIDTH) if k == 0 else (float(alphas[k - 1]), OTHER_LINEWIDTH)
        for p in range(num_points):
            uv = tracks[k, p]
            if starts is not None and p < len(starts):
                uv = np.concatenate([starts[p : p + 1], uv])
            ax.plot(uv[:, 0], uv[:, 1], color=colours[p], alpha=alpha, linewidth=width, solid_capstyle="round")
        if k == 0:
            ax.scatter(tracks[0, :, -1, 0], tracks[0, :, -1, 1], c=colours[: tracks.shape[1]], marker="x", s=28,
                       linewidths=1.5, zorder=4)
    if gt_cam is not None:
        gt = project(np.asarray(gt_cam, dtype=float), K)  # (P, F, 2)
        for p in range(min(num_points, len(gt))):
            uv = gt[p]
            if starts is not None and p < len(starts):
                uv = np.concatenate([starts[p : p + 1], uv])
            ax.plot(uv[:, 0], uv[:, 1], color=colours[p], linestyle=(0, (3, 2)), linewidth=1.4, zorder=3)
            ax.plot(uv[:, 0], uv[:, 1], color="white", linestyle=(3, (2, 3)), linewidth=1.4, alpha=0.6, zorder=3)
    if starts is not None:
        ax.scatter(starts[:, 0], starts[:, 1], c=colours[: len(starts)], s=36, edgecolors="white", linewidths=1.0,
                   zorder=5)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9, y=0.995, va="top")
    return fig


def save_overlay(path: str | Path, rgb: np.ndarray, K: np.ndarray, forecast_points_cam: np.ndarray,
                 gt_cam: np.ndarray | None = None, points_2d: np.ndarray | None = None, title: str = "",
                 dpi: int = 100) -> Path:
    """:func:`overlay_forecast` written to ``path`` (PNG by its suffix); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    overlay_forecast(rgb, K, forecast_points_cam, gt_cam, points_2d, title).savefig(path, dpi=dpi)
    return path


def figure_to_array(fig: Figure, dpi: int = 100) -> np.ndarray:
    """Render a figure → (h, w, 3) uint8."""
    fig.set_dpi(dpi)
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def contact_grid(items: list, path: str | Path, columns: int = 4, pad_px: int = 4) -> Path:
    """Tile figures and/or (h, w, 3) uint8 images into one PNG (white padding); returns the path."""
    if not items:
        raise ValueError("contact_grid needs at least one figure or image")
    images = [figure_to_array(item) if isinstance(item, Figure) else _as_rgb_uint8(item) for item in items]
    cols = max(1, min(columns, len(images)))
    rows = -(-len(images) // cols)
    cell_h = max(img.shape[0] for img in images) + pad_px
    cell_w = max(img.shape[1] for img in images) + pad_px
    sheet = np.full((rows * cell_h + pad_px, cols * cell_w + pad_px, 3), 255, dtype=np.uint8)
    for j, img in enumerate(images):
        r, c = divmod(j, cols)
        top, left = pad_px + r * cell_h, pad_px + c * cell_w
        sheet[top : top + img.shape[0], left : left + img.shape[1]] = img
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(path)
    return path


def _as_rgb_uint8(image) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, -1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"expected an (h, w, 3) image or a Figure, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0.0, 1.0) * 255).round().astype(np.uint8)
    return arr[..., :3]


def _point_colours(count: int) -> np.ndarray:
    from matplotlib import colormaps

    cmap = colormaps[POINT_COLOURS]
    return np.array([cmap(i % cmap.N) for i in range(count)])
