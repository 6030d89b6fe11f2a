"""Query-point selection on rendered harness frames: the mechanics with random weights, the accuracy with base.pt."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from molmomotion_ros.forecasting.checkpoint import save_checkpoint
from molmomotion_ros.forecasting.grounding import (
    METHODS,
    GroundingError,
    QueryPoints,
    farthest_point_pixels,
    select_query_points,
)
from molmomotion_ros.forecasting.models import ForecasterConfig, ForecasterModel
from molmomotion_ros.forecasting.predictor import GroundingModel
from molmomotion_sim.seeds import SPLITS
from molmomotion_sim.tasks import TASKS
from molmomotion_sim.world import World

SEED = SPLITS["test"].start + 3  # one fixed test-split scene per family


@pytest.fixture(scope="module")
def frames():
    """family → (rgb, depth_m, K, instruction, target mask) of the scene at t0."""
    out = {}
    with World() as world:
        for family, task_cls in sorted(TASKS.items()):
            task = task_cls(world)
            task.reset(SEED)
            obs = world.render()
            out[family] = (obs.rgb, obs.depth_m, obs.camera.K, task.instruction,
                           obs.segmentation == task.target.body_id)
    return out


@pytest.fixture(scope="module")
def random_grounding(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    path = save_checkpoint(ForecasterModel(ForecasterConfig(head="base")),
                           tmp_path_factory.mktemp("ckpt") / "base.pt")
    return GroundingModel(path, device="cpu")


@functools.lru_cache(maxsize=1)
def _shipped_grounding() -> GroundingModel:
    return GroundingModel(device="cpu")


def _check_points(points: QueryPoints, depth_m: np.ndarray, K: np.ndarray, num_points: int) -> None:
    h, w = depth_m.shape
    assert points.points_2d.shape == (num_points, 2) and points.points_cam_m.shape == (num_points, 3)
    assert points.target_mask.shape == (h, w) and points.target_mask.dtype == bool
    uv = points.points_2d.astype(int)
    np.testing.assert_array_equal(uv, points.points_2d)  # integer pixel centres
    assert np.all((uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h))
    d = depth_m[uv[:, 1], uv[:, 0]]
    assert np.all(np.isfinite(d) & (d > 0)), "a query point has no depth"
    assert points.target_mask[uv[:, 1], uv[:, 0]].all(), "a query point lies outside the returned region"
    expected = np.stack([(uv[:, 0] - K[0, 2]) / K[0, 0] * d, (uv[:, 1] - K[1, 2]) / K[1, 1] * d, d], 1)
    np.testing.assert_allclose(points.points_cam_m, expected, rtol=1e-5, atol=1e-6)
    assert 0.0 < points.score <= 1.0 + 1e-6


@pytest.mark.parametrize("method", METHODS)
def test_points_lie_on_the_chosen_region_with_depth(frames, random_grounding, method):
    for rgb, depth, K, instruction, _ in frames.values():
        points = select_query_points(rgb, depth, K, instruction, method, grounding=random_grounding)
        assert points.method == method
        _check_points(points, depth, K, 8)


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_points(frames, random_grounding, method):
    rgb, depth, K, instruction, _ = frames["stack"]
    first = select_query_points(rgb, depth, K, instruction, method, grounding=random_grounding, seed=3)
    again = select_query_points(rgb, depth, K, instruction, method, grounding=random_grounding, seed=3)
    np.testing.assert_array_equal(first.points_2d, again.points_2d)
    np.testing.assert_array_equal(first.target_mask, again.target_mask)


def test_other_point_counts(frames, random_grounding):
    rgb, depth, K, instruction, _ = frames["push"]
    for count in (1, 3, 16):
        _check_points(select_query_points(rgb, depth, K, instruction, num_points=count, grounding=random_grounding),
                      depth, K, count)


def test_farthest_point_pixels_spread_and_repeat():
    region = np.zeros((10, 10), dtype=bool)
    region[2:7, 2:7] = True  # 25 pixels, 9 after erosion
    uv = farthest_point_pixels(region, 4, np.random.default_rng(0))
    assert len({tuple(p) for p in uv}) == 4
    assert np.all((uv >= 3) & (uv <= 5))  # eroded: off the silhouette
    tiny = np.zeros((10, 10), dtype=bool)
    tiny[4, 4:6] = True
    np.testing.assert_array_equal(np.unique(farthest_point_pixels(tiny, 5, np.random.default_rng(0)), axis=0),
                                  [[4, 4], [5, 4]])  # too few pixels: they repeat


TEXT = "push the red block"
BAD_INPUTS = {  # case → (rgb, depth, K) of a good frame → arguments of select_query_points
    "empty instruction": lambda rgb, depth, K: (rgb, depth, K, "   ", {}),
    "no valid depth": lambda rgb, depth, K: (rgb, np.full_like(depth, np.nan), K, TEXT, {}),
    "zero depth": lambda rgb, depth, K: (rgb, np.zeros_like(depth), K, TEXT, {}),
    "depth size": lambda rgb, depth, K: (rgb, depth[:-1], K, TEXT, {}),
    "integer depth": lambda rgb, depth, K: (rgb, (np.nan_to_num(depth) * 1000).astype(np.uint16), K, TEXT, {}),
    "grey image": lambda rgb, depth, K: (rgb[..., 0], depth, K, TEXT, {}),
    "float image": lambda rgb, depth, K: (rgb.astype(np.float32), depth, K, TEXT, {}),
    "bad K": lambda rgb, depth, K: (rgb, depth, np.eye(2), TEXT, {}),
    "unknown method": lambda rgb, depth, K: (rgb, depth, K, TEXT, {"method": "oracle"}),
    "zero points": lambda rgb, depth, K: (rgb, depth, K, TEXT, {"num_points": 0}),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_a_one_line_grounding_error(frames, random_grounding, case):
    rgb, depth, K, instruction, kwargs = BAD_INPUTS[case](*frames["push"][:3])
    with pytest.raises(GroundingError) as err:
        select_query_points(rgb, depth, K, instruction, grounding=random_grounding, **kwargs)
    assert "\n" not in str(err.value)
    assert isinstance(err.value, ValueError)


def test_open3d_finds_no_object_on_an_empty_table(frames, random_grounding):
    rgb, _, K, _, _ = frames["push"]
    h, w = rgb.shape[:2]
    v, _ = np.mgrid[0:h, 0:w]
    plane = (0.8 / (1 - 0.5 * (v - K[1, 2]) / K[1, 1])).astype(np.float32)  # z = 0.8 + 0.5 y: tilted, empty
    with pytest.raises(GroundingError, match="no candidate object"):
        select_query_points(rgb, plane, K, "push the red block", "open3d", grounding=random_grounding)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("family", sorted(TASKS))
def test_shipped_grounding_lands_on_the_target(frames, family, method):
    rgb, depth, K, instruction, target = frames[family]
    points = select_query_points(rgb, depth, K, instruction, method, grounding=_shipped_grounding())
    uv = points.points_2d.astype(int)
    on_target = int(target[uv[:, 1], uv[:, 0]].sum())
    assert on_target >= 6, f"{family} {SEED} {method}: {on_target} of 8 points on the target for {instruction!r}"
