"""``molmomotion forecast``, ``train`` and ``eval-forecast`` run as real subprocesses on a rendered harness frame."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from molmomotion_ros.cli import build_parser
from molmomotion_sim.seeds import SPLITS
from molmomotion_sim.tasks import TASKS
from molmomotion_sim.world import World

SEED = SPLITS["test"].start + 3
INSTRUCTION_FLAG = "--instruction"


def run_cli(*args: str, cwd: Path | None = None, timeout_s: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "molmomotion_ros.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout_s)


def error_lines(stderr: str) -> list[str]:
    """stderr without PyBullet's import banner (printed by its C code, not by the CLI)."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("pybullet build time")]


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> dict:
    """One rendered stack scene as files: rgb.png, depth.png (16-bit mm), depth.npy, camera.yaml, and variants."""
    root = tmp_path_factory.mktemp("frame")
    with World() as world:
        task = TASKS["stack"](world)
        task.reset(SEED)
        obs = world.render()
    Image.fromarray(obs.rgb).save(root / "rgb.png")
    depth_mm = np.where(np.isfinite(obs.depth_m), np.round(obs.depth_m * 1000.0), 0).astype(np.uint16)
    Image.fromarray(depth_mm).save(root / "depth.png")
    np.save(root / "depth.npy", obs.depth_m)
    cam, T = obs.camera, obs.camera.T_world_cam
    camera = {"width": cam.width, "height": cam.height, "fx": float(cam.fx), "fy": float(cam.fy),
              "cx": float(cam.cx), "cy": float(cam.cy),
              "pose": {"eye_m": T[:3, 3].tolist(), "look_at_m": (T[:3, 3] + T[:3, 2]).tolist()}}
    (root / "camera.yaml").write_text(yaml.safe_dump({"camera": camera}))
    # variants for the bad-input cases
    Image.fromarray(obs.rgb[::2, ::2].copy()).save(root / "small.png")
    Image.fromarray((depth_mm // 8).astype(np.uint8)).save(root / "depth8.png")
    np.save(root / "depth-small.npy", obs.depth_m[:-2])
    np.save(root / "depth-int.npy", depth_mm)
    (root / "camera-bad.yaml").write_text("camera: {width: 160}\n")
    (root / "a-file").write_text("not a folder")
    vs, us = np.nonzero(obs.segmentation == task.target.body_id)
    pick = np.linspace(0, len(us) - 1, 8).round().astype(int)
    no_depth = np.argwhere(~np.isfinite(obs.depth_m))
    return {
        "root": root, "instruction": task.instruction, "T_world_cam": T,
        "points": ";".join(f"{us[i]},{vs[i]}" for i in pick),
        "no_depth_point": f"{no_depth[0][1]},{no_depth[0][0]}" if len(no_depth) else None,
    }


@pytest.fixture(scope="module")
def random_base(tmp_path_factory) -> Path:
    import torch

    from molmomotion_ros.forecasting.checkpoint import save_checkpoint
    from molmomotion_ros.forecasting.models import ForecasterConfig, ForecasterModel

    torch.manual_seed(0)
    return save_checkpoint(ForecasterModel(ForecasterConfig(head="base")),
                           tmp_path_factory.mktemp("ckpt") / "random-base.pt")


def _inputs(frame: dict, depth: str = "depth.png") -> list[str]:
    root = frame["root"]
    return ["--rgb", str(root / "rgb.png"), "--depth", str(root / depth), "--camera", str(root / "camera.yaml"),
            INSTRUCTION_FLAG, frame["instruction"]]


@pytest.mark.parametrize("command", ["forecast", "train", "eval-forecast"])
def test_every_flag_has_help(command):
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for action in commands.choices[command]._actions:
        assert action.help, f"{command} {action.option_strings} has no help text"


def test_forecast_with_points_writes_json_and_overlay(frame, tmp_path):
    out = tmp_path / "results" / "stack"
    result = run_cli("forecast", *_inputs(frame), "--points", frame["points"], "--model", "stationary",
                     "--samples", "3", "--horizon", "10", "--out", str(out))
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["backend"] == "stationary" and doc["instruction"] == frame["instruction"]
    cam, world = np.array(doc["points_cam_m"]), np.array(doc["points_world_m"])
    assert cam.shape == world.shape == (3, 8, 10, 3)
    assert len(doc["timestamps_s"]) == 10 and len(doc["scores"]) == 3
    query = doc["query_points"]
    assert query["source"] == "user"
    expected_2d = [[float(c) for c in p.split(",")] for p in frame["points"].split(";")]
    np.testing.assert_allclose(query["points_2d"], expected_2d)
    np.testing.assert_allclose(cam[0, :, 0], query["points_cam_m"], atol=1e-5)  # stationary: stays at t0
    T = frame["T_world_cam"]
    np.testing.assert_allclose(world, cam @ T[:3, :3].T + T[:3, 3], atol=1e-4)
    np.testing.assert_allclose(np.array(doc["camera"]["T_world_cam"]), T, atol=1e-9)
    with Image.open(out.with_suffix(".png")) as png:
        assert png.size[0] > 300 and png.size[1] > 200
    assert str(out.with_suffix(".json")) in result.stdout


def test_forecast_is_what_the_node_pipeline_forecasts(frame, tmp_path):
    """The command runs ForecastPipeline (the forecaster node's), not a copy of it that could drift."""
    from molmomotion_ros.camera import PinholeCamera
    from molmomotion_ros.forecasting.pipeline import ForecastPipeline

    out = tmp_path / "fm"
    result = run_cli("forecast", *_inputs(frame), "--points", frame["points"], "--model", "fm", "--samples", "2",
                     "--horizon", "4", "--device", "cpu", "--out", str(out))
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.with_suffix(".json").read_text())

    root = frame["root"]
    rgb = np.array(Image.open(root / "rgb.png").convert("RGB"))
    depth_m = np.array(Image.open(root / "depth.png"), dtype=np.float32) / 1000.0
    points = [[float(c) for c in p.split(",")] for p in frame["points"].split(";")]
    pipeline = ForecastPipeline(backend="fm", device="cpu", num_samples=2, horizon=4)
    expected = pipeline.run(rgb, depth_m, PinholeCamera.from_yaml(root / "camera.yaml"), frame["instruction"],
                            points_2d=points).forecast
    np.testing.assert_allclose(doc["points_world_m"], expected.points_world_m, atol=2e-6)  # the JSON rounds to µm
    np.testing.assert_allclose(doc["scores"], expected.scores, atol=2e-6)


@pytest.mark.parametrize("method", ["encoder", "open3d"])
def test_forecast_chooses_points_by_grounding(frame, random_base, tmp_path, method):
    out = tmp_path / "forecast"
    result = run_cli("forecast", *_inputs(frame, "depth.npy"), "--model", "constant-velocity", "--grounding", method,
                     "--grounding-checkpoint", str(random_base), "--samples", "1", "--out", str(out), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["query_points"]["source"] == method
    assert np.array(doc["query_points"]["points_2d"]).shape == (8, 2)
    assert np.array(doc["points_cam_m"]).shape == (1, 8, 32, 3)
    assert out.with_suffix(".png").is_file()
    assert error_lines(result.stderr) == [], result.stderr  # no progress bars or warnings


def _bad_forecasts(frame: dict, random_base: Path) -> dict[str, list[str]]:
    root = frame["root"]
    good = _inputs(frame)
    points = ["--points", frame["points"], "--model", "stationary"]

    def swap(flag: str, value: str) -> list[str]:
        args = list(good)
        args[args.index(flag) + 1] = value
        return args

    cases = {
        "missing rgb": swap("--rgb", str(root / "absent.png")) + points,
        "missing depth": swap("--depth", str(root / "absent.png")) + points,
        "rgb not an image": swap("--rgb", str(root / "camera.yaml")) + points,
        "rgb size differs from camera": swap("--rgb", str(root / "small.png")) + points,
        "depth size differs from rgb": swap("--depth", str(root / "depth-small.npy")) + points,
        "8-bit depth png": swap("--depth", str(root / "depth8.png")) + points,
        "integer npy depth": swap("--depth", str(root / "depth-int.npy")) + points,
        "camera lacks fields": swap("--camera", str(root / "camera-bad.yaml")) + points,
        "missing camera": swap("--camera", str(root / "absent.yaml")) + points,
        "points missing v": good + ["--points", "10,20;30", "--model", "stationary"],
        "points not numbers": good + ["--points", "a,b", "--model", "stationary"],
        "points empty": good + ["--points", ";", "--model", "stationary"],
        "point outside image": good + ["--points", "10,20;500,20", "--model", "stationary"],
        "empty instruction": swap(INSTRUCTION_FLAG, "  ") + points,
        "instruction not text": swap(INSTRUCTION_FLAG, "12 34 !!") + points,
        "zero samples": good + points + ["--samples", "0"],
        "horizon too long": good + points + ["--horizon", "1000"],
        "unknown model": good + ["--points", frame["points"], "--model", "telepath"],
        "missing fm checkpoint": good + ["--points", frame["points"], "--model", "fm", "--checkpoint",
                                         str(root / "absent.pt")],
        "checkpoint for a baseline": good + points + ["--checkpoint", str(random_base)],
        "not a checkpoint": good + ["--points", frame["points"], "--model", "ar", "--checkpoint",
                                    str(root / "rgb.png")],
        "wrong head in checkpoint": good + ["--points", frame["points"], "--model", "fm", "--checkpoint",
                                            str(random_base), "--device", "cpu"],
        "missing grounding checkpoint": good + ["--model", "stationary", "--grounding-checkpoint",
                                                str(root / "absent.pt")],
        "unknown grounding": good + ["--model", "stationary", "--grounding", "magic"],
        "out inside a file": good + points + ["--out", str(root / "a-file" / "forecast")],
    }
    if frame["no_depth_point"]:
        cases["point without depth"] = good + ["--points", frame["no_depth_point"], "--model", "stationary"]
    return cases


BAD_FORECASTS = [
    "missing rgb", "missing depth", "rgb not an image", "rgb size differs from camera", "depth size differs from rgb",
    "8-bit depth png", "integer npy depth", "camera lacks fields", "missing camera", "points missing v",
    "points not numbers", "points empty", "point outside image", "empty instruction", "instruction not text",
    "zero samples", "horizon too long", "unknown model", "missing fm checkpoint", "checkpoint for a baseline",
    "not a checkpoint", "wrong head in checkpoint", "missing grounding checkpoint", "unknown grounding",
    "out inside a file", "point without depth",
]


@pytest.mark.parametrize("case", BAD_FORECASTS)
def test_bad_forecast_input_is_one_line_and_exit_status_2(frame, random_base, tmp_path, case):
    cases = _bad_forecasts(frame, random_base)
    if case not in cases:
        pytest.skip("the rendered frame has no pixel without depth")
    out = tmp_path / "out" / "forecast"
    args = cases[case] if "--out" in cases[case] else [*cases[case], "--out", str(out)]
    result = run_cli("forecast", *args)
    lines = error_lines(result.stderr)
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("molmomotion: error:")
    assert "Traceback" not in result.stderr
    assert not out.with_suffix(".json").exists() and not out.with_suffix(".png").exists()


def test_bad_training_input_is_one_line_and_exit_status_2(tmp_path):
    (tmp_path / "empty").mkdir()
    out = str(tmp_path / "ckpt" / "model.pt")
    cases = [
        ["--model", "base", "--data", str(tmp_path / "empty"), "--steps", "0", "--out", out],
        ["--model", "base", "--data", str(tmp_path / "empty"), "--steps", "-5", "--out", out],
        ["--model", "transformer", "--data", str(tmp_path / "empty"), "--steps", "10", "--out", out],
        ["--model", "fm", "--data", str(tmp_path / "absent"), "--steps", "10", "--out", out],
        ["--model", "fm", "--data", str(tmp_path / "empty"), "--val", str(tmp_path / "absent"), "--steps", "10",
         "--out", out],
        ["--model", "fm", "--data", str(tmp_path / "empty"), "--init", str(tmp_path / "absent.pt"), "--steps", "10",
         "--out", out],
        ["--model", "base", "--data", str(tmp_path / "empty"), "--steps", "10", "--lr", "-1", "--out", out],
        ["--model", "base", "--data", str(tmp_path / "empty"), "--steps", "10", "--out", str(tmp_path)],
        ["--model", "base", "--data", str(tmp_path / "empty"), "--steps", "10", "--out", out],  # no manifest
        ["--data", str(tmp_path / "empty"), "--steps", "10"],
    ]
    for args in cases:
        result = run_cli("train", *args, "--device", "cpu", "--no-progress")
        lines = error_lines(result.stderr)
        assert result.returncode == 2, (args, result.stderr)
        assert len(lines) == 1 and lines[0].startswith("molmomotion: error:"), (args, result.stderr)
        assert not Path(out).exists()


def test_bad_eval_forecast_input_is_one_line_and_exit_status_2(tmp_path):
    (tmp_path / "empty").mkdir()
    cases = [
        ["--split", "exam"],
        ["--data", str(tmp_path / "absent")],
        ["--data", str(tmp_path / "empty"), "--models", "telepath,stationary", "--out", str(tmp_path / "r")],
        ["--data", str(tmp_path / "empty"), "--models", ",", "--out", str(tmp_path / "r")],
        ["--data", str(tmp_path / "empty"), "--episodes", "0"],
        ["--data", str(tmp_path / "empty"), "--models", "stationary", "--out", str(tmp_path / "r")],  # no manifest
        ["--data", str(tmp_path / "empty"), "--phrasings", "absent", "--out", str(tmp_path / "r")],
        ["--data", str(tmp_path / "empty"), "--phrasings", "heldout", "--out", str(tmp_path / "r")],  # no manifest
    ]
    for args in cases:
        result = run_cli("eval-forecast", *args, "--no-progress", cwd=tmp_path)
        lines = error_lines(result.stderr)
        assert result.returncode == 2, (args, result.stderr)
        assert len(lines) == 1 and lines[0].startswith("molmomotion: error:"), (args, result.stderr)


@pytest.mark.slow
def test_eval_forecast_scores_the_baselines_on_a_tiny_dataset(tmp_path):
    data = tmp_path / "data"
    made = run_cli("generate-data", "--split", "test", "--episodes", "1", "--families", "push", "--workers", "1",
                   "--out", str(data), "--no-progress")
    assert made.returncode == 0, made.stderr
    out = tmp_path / "results"
    result = run_cli("eval-forecast", "--data", str(data), "--models", "stationary,constant-velocity", "--samples",
                     "2", "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "stationary" in result.stdout and "constant-velocity" in result.stdout
    assert any(path.suffix == ".json" for path in out.iterdir())
