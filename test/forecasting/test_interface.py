"""The common predict() interface: validation, groups of 8, frames, baselines."""

import numpy as np
import pytest

from molmomotion_ros.camera import look_at
from molmomotion_ros.forecasting import ForecastInputError, make_forecaster, validate_request
from molmomotion_ros.forecasting.interface import BACKENDS
from molmomotion_ros.plugins import load_object

K = np.array([[100.0, 0, 79.5], [0, 100.0, 59.5], [0, 0, 1]])
T_WORLD_CAM = look_at([0.85, 0.0, 1.3], [0.5, 0.0, 0.626])


def _inputs(P=8, H=1, h=120, w=160, seed=0):
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 255, (H, h, w, 3), dtype=np.uint8)
    depth = np.full((H, h, w), 0.8, dtype=np.float32)
    uv = np.c_[rng.uniform(10, w - 10, P), rng.uniform(10, h - 10, P)]
    z = np.full(P, 0.8)
    pts = np.c_[(uv[:, 0] - K[0, 2]) / K[0, 0] * z, (uv[:, 1] - K[1, 2]) / K[1, 1] * z, z]
    return rgb, depth, K, T_WORLD_CAM, uv, np.repeat(pts[None], H, 0), "put the red block in the blue bowl"


def test_backends_are_registered():
    make_forecaster("stationary")
    assert {"fm", "ar", "stationary", "constant-velocity", "molmomotion4b"} <= set(BACKENDS)
    for name, path in BACKENDS.items():
        assert callable(load_object(path)), name  # every import path leads to a factory


@pytest.mark.parametrize("P", [8, 5, 13, 16])
def test_any_number_of_points_is_served_in_groups(P):
    forecast = make_forecaster("stationary").predict(*_inputs(P), horizon=12, num_samples=3)
    assert forecast.points_cam_m.shape == (3, P, 12, 3)
    assert forecast.meta["groups"] == -(-P // 8) or forecast.meta["groups"] == 1


def test_world_frame_is_the_extrinsics_applied():
    args = _inputs()
    forecast = make_forecaster("stationary").predict(*args, horizon=4)
    expected = args[5][-1] @ T_WORLD_CAM[:3, :3].T + T_WORLD_CAM[:3, 3]
    np.testing.assert_allclose(forecast.points_world_m[0, :, 0], expected, atol=1e-5)
    back = (forecast.points_world_m[0, :, 0] - T_WORLD_CAM[:3, 3]) @ T_WORLD_CAM[:3, :3]
    np.testing.assert_allclose(back, args[5][-1], atol=1e-5)


def test_timestamps_follow_the_stride():
    forecast = make_forecaster("stationary", stride=2).predict(*_inputs(), horizon=3)
    np.testing.assert_allclose(forecast.timestamps_s, [2 / 15, 4 / 15, 6 / 15])


def test_constant_velocity_extrapolates_the_history():
    rgb, depth, K_, T, uv, pts, text = _inputs(H=2)
    pts[0] = pts[1] - [0.01, 0.0, 0.0]  # moved 1 cm along x in the last frame
    forecast = make_forecaster("constant-velocity", stride=1).predict(rgb, depth, K_, T, uv, pts, text, horizon=3)
    np.testing.assert_allclose(forecast.points_cam_m[0, :, 2] - pts[1], [[0.03, 0, 0]] * 8, atol=1e-5)


@pytest.mark.parametrize("mutate, message", [
    (lambda a: a.__setitem__(0, a[0].astype(np.float32)), "uint8"),
    (lambda a: a.__setitem__(1, a[1][:, :100]), "matching rgb"),
    (lambda a: a.__setitem__(1, (a[1] * 1000).astype(np.uint16)), "float metres"),
    (lambda a: a.__setitem__(2, np.eye(2)), "3x3"),
    (lambda a: a.__setitem__(3, np.ones((4, 4))), "rigid"),
    (lambda a: a.__setitem__(4, a[4] + [500, 0]), "outside"),
    (lambda a: a.__setitem__(4, a[4][:, :1]), "(P, 2)"),
    (lambda a: a.__setitem__(5, a[5][:, :3]), "points_3d_history"),
    (lambda a: a[5].__setitem__((0, 2), np.nan), "no 3D position"),
    (lambda a: a.__setitem__(6, "   "), "empty"),
    (lambda a: a.__setitem__(6, "把红色方块放进碗里"), "English"),
    (lambda a: a.__setitem__(6, "x" * 10_000), "characters"),
])
def test_bad_inputs_raise_typed_errors(mutate, message):
    args = list(_inputs())
    mutate(args)
    with pytest.raises(ForecastInputError, match=message):
        validate_request(*args)


@pytest.mark.parametrize("horizon, samples", [(0, 1), (1000, 1), (8, 0), (8, 1000)])
def test_bad_horizon_or_samples(horizon, samples):
    with pytest.raises(ForecastInputError):
        validate_request(*_inputs(), horizon=horizon, num_samples=samples)


def test_zero_depth_at_a_query_point_keeps_its_3d_point(caplog):
    args = list(_inputs())
    u, v = np.round(args[4][0]).astype(int)
    args[1][0, v, u] = 0.0
    request = validate_request(*args)
    np.testing.assert_allclose(request.points_cam_m, args[5][-1])
    assert "no depth at query points [0]" in caplog.text
