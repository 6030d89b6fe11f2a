"""Demonstrations: real oracle episodes with frames, proprioception and action-chunk labels."""

import numpy as np
import pytest

from molmomotion_policies.demos import DemoConfig, Demos, record_demos
from molmomotion_policies.observation import CHUNK_STEPS, FORECAST_POINTS, FORECAST_STEPS, PolicyError
from molmomotion_sim.seeds import split_of


def test_shapes_and_dtypes(demos, demo_families):
    m, e = len(demos), demos.num_episodes
    assert e == len(demo_families) and m > 10
    assert demos.rgb.shape == (m, 3, 60, 80) and demos.rgb.dtype == np.uint8
    assert demos.xyz_cam_m.shape == (m, 3, 60, 80) and demos.xyz_cam_m.dtype == np.float16
    assert demos.action_pos_m.shape == (m, CHUNK_STEPS, 3)
    assert demos.action_yaw_rad.shape == demos.action_gripper_closed.shape == (m, CHUNK_STEPS)
    assert demos.forecast_world_m.shape == (e, FORECAST_POINTS, FORECAST_STEPS, 3)
    assert demos.forecast_valid.all() and demos.success.all()
    assert [demos.families[f] for f in demos.family] == list(demo_families)
    assert np.isfinite(demos.ee_uv_model).all()
    assert (demos.ee_uv_model >= 0).all() and (demos.ee_uv_model[:, 0] <= 79).all()


def test_seeds_come_from_their_split(demos, val_demos):
    assert {split_of(int(s)) for s in demos.seed} == {"train"}
    assert {split_of(int(s)) for s in val_demos.seed} == {"validation"}


def test_labels_are_the_future_grasp_target_offsets(demos):
    """Frame k+1 is 4 trace samples after frame k: its position minus frame k's is label step 4 of frame k."""
    every = demos.config["frames_every"]
    for k in range(len(demos) - 1):
        if demos.episode[k] != demos.episode[k + 1]:
            continue
        assert demos.trace_index[k + 1] - demos.trace_index[k] == every
        moved = demos.ee_pos_world_m[k + 1] - demos.ee_pos_world_m[k]
        np.testing.assert_allclose(demos.action_pos_m[k, every - 1], moved, atol=1e-6)
    assert demos.action_gripper_closed.any() and not demos.action_gripper_closed.all()


def test_each_episode_starts_at_t0(demos):
    starts = np.flatnonzero(demos.trace_index == 0)
    assert list(demos.episode[starts]) == list(range(demos.num_episodes))


def test_save_load_round_trip(demos, tmp_path):
    path = demos.save(tmp_path / "d.npz")
    loaded = Demos.load(path)
    assert loaded.instructions == demos.instructions and loaded.config == demos.config
    for key, value in demos.__dict__.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(getattr(loaded, key), value)


def test_refusals(tmp_path):
    with pytest.raises(PolicyError, match="train or validation"):
        record_demos(DemoConfig("test", 1), progress=False)
    with pytest.raises(PolicyError, match="unknown families"):
        record_demos(DemoConfig("train", 1, families=("juggle",)), progress=False)
    with pytest.raises(PolicyError, match="no demonstrations"):
        Demos.load(tmp_path / "missing.npz")


def test_forecast_free_config_reuses_the_recording_with_forecasts(demos, demo_families, tmp_path):
    from dataclasses import replace

    from molmomotion_policies.demos import load_or_record

    with_forecast = DemoConfig("train", 1, families=demo_families, frames_every=4, forecast=True)
    assert demos.config["key"] == with_forecast.key()
    demos.save(tmp_path / f"train-1pf-{with_forecast.key()}.npz")
    loaded = load_or_record(replace(with_forecast, forecast=False), tmp_path, progress=False)
    assert loaded.config["key"] == with_forecast.key()  # not re-recorded
    np.testing.assert_array_equal(loaded.action_pos_m, demos.action_pos_m)
