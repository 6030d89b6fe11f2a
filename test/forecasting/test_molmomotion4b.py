"""MolmoMotion-4B adapter without the weights: inputs, prompt, output parsing, frames, lazy loading."""

from __future__ import annotations

import ast
import dataclasses
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from molmomotion_ros.forecasting import molmomotion4b as mm4b
from molmomotion_ros.forecasting.ar_text import TracksFormatError
from molmomotion_ros.forecasting.types import (
    TRACK_HZ,
    BackendUnavailableError,
    ForecastInputError,
    ForecastRequest,
)

WIDTH, HEIGHT = 64, 48
# Camera → world: rotate 90° about z, then translate. x_w = -y_c + 1, y_w = x_c + 2, z_w = z_c + 0.5.
T_WORLD_CAM = np.array([[0.0, -1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 2.0], [0.0, 0.0, 1.0, 0.5], [0.0, 0.0, 0.0, 1.0]])


def _history(num_frames: int = 3, num_points: int = 8) -> np.ndarray:
    """Point p at frame h: (0.1 + 0.01 p, -0.05, 1.0 + 0.002 h) → deltas (10 p, 0, 2 (h - H + 1)) mm."""
    h = np.arange(num_frames)[:, None]
    p = np.arange(num_points)[None, :]
    x = np.broadcast_to(0.1 + 0.01 * p, (num_frames, num_points))
    y = np.full((num_frames, num_points), -0.05)
    z = np.broadcast_to(1.0 + 0.002 * h, (num_frames, num_points))
    return np.stack([x, y, z], axis=-1)  # (H, P, 3)


def _request(num_frames: int = 3, num_points: int = 8, horizon: int = 4, **changes) -> ForecastRequest:
    points_2d = np.array([[0, 0], [64, 48], [32, 24], [-5, 12], [70, 50], [16, 36], [48, 12], [8, 8]], float)
    request = ForecastRequest(
        history_rgb=np.zeros((num_frames, HEIGHT, WIDTH, 3), np.uint8),
        history_depth_m=np.ones((num_frames, HEIGHT, WIDTH), np.float32),
        K=np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]]),
        T_world_cam=T_WORLD_CAM,
        points_2d=np.resize(points_2d, (num_points, 2)),
        points_3d_history_cam_m=_history(num_frames, num_points),
        instruction="  open the drawer ",
        horizon=horizon,
    )
    return dataclasses.replace(request, **changes)


# --- prepare_inputs ---------------------------------------------------------------------------
def test_prepare_inputs_shapes_and_normalisation():
    inputs = mm4b.prepare_inputs(_request(), history=3)
    assert inputs["H"] == 3 and inputs["F"] == 4 and inputs["P"] == 8
    assert inputs["frames_rgb"].shape == (3, HEIGHT, WIDTH, 3) and inputs["image_size_wh"] == (WIDTH, HEIGHT)
    assert inputs["points_2d_norm"].dtype == np.int64
    np.testing.assert_array_equal(
        inputs["points_2d_norm"],
        [[0, 0], [1000, 1000], [500, 500], [0, 250], [1000, 1000], [250, 750], [750, 250], [125, 167]],
    )
    np.testing.assert_allclose(inputs["anchor_cam_m"], [0.1, -0.05, 1.004])
    assert inputs["history_delta_mm"].shape == (3, 8, 3)
    np.testing.assert_array_equal(inputs["history_delta_mm"][:, 3], [[30, 0, -4], [30, 0, -2], [30, 0, 0]])
    assert inputs["history_visible"].all()
    assert inputs["action"] == "open the drawer"


def test_prepare_inputs_back_fills_missing_history():
    history = _history()
    history[0, 5] = np.nan
    history[:2, 6] = np.nan
    inputs = mm4b.prepare_inputs(_request(points_3d_history_cam_m=history))
    np.testing.assert_allclose(inputs["points_3d_history_cam_m"][0, 5], history[1, 5])
    np.testing.assert_allclose(inputs["points_3d_history_cam_m"][:2, 6], history[[2, 2], 6])
    assert inputs["history_visible"].sum() == 24 - 3


@pytest.mark.parametrize("num_points", [1, 7, 16])
def test_prepare_inputs_refuses_other_point_counts(num_points):
    with pytest.raises(ForecastInputError, match="exactly 8 query points"):
        mm4b.prepare_inputs(_request(num_points=num_points))


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"history_rgb": np.zeros((3, HEIGHT, WIDTH, 3), np.float32)}, "uint8"),
        ({"history_rgb": np.zeros((3, HEIGHT, WIDTH), np.uint8)}, "(H, h, w, 3)"),
        ({"points_3d_history_cam_m": _history(num_frames=2)}, "to match history_rgb"),
        ({"points_3d_history_cam_m": _history()[..., :2]}, "to match history_rgb"),
        ({"points_3d_history_cam_m": _history().astype(str)}, "must be numeric"),
        ({"points_2d": np.zeros((8, 3))}, "points_2d must be finite (8, 2)"),
        ({"points_2d": np.full((8, 2), np.nan)}, "points_2d must be finite"),
        ({"instruction": None}, "instruction must be a string"),
        ({"horizon": 0}, "horizon must be a positive integer"),
        ({"horizon": 2.5}, "horizon must be a positive integer"),
    ],
)
def test_prepare_inputs_refuses_bad_shapes_and_dtypes(changes, fragment):
    with pytest.raises(ForecastInputError) as info:
        mm4b.prepare_inputs(_request(**changes))
    assert fragment in str(info.value)


def test_prepare_inputs_checks_history_length_and_t0():
    with pytest.raises(ForecastInputError, match="takes 1 history frames, the request has 3"):
        mm4b.prepare_inputs(_request(), history=1)
    history = _history()
    history[-1, 2] = np.nan
    with pytest.raises(ForecastInputError, match=r"query points \[2\] have no finite 3D position at t0"):
        mm4b.prepare_inputs(_request(points_3d_history_cam_m=history))


# --- build_prompt -----------------------------------------------------------------------------
def _history_block() -> str:
    rows = [f"{h}.0 " + " ".join(f"{p + 1} {10 * p} 0 {2 * (h - 2)}" for p in range(8)) for h in range(3)]
    return f'<tracks coords="{";".join(rows)}">3d object history</tracks>'


def test_build_prompt_matches_release_format():
    prompt = mm4b.build_prompt(mm4b.prepare_inputs(_request()))
    assert prompt == (
        'Predict the future 3D point coordinates of 8 points over 4 timestamps, given action: "open the drawer", '
        f'and history 3d point coordinates: "{_history_block()}".'
    )


def test_build_prompt_with_2d_coordinates():
    prompt = mm4b.build_prompt(mm4b.prepare_inputs(_request()), include_2d_coords=True)
    points = ('<points coords="2.0 1 0 0 2 1000 1000 3 500 500 4 0 250 5 1000 1000 6 250 750 7 750 250 8 125 167">'
              "2d object point</points>")
    assert f'given action: "open the drawer", 2d point coordinates: "{points}", and history 3d point' in prompt


# --- parse_output -----------------------------------------------------------------------------
ANSWER = (
    'Here is the motion. <tracks coords="3.0 1 0 0 10 2 10 0 10;4.0 1 0 0 20;6.0 1 0 0 40 2 10 0 40">'
    "3d object trajectories</tracks>"
)


def test_parse_output_holds_missing_steps_and_records_visibility():
    request = _request()
    forecast = mm4b.parse_output(ANSWER, request, model_id="test-model")
    anchor = request.points_cam_m[0]
    assert forecast.points_cam_m.shape == (1, 8, 4, 3) and forecast.num_samples == 1
    np.testing.assert_allclose(forecast.points_cam_m[0, 0, :, 2] - anchor[2], [0.010, 0.020, 0.020, 0.040])
    np.testing.assert_allclose(forecast.points_cam_m[0, 1, 0], anchor + [0.010, 0, 0.010])
    np.testing.assert_allclose(forecast.points_cam_m[0, 1, 1], anchor + [0.010, 0, 0.010])  # held
    np.testing.assert_allclose(forecast.points_cam_m[0, 5], np.repeat(request.points_cam_m[5][None], 4, 0))
    assert forecast.meta["visible"][:2].tolist() == [[True, True, False, True], [True, False, False, True]]
    assert not forecast.meta["visible"][2:].any()
    np.testing.assert_allclose(forecast.timestamps_s, np.arange(1, 5) / TRACK_HZ)
    np.testing.assert_array_equal(forecast.scores, [0.0])
    assert forecast.backend == "molmomotion4b" and forecast.model_id == "test-model"
    assert forecast.meta["label"] == "3d object trajectories" and forecast.meta["raw_text"] == ANSWER


def test_parse_output_world_frame_uses_T_world_cam():
    forecast = mm4b.parse_output(ANSWER, _request())
    x_c, y_c, z_c = forecast.points_cam_m[0, 1, 0]
    np.testing.assert_allclose(forecast.points_world_m[0, 1, 0], [-y_c + 1.0, x_c + 2.0, z_c + 0.5])
    np.testing.assert_allclose(forecast.best_world_m, mm4b.cam_to_world(forecast.points_cam_m[0], T_WORLD_CAM))


def test_parse_output_drops_steps_beyond_horizon():
    text = '<tracks coords="3.0 1 0 0 1;7.0 1 0 0 5">x</tracks>'
    forecast = mm4b.parse_output(text, _request())
    assert forecast.meta["dropped_beyond_horizon"] == 1 and forecast.horizon == 4


@pytest.mark.parametrize(
    "text",
    [
        "I cannot predict that.",
        '<tracks coords="3.0 1 0 0 10;4.0 1 0',
        '<tracks coords="3.0 9 0 0 10">x</tracks>',
        '<tracks coords="1.0 1 0 0 10">x</tracks>',  # a history timestamp: the future starts at H=3
        '<tracks coords="3.0 1 0 0 1.5">x</tracks>',
    ],
)
def test_parse_output_refuses_malformed_text(text):
    with pytest.raises(TracksFormatError):
        mm4b.parse_output(text, _request())


def test_parse_output_refuses_non_rigid_transform():
    with pytest.raises(ForecastInputError, match="rigid transform"):
        mm4b.parse_output(ANSWER, _request(T_world_cam=np.diag([2.0, 1.0, 1.0, 1.0])))


def test_camera_world_round_trip():
    points_cam = np.array([[0.1, 0.2, 0.3], [1.0, -1.0, 2.0]])
    points_world = mm4b.cam_to_world(points_cam, T_WORLD_CAM)
    np.testing.assert_allclose(points_world, [[0.8, 2.1, 0.8], [2.0, 3.0, 2.5]])
    np.testing.assert_allclose(mm4b.world_to_cam(points_world, T_WORLD_CAM), points_cam)


# --- the forecaster: lazy import, typed unavailability ----------------------------------------
def test_module_imports_heavy_dependencies_lazily():
    tree = ast.parse(Path(mm4b.__file__).read_text())
    top_level = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top_level.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            top_level.add(node.module.split(".")[0])
    assert not top_level & {"torch", "transformers", "molmo_motion", "PIL"}


def test_missing_package_and_weights_is_backend_unavailable(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "molmo_motion", None)  # makes `import molmo_motion` fail
    with pytest.raises(BackendUnavailableError) as info:
        mm4b.MolmoMotion4BForecaster(tmp_path / "absent", device="cpu")
    assert not isinstance(info.value, ImportError)
    message = str(info.value)
    assert "molmo_motion package cannot be imported" in message and "pip install" in message
    assert "does not exist" in message and "hf download" in message and "\n" not in message


def test_missing_package_with_weights_is_backend_unavailable(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "molmo_motion", None)
    (tmp_path / "config.yaml").write_text("model: {}\n")
    with pytest.raises(BackendUnavailableError, match="molmo_motion package") as info:
        mm4b.MolmoMotion4BForecaster(tmp_path, device="cpu")
    assert "weights dir" not in str(info.value)


class _FakeInternal:
    def __init__(self):
        self.moved_to = None

    def to(self, **kwargs):
        self.moved_to = kwargs
        return self


class _FakeProcessor:
    config = types.SimpleNamespace(history_size=3)
    calls: list = []

    @classmethod
    def from_pretrained(cls, path):
        return cls()

    def __call__(self, **kwargs):
        import torch

        type(self).calls.append(kwargs)
        return {"input_ids": torch.zeros((1, 5), dtype=torch.long), "future_horizon": kwargs["future_horizon"]}


class _FakeModel:
    answer = ANSWER

    def __init__(self):
        self._internal = _FakeInternal()
        self.batches = []

    @classmethod
    def from_pretrained(cls, path):
        return cls()

    def predict_trajectory(self, **batch):
        self.batches.append(batch)
        return types.SimpleNamespace(future_text=self.answer, future_3d=None)


@pytest.fixture
def fake_release(monkeypatch):
    module = types.ModuleType("molmo_motion")
    module.MolmoMotion = _FakeModel
    module.MolmoMotionProcessor = _FakeProcessor
    monkeypatch.setitem(sys.modules, "molmo_motion", module)
    _FakeProcessor.calls = []
    return module


def test_missing_weights_with_package_is_backend_unavailable(tmp_path, fake_release):
    with pytest.raises(BackendUnavailableError, match="has no config.yaml") as info:
        mm4b.MolmoMotion4BForecaster(tmp_path, device="cpu")
    assert "pip install" not in str(info.value)


def test_predict_with_a_stand_in_release(tmp_path, fake_release):
    pytest.importorskip("torch")
    pytest.importorskip("PIL")
    (tmp_path / "config.yaml").write_text("model: {}\n")
    forecaster = mm4b.MolmoMotion4BForecaster(tmp_path, device="cpu", dtype="float32", max_new_tokens=99)
    forecast = forecaster.predict(_request())
    (call,) = _FakeProcessor.calls
    assert len(call["history_frames"]) == 3 and call["history_frames"][0].size == (WIDTH, HEIGHT)
    assert tuple(call["points_3d_history"].shape) == (3, 8, 3) and tuple(call["points_2d_at_t0"].shape) == (8, 2)
    assert call["action"] == "open the drawer" and call["future_horizon"] == 4
    assert forecaster._model.batches[0]["max_new_tokens"] == 99
    assert forecast.points_cam_m.shape == (1, 8, 4, 3) and forecast.backend == "molmomotion4b"
    assert forecast.meta["prompt"].startswith("Predict the future 3D point coordinates of 8 points over 4 timestamps")
    with pytest.raises(ForecastInputError, match="exactly 8"):
        forecaster.predict(_request(num_points=4))
    forecaster.close()
    with pytest.raises(BackendUnavailableError, match="closed"):
        forecaster.predict(_request())


def test_history_mismatch_with_weights_is_refused(tmp_path, fake_release):
    (tmp_path / "config.yaml").write_text("model: {}\n")
    with pytest.raises(ValueError, match="take 3 history frames, not 1"):
        mm4b.MolmoMotion4BForecaster(tmp_path, device="cpu", history=1)


def test_cuda_request_without_cuda_is_backend_unavailable(tmp_path, fake_release):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    (tmp_path / "config.yaml").write_text("model: {}\n")
    with pytest.raises(BackendUnavailableError, match="CUDA is not available"):
        mm4b.MolmoMotion4BForecaster(tmp_path, device="cuda")


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="dtype must be one of"):
        mm4b.MolmoMotion4BForecaster("/nonexistent", dtype="int8")
    with pytest.raises(ValueError, match="history 1 or 3"):
        mm4b.MolmoMotion4BForecaster("/nonexistent", history=2)


def test_the_backend_without_a_weights_folder_says_where_to_get_them():
    from molmomotion_ros.forecasting import make_forecaster
    from molmomotion_ros.forecasting.pipeline import ForecastPipeline

    for build in (lambda: make_forecaster("molmomotion4b"), lambda: ForecastPipeline("molmomotion4b")):
        with pytest.raises(BackendUnavailableError, match="needs the folder of its weights.*hf download"):
            build()


def test_the_pipeline_hands_the_checkpoint_to_the_backend_as_its_weights_folder(tmp_path):
    from molmomotion_ros.forecasting.pipeline import ForecastPipeline

    with pytest.raises(BackendUnavailableError, match=f"weights dir {tmp_path / 'w'} does not exist"):
        ForecastPipeline("molmomotion4b", checkpoint=tmp_path / "w")
