"""Training: deterministic per seed, resumable to the same weights, checkpoints on the grid, validation curve."""

import json

import pytest
import torch

from molmomotion_policies.model import GoalConditionedPolicy, PolicyConfig
from molmomotion_policies.observation import PolicyError
from molmomotion_policies.train import TrainConfig, lr_factor, train_policy


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


def test_a_finished_run_adds_earlier_checkpoints_by_replaying_it(demos, val_demos, tmp_path):
    straight = _run(demos, val_demos, tmp_path / "straight", (10, 20, 40))
    extended = _run(demos, val_demos, tmp_path / "extended", (20, 40))
    assert list(extended.checkpoints) == [20, 40]
    final_before = (tmp_path / "extended" / "step-000040.pt").stat().st_mtime_ns
    extended = _run(demos, val_demos, tmp_path / "extended", (10, 20, 40))  # 10 is behind the run: replayed
    assert list(extended.checkpoints) == [10, 20, 40]
    a, b = _head(straight.checkpoints[10]), _head(extended.checkpoints[10])
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "extended" / "step-000040.pt").stat().st_mtime_ns == final_before  # untouched
    assert extended.history == straight.history  # the replay leaves the run's own record alone
    # Half-way through a run: the passed step is replayed, then the run goes on from its state.
    _run(demos, val_demos, tmp_path / "half", (20,))
    half = _run(demos, val_demos, tmp_path / "half", (10, 20, 40))
    for step in (10, 40):
        a, b = _head(straight.checkpoints[step]), _head(half.checkpoints[step])
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_refuses_another_config_in_the_same_folder(demos, val_demos, tmp_path):
    _run(demos, val_demos, tmp_path / "run", (10,))
    with pytest.raises(PolicyError, match="another config"):
        _run(demos, val_demos, tmp_path / "run", (10,), seed=1)


def test_step_grid_validation():
    with pytest.raises(PolicyError, match="increasing"):
        TrainConfig(steps=(20, 10))


# --- fine-tuning the post-trunk encoder layers ----------------------------------------------------
def _ft(demos, val_demos, out, steps, seed=0, variant="A"):
    return train_policy(PolicyConfig.for_variant(variant, finetune="post_trunk"), demos, val_demos, out,
                        TrainConfig(steps=steps, batch_size=4, eval_every=3, seed=seed), progress=False,
                        encoding_cache=out.parent / "enc")


def _weights(path):
    return GoalConditionedPolicy.from_checkpoint(path)[0].state_dict()


def test_fine_tuning_trains_post_trunk_layers_not_the_trunk(demos, val_demos, tmp_path):
    from molmomotion_policies.model import TRUNK, build_encoder

    run = _ft(demos, val_demos, tmp_path / "a", (6,))
    tuned = GoalConditionedPolicy.from_checkpoint(run.checkpoints[6])[0]
    assert tuned.cfg.finetune == "post_trunk"
    start = build_encoder("fm").state_dict()
    after = tuned.encoder.state_dict()
    trunk = [k for k in start if k.split(".")[0] in TRUNK]
    post = [k for k in start if k.split(".")[0] not in TRUNK]
    assert trunk and all(torch.equal(start[k], after[k]) for k in trunk)
    changed = {k.split(".")[0] for k in post if not torch.equal(start[k], after[k])}
    assert {"to_tokens", "text_proj", "fusion", "up", "grounding", "pool"} <= changed
    # A and B share the trunk, so they share one trunk cache.
    _ft(demos, val_demos, tmp_path / "b", (3,), variant="B")
    assert len({p.name.rsplit("-", 1)[0] for p in (tmp_path / "enc").glob("trunk-*.npy")}) == 2  # train, val


def test_fine_tuning_is_deterministic_and_resumable(demos, val_demos, tmp_path):
    straight = _ft(demos, val_demos, tmp_path / "straight", (3, 6))
    again = _ft(demos, val_demos, tmp_path / "again", (3, 6))
    _ft(demos, val_demos, tmp_path / "resumed", (3,))
    resumed = _ft(demos, val_demos, tmp_path / "resumed", (3, 6))  # encoder and optimiser from state.pt
    a, b, c = (_weights(r.checkpoints[6]) for r in (straight, again, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(a[k], c[k]) for k in a)
    assert resumed.history == straight.history and [h["step"] for h in resumed.history] == [3, 6]
    with pytest.raises(PolicyError, match="another config"):  # a frozen run cannot resume a fine-tuned one
        _run(demos, val_demos, tmp_path / "straight", (6,))


def test_cosine_schedule_decays_to_zero_and_enters_the_run_identity(demos, val_demos, tmp_path):
    assert [lr_factor("cosine", s, 100) for s in (0, 50, 100)] == pytest.approx([1.0, 0.5, 0.0])
    assert lr_factor("constant", 70, 100) == 1.0
    with pytest.raises(PolicyError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")
    with pytest.raises(PolicyError, match="state noise"):
        TrainConfig(state_noise_m=float("nan"))
    constant = _run(demos, val_demos, tmp_path / "constant", (10,))
    identity = json.loads((constant.out_dir / "run_config.json").read_text())
    # Options at their defaults stay out of a run's identity, so runs made before they existed still resume.
    assert "lr_schedule" not in identity["train"] and "geometry_skip" not in identity["policy"]
    cosine = train_policy(PolicyConfig.for_variant("A", geometry_skip=True), demos, val_demos, tmp_path / "cosine",
                          TrainConfig(steps=(10, 20), batch_size=8, eval_every=10, lr_schedule="cosine"),
                          progress=False, encoding_cache=tmp_path / "enc")
    identity = json.loads((cosine.out_dir / "run_config.json").read_text())
    assert identity["train"]["lr_schedule"] == "cosine" and identity["train"]["schedule_steps"] == 20
    assert identity["policy"]["geometry_skip"] is True
    assert GoalConditionedPolicy.from_checkpoint(cosine.checkpoints[20])[0].cfg.geometry_skip


def test_a_layout_1_encoding_cache_is_upgraded_to_the_footprint_layout(demos, tmp_path):
    import numpy as np

    from molmomotion_policies.model import FEATURE_DIM, FOOTPRINT_DIM
    from molmomotion_policies.train import cached_encoding, encode_demos

    model = GoalConditionedPolicy(PolicyConfig.for_variant("A", footprint=True))
    fresh = encode_demos(model, demos, progress=False)
    assert np.abs(fresh[:, FEATURE_DIM:FEATURE_DIM + FOOTPRINT_DIM]).sum() > 0  # the targets have footprints
    layout_1 = np.concatenate([fresh[:, :FEATURE_DIM], fresh[:, FEATURE_DIM + FOOTPRINT_DIM:]], 1)
    np.save(tmp_path / f"enc-{demos.config['key']}-fm.npy", layout_1)
    upgraded = cached_encoding(model, demos, tmp_path, progress=False)
    assert upgraded.shape == fresh.shape
    assert np.allclose(upgraded, fresh, atol=1e-5)
    assert (tmp_path / f"enc-{demos.config['key']}-fm-l2.npy").is_file()


def test_state_noise_keeps_the_demonstrated_set_points_and_resumes_exactly(demos, val_demos, tmp_path):
    import numpy as np

    from molmomotion_policies.observation import POSITION_SCALE_M
    from molmomotion_policies.train import perturb_state, to_tensors

    batch = to_tensors(demos, np.zeros((len(demos), 4), np.float32)).rows(torch.arange(20))
    moved = perturb_state(batch, 0.015, 0.1, torch.Generator().manual_seed(0))
    shift = (moved.proprio[:, :3] - batch.proprio[:, :3]) * POSITION_SCALE_M
    assert shift.abs().max() > 0.005  # the pose moved...
    # ...and every label still reaches the same set-point: current pose + offset is unchanged.
    assert torch.allclose(shift[:, None] + moved.pos_m, batch.pos_m, atol=1e-6)
    yaw_before = torch.atan2(batch.proprio[:, 3], batch.proprio[:, 4])[:, None] + batch.yaw_rad
    yaw_after = torch.atan2(moved.proprio[:, 3], moved.proprio[:, 4])[:, None] + moved.yaw_rad
    assert torch.allclose(torch.sin(yaw_after), torch.sin(yaw_before), atol=1e-5)
    assert torch.allclose(torch.cos(yaw_after), torch.cos(yaw_before), atol=1e-5)

    def noisy(out, steps):
        return train_policy(PolicyConfig.for_variant("A"), demos, val_demos, out,
                            TrainConfig(steps=steps, batch_size=8, eval_every=10, state_noise_m=0.015,
                                        state_noise_rad=0.1), progress=False, encoding_cache=tmp_path / "enc")

    straight = noisy(tmp_path / "straight", (10, 20))
    noisy(tmp_path / "resumed", (10,))
    resumed = noisy(tmp_path / "resumed", (10, 20))
    plain = _run(demos, val_demos, tmp_path / "plain", (10, 20))
    a, b, c = (_head(r.checkpoints[20]) for r in (straight, resumed, plain))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    identity = json.loads((straight.out_dir / "run_config.json").read_text())
    assert identity["train"]["state_noise_m"] == 0.015 and "schedule_steps" not in identity["train"]
