"""Forecast overlays: projection, one line per track, PNG output, contact grids."""

from __future__ import annotations

import numpy as np
from PIL import Image

from molmomotion_ros.forecasting.visualize import contact_grid, figure_to_array, overlay_forecast, project, save_overlay

K_CAM = np.array([[100.0, 0.0, 79.5], [0.0, 100.0, 59.5], [0.0, 0.0, 1.0]])


def _forecast(num_hyp: int = 3, num_points: int = 8, steps: int = 5) -> np.ndarray:
    rng = np.random.default_rng(0)
    start = np.stack([rng.uniform(-0.1, 0.1, num_points), rng.uniform(-0.1, 0.1, num_points),
                      np.full(num_points, 0.8)], 1)  # (P, 3)
    motion = np.cumsum(rng.normal(0, 0.01, (num_hyp, num_points, steps, 3)), 2)
    return start[None, :, None] + motion  # (K, P, F, 3)


def test_project_matches_the_pinhole_model_and_drops_points_behind():
    pixels = project(np.array([[0.0, 0.0, 1.0], [0.1, -0.2, 2.0], [0.0, 0.0, -1.0]]), K_CAM)
    np.testing.assert_allclose(pixels[:2], [[79.5, 59.5], [84.5, 49.5]])
    assert np.isnan(pixels[2]).all()


def test_overlay_draws_every_track_and_the_ground_truth(tmp_path):
    rgb = np.full((120, 160, 3), 90, dtype=np.uint8)
    pred = _forecast()
    points_2d = project(pred[0, :, 0], K_CAM)
    fig = overlay_forecast(rgb, K_CAM, pred, pred[0], points_2d, "fm: push the red block")
    ax = fig.axes[0]
    assert len(ax.lines) == 3 * 8 + 2 * 8  # K x P tracks, and each ground-truth track in two dash colours
    widths = sorted({round(line.get_linewidth(), 2) for line in ax.lines})
    assert len(widths) >= 2  # the best hypothesis is thicker
    image = figure_to_array(fig)
    assert image.dtype == np.uint8 and image.shape[2] == 3 and image.shape[1] > image.shape[0]
    path = save_overlay(tmp_path / "sub" / "overlay.png", rgb, K_CAM, pred[0], None, None, "")
    with Image.open(path) as png:
        assert png.size[0] > 300


def test_contact_grid_tiles_figures_and_arrays(tmp_path):
    rgb = np.zeros((120, 160, 3), dtype=np.uint8)
    fig = overlay_forecast(rgb, K_CAM, _forecast(1), title="a")
    path = contact_grid([fig, rgb, rgb], tmp_path / "grid.png", columns=2)
    with Image.open(path) as png:
        width, height = png.size
    cell = figure_to_array(fig).shape
    assert width == 2 * (cell[1] + 4) + 4 and height == 2 * (cell[0] + 4) + 4
