"""A real, short training run on a small generated dataset; checkpoint round trips; determinism."""

import numpy as np
import pytest
import torch

from molmomotion_ros.forecasting.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from molmomotion_ros.forecasting.evaluation import _ground_truth_cam
from molmomotion_ros.forecasting.interface import Forecaster, validate_request
from molmomotion_ros.forecasting.metrics import ade
from molmomotion_ros.forecasting.models import ForecasterConfig, ForecasterModel
from molmomotion_ros.forecasting.predictor import NeuralBackend, shipped_checkpoint
from molmomotion_ros.forecasting.training import TrainingError, train


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    from molmomotion_sim.dataset import generate_dataset

    out = tmp_path_factory.mktemp("motion")
    generate_dataset("train", episodes_per_family=3, out_dir=out, workers=1, progress=False)
    return out


def _requests(root, stride=2, horizon=32):
    from molmomotion_ros.motion_data import MotionDataset

    data = MotionDataset(root)
    for i in range(len(data)):
        ep = data.episode(i)
        request = validate_request(ep["rgb"], ep["depth_m"], ep["K"], ep["T_world_cam"], ep["points_uv"],
                                   ep["points_history_cam_m"], ep["meta"]["instruction"], horizon, 1)
        yield request, _ground_truth_cam(ep, stride, horizon)


@pytest.mark.slow
def test_short_fm_training_lowers_the_loss_and_beats_standing_still(small_dataset, tmp_path):
    out = tmp_path / "fm.pt"
    # From the shipped grounding encoder, as the real forecasters start; 12 episodes, a few hundred steps.
    train("fm", small_dataset, out, steps=300, val_dir=small_dataset, batch_size=8, lr=2e-3, val_every=25,
          init=shipped_checkpoint("base"), progress=False)
    model, meta = load_checkpoint(out)
    history = meta["history"]
    assert history[-1]["val_loss"] < 0.9 * history[0]["val_loss"], history
    forecaster = Forecaster(NeuralBackend(head="fm", checkpoint=out))
    errors, still = [], []
    for request, gt in _requests(small_dataset):
        errors.append(ade(forecaster.predict_request(request).points_cam_m, gt)[0])
        still.append(ade(np.repeat(request.points_cam_m[:, None], 32, 1)[None], gt)[0])
    assert np.mean(errors) < np.mean(still), (np.mean(errors), np.mean(still))


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = ForecasterModel(ForecasterConfig(head="fm")).eval()
    path = save_checkpoint(model, tmp_path / "fm.pt", {"note": "test"})
    loaded, meta = load_checkpoint(path)
    assert meta["note"] == "test" and "code_revision" in meta
    image = torch.randn(2, 7, 60, 80)
    xyz = torch.randn(2, 3, 60, 80)
    tokens, mask = torch.randn(2, 24, 384), torch.ones(2, 24, dtype=torch.bool)
    with torch.no_grad():
        a = model.encoder(image, xyz, tokens, mask)
        b = loaded.encoder(image, xyz, tokens, mask)
        uv, pts = torch.rand(2, 8, 2) * 50, torch.rand(2, 8, 3)
        sa = model.fm.sample(a, uv, pts, 4, 3, torch.Generator().manual_seed(1))
        sb = loaded.fm.sample(b, uv, pts, 4, 3, torch.Generator().manual_seed(1))
    assert torch.equal(a.grounding_logits, b.grounding_logits)
    assert torch.equal(sa, sb)


def test_bad_checkpoints_raise_typed_errors(tmp_path):
    model = ForecasterModel(ForecasterConfig(head="base"))
    good = save_checkpoint(model, tmp_path / "base.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(truncated)
    payload = torch.load(good, weights_only=False)
    payload["schema_version"] = 99
    torch.save(payload, tmp_path / "schema.pt")
    with pytest.raises(CheckpointError, match="schema version 99"):
        load_checkpoint(tmp_path / "schema.pt")
    payload = torch.load(good, weights_only=False)
    payload["config"]["encoder"]["dim"] = 64
    torch.save(payload, tmp_path / "shapes.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(tmp_path / "shapes.pt")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_same_seed_same_samples(tmp_path):
    torch.manual_seed(0)
    path = save_checkpoint(ForecasterModel(ForecasterConfig(head="fm")), tmp_path / "fm.pt")
    rng = np.random.default_rng(0)
    args = dict(history_rgb=rng.integers(0, 255, (1, 120, 160, 3), dtype=np.uint8),
                history_depth=np.full((1, 120, 160), 0.8, np.float32), intrinsics=np.array(
                    [[100.0, 0, 79.5], [0, 100, 59.5], [0, 0, 1]]), extrinsics=np.eye(4),
                points_2d=np.full((8, 2), 60.0), points_3d_history=np.full((1, 8, 3), 0.8),
                instruction="stack the red cube on the blue block", horizon=32, num_samples=4)
    first = Forecaster(NeuralBackend(head="fm", checkpoint=path, seed=3)).predict(**args)
    second = Forecaster(NeuralBackend(head="fm", checkpoint=path, seed=3)).predict(**args)
    other = Forecaster(NeuralBackend(head="fm", checkpoint=path, seed=4)).predict(**args)
    np.testing.assert_array_equal(first.points_cam_m, second.points_cam_m)
    assert not np.array_equal(first.points_cam_m, other.points_cam_m)


def test_bad_training_inputs(tmp_path):
    with pytest.raises(TrainingError, match="unknown model"):
        train("xl", tmp_path, tmp_path / "x.pt", steps=1)
    with pytest.raises(TrainingError, match="positive"):
        train("fm", tmp_path, tmp_path / "x.pt", steps=0)
    with pytest.raises(TrainingError, match="cannot read the dataset"):
        train("base", tmp_path / "nothing", tmp_path / "x.pt", steps=1)
