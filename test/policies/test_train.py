"""Training: deterministic per seed, resumable to the same weights, checkpoints on the grid, validation curve."""

import json

import pytest
import torch

from molmomotion_policies.model import GoalConditionedPolicy, PolicyConfig
from molmomotion_policies.observation import PolicyError
from molmomotion_policies.train import TrainConfig, train_policy


def _run(demos, val_demos, out, steps, seed=0, variant="A"):
    return train_policy(PolicyConfig.for_variant(variant), demos, val_demos, out,
                        TrainConfig(steps=steps, batch_size=8, eval_every=10, seed=seed), progress=False,
                        encoding_cache=out.parent / "enc")


def _head(path):
    return GoalConditionedPolicy.from_checkpoint(path)[0].head.state_dict()


def test_deterministic_and_resumable(demos, val_demos, tmp_path):
    straight = _run(demos, val_demos, tmp_path / "straight", (20, 40))
    again = _run(demos, val_demos, tmp_path / "again", (20, 40))
    first_half = _run(demos, val_demos, tmp_path / "resumed", (20,))
    assert list(first_half.checkpoints) == [20]
    resumed = _run(demos, val_demos, tmp_path / "resumed", (20, 40))  # continues from state.pt at step 20
    other_seed = _run(demos, val_demos, tmp_path / "seed1", (20, 40), seed=1)
    a, b, c, d = (_head(r.checkpoints[40]) for r in (straight, again, resumed, other_seed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(a[k], c[k]) for k in a)
    assert not all(torch.equal(a[k], d[k]) for k in a)
    assert [h["step"] for h in resumed.history] == [10, 20, 30, 40]
    assert resumed.history == straight.history
    history = json.loads((tmp_path / "resumed" / "history.json").read_text())
    assert all(h["val_pos_err_cm"] > 0 and 0 <= h["val_gripper_acc"] <= 1 for h in history)


def test_refuses_another_config_in_the_same_folder(demos, val_demos, tmp_path):
    _run(demos, val_demos, tmp_path / "run", (10,))
    with pytest.raises(PolicyError, match="another config"):
        _run(demos, val_demos, tmp_path / "run", (10,), seed=1)


def test_step_grid_validation():
    with pytest.raises(PolicyError, match="increasing"):
        TrainConfig(steps=(20, 10))
