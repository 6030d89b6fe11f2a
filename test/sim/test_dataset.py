"""The motion dataset: query points, trajectories, shards, the loader and refusals (real PyBullet)."""

import json

import numpy as np
import pytest
import torch

from molmomotion_ros.geometry import points_along_poses, quat_to_matrix
from molmomotion_ros.motion_data import (
    SCHEMA_VERSION,
    DatasetError,
    MotionDataset,
    load_manifest,
    read_shard,
    write_shard,
)
from molmomotion_sim.dataset import generate_dataset
from molmomotion_sim.recording import MOTION_TOL_M, motion_end_index, sample_query_pixels
from molmomotion_sim.tasks import TASKS

FAMILIES = sorted(TASKS)
HISTORY, HORIZON, POINTS = 2, 12, 8


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """One episode per family, in-process (workers=1); the manifest and the directory."""
    root = tmp_path_factory.mktemp("motion") / "train"
    manifest = generate_dataset("train", 1, root, history=HISTORY, horizon=HORIZON, workers=1, progress=False)
    return manifest, root


@pytest.fixture(scope="module")
def episodes(generated):
    return [MotionDataset(generated[1], only_success=False).episode(i) for i in range(len(FAMILIES))]


# --- query points -------------------------------------------------------------------------------
def test_query_pixels_lie_inside_the_mask_away_from_its_edge_and_spread():
    mask = np.zeros((60, 80), bool)
    mask[10:40, 20:60] = True
    depth = np.ones(mask.shape, np.float32)
    uv = sample_query_pixels(mask, depth, 8, np.random.default_rng(0))
    assert uv.shape == (8, 2)
    u, v = uv.T
    assert np.all((u >= 21) & (u <= 58) & (v >= 11) & (v <= 38))  # eroded: not on the mask's border
    assert len(np.unique(uv, axis=0)) == 8
    pairwise = np.linalg.norm(uv[:, None] - uv[None], axis=-1)[np.triu_indices(8, 1)]
    assert pairwise.min() >= 8  # farthest-point sampling spreads them over the 38x28 interior
    np.testing.assert_array_equal(uv, sample_query_pixels(mask, depth, 8, np.random.default_rng(0)))


def test_query_pixels_skip_missing_depth_and_repeat_on_tiny_masks():
    mask = np.zeros((20, 20), bool)
    mask[5:8, 5:8] = True
    depth = np.ones(mask.shape, np.float32)
    depth[5, 5] = np.nan
    uv = sample_query_pixels(mask, depth, 8, np.random.default_rng(1))
    assert mask[uv[:, 1], uv[:, 0]].all() and np.isfinite(depth[uv[:, 1], uv[:, 0]]).all()
    assert len(np.unique(uv, axis=0)) == 8  # 8 valid pixels, too few to erode: all of them
    with pytest.raises(DatasetError):
        sample_query_pixels(np.zeros((4, 4), bool), np.ones((4, 4)), 8, np.random.default_rng(0))


def test_generated_query_points_lie_on_the_target(episodes):
    for ep in episodes:
        u, v = ep["points_uv"].astype(int).T
        assert ep["points_uv"].shape == (POINTS, 2)
        assert ep["target_mask"][v, u].all()
        assert (ep["segmentation"][v, u] == ep["target_body_id"]).all()
        # Deprojected depth lands on the target's box (depth is rendered: allow a few mm).
        offset = np.abs(ep["points_local_m"] - ep["target_local_center_m"]) - ep["target_half_extents_m"]
        assert offset.max() < 0.006, ep["meta"]["target"]


def test_camera_frame_and_pixels_agree(episodes):
    for ep in episodes:
        K, T_world_cam = ep["K"], ep["T_world_cam"]
        cam = ep["points_cam_m"].astype(float)
        uv = (cam @ K.T)[:, :2] / cam[:, 2:]
        np.testing.assert_allclose(uv, ep["points_uv"], atol=1e-3)
        world = cam @ T_world_cam[:3, :3].T + T_world_cam[:3, 3]
        np.testing.assert_allclose(world, ep["points_world_m"], atol=1e-5)


# --- trajectories -------------------------------------------------------------------------------
def test_futures_start_at_the_query_points_and_follow_the_object(episodes):
    for ep in episodes:
        # Index 0 is t0 = trace sample 0: the object's pose then × the local offsets = the query points.
        at_t0 = points_along_poses(ep["target_pose"][:1].astype(float), ep["points_local_m"])[:, 0]
        np.testing.assert_allclose(at_t0, ep["points_world_m"], atol=1e-3)
        np.testing.assert_allclose(ep["future_dense_world_m"][:, 0], ep["points_world_m"], atol=1e-3)
        np.testing.assert_allclose(ep["future_dense_cam_m"][:, 0], ep["points_cam_m"], atol=1e-3)
        np.testing.assert_allclose(ep["future_strided_world_m"][:, 0], ep["points_world_m"], atol=1e-3)
        assert ep["trace_time_s"][0] == 0.0
        np.testing.assert_allclose(np.diff(ep["trace_time_s"]), 1 / 15, atol=1e-5)
        # Dense step k is trace sample k (15 fps); strided step k is sample k * stride.
        track = points_along_poses(ep["target_pose"].astype(float), ep["points_local_m"])  # (P, T, 3)
        T, stride = len(ep["trace_time_s"]), int(ep["future_stride"])
        k = min(HORIZON, T - 1)
        np.testing.assert_allclose(ep["future_dense_world_m"][:, k], track[:, k], atol=1e-5)
        assert ep["future_dense_valid"][: k + 1].all()
        # The strided future covers the whole motion: its last valid step is where the object rests.
        end = int(ep["motion_end_index"])
        assert HORIZON * stride >= end and (stride == 1 or HORIZON * (stride - 1) < end)
        last = ep["future_strided_world_m"][:, -1]
        assert np.linalg.norm(last - track[:, -1], axis=-1).max() <= MOTION_TOL_M + 1e-6


def test_successful_episodes_carry_the_target_to_its_goal(episodes):
    successes = [ep for ep in episodes if ep["meta"]["success"]]
    assert successes
    for ep in successes:
        moved = np.linalg.norm(ep["future_strided_world_m"][:, -1] - ep["points_world_m"], axis=-1).mean()
        assert moved > 0.03, ep["meta"]["instruction"]
        assert ep["meta"]["actions"] and len(ep["meta"]["actions"]) == ep["meta"]["steps"]
        pose = ep["target_pose"][-1].astype(float)
        center = pose[:3] + quat_to_matrix(pose[3:]) @ ep["target_local_center_m"]
        assert np.linalg.norm(center - ep["goal_center_world_m"]) < 0.08  # the families' success tolerances


def test_motion_end_and_rotations():
    track = np.zeros((2, 10, 3))
    track[:, 3:6, 0] = [[0.01, 0.02, 0.0305]] * 2  # moves until sample 5, then settles 0.5 mm from the end
    track[:, 6:, 0] = 0.03
    assert motion_end_index(track) == 5
    assert motion_end_index(np.zeros((2, 4, 3))) == 0
    quarter_turn_z = np.array([0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)])
    np.testing.assert_allclose(quat_to_matrix(quarter_turn_z) @ [1, 0, 0], [0, 1, 0], atol=1e-12)


# --- shards, manifest, loader -------------------------------------------------------------------
def _synthetic_record(seed: int, trace_length: int, others: int) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {
        "rgb": rng.integers(0, 255, (1, 4, 5, 3), dtype=np.uint8),
        "depth_m": rng.random((1, 4, 5), dtype=np.float32),
        "trace_length": np.int32(trace_length),
        "ee_pose": rng.random((trace_length, 7)).astype(np.float32),
        "gripper_closed_cmd": rng.random(trace_length) > 0.5,
        "other_body_ids": np.arange(others, dtype=np.int32),
        "other_poses_t0": rng.random((others, 7)).astype(np.float32),
        "success": np.bool_(seed % 2 == 0),
    }
    return {"arrays": arrays, "meta": {"family": "stack", "seed": seed, "success": seed % 2 == 0}}


def test_shard_round_trip_pads_ragged_arrays(tmp_path):
    records = [_synthetic_record(0, 5, 2), _synthetic_record(1, 3, 0)]
    info = write_shard(tmp_path, 7, records)
    assert info["npz"] == "shard-00007.npz" and info["episodes"] == 2
    arrays, meta = read_shard(tmp_path, info["npz"])
    assert [m["seed"] for m in meta] == [0, 1]
    np.testing.assert_array_equal(arrays["rgb"][1], records[1]["arrays"]["rgb"])
    np.testing.assert_array_equal(arrays["ee_pose"][0], records[0]["arrays"]["ee_pose"])
    np.testing.assert_array_equal(arrays["ee_pose"][1, :3], records[1]["arrays"]["ee_pose"])
    np.testing.assert_array_equal(arrays["ee_pose"][1, 3:], records[1]["arrays"]["ee_pose"][[-1, -1]])  # held
    assert arrays["ee_pose"].shape == (2, 5, 7) and arrays["gripper_closed_cmd"].dtype == bool
    np.testing.assert_array_equal(arrays["num_others"], [2, 0])
    assert (arrays["other_body_ids"][1] == -1).all() and np.isnan(arrays["other_poses_t0"][1]).all()


def test_generated_shards_round_trip(generated, episodes):
    manifest, root = generated
    arrays, meta = read_shard(root, manifest["shards"][0]["npz"])
    assert [m["family"] for m in meta] == FAMILIES  # sorted by (family, seed)
    for row, ep in enumerate(episodes):
        np.testing.assert_array_equal(arrays["points_uv"][row], ep["points_uv"])
        np.testing.assert_array_equal(arrays["rgb"][row], ep["rgb"])
        T = int(ep["trace_length"])
        np.testing.assert_array_equal(arrays["joint_positions_rad"][row, :T], ep["joint_positions_rad"])


def test_manifest(generated):
    manifest, root = generated
    assert load_manifest(root) == json.loads((root / "manifest.json").read_text()) == manifest
    assert manifest["schema_version"] == SCHEMA_VERSION and manifest["split"] == "train"
    assert manifest["episodes"] == len(FAMILIES) and not manifest["skipped"]
    assert manifest["counts"] == {f: {"episodes": 1, "successes": manifest["counts"][f]["successes"]} for f in FAMILIES}
    assert manifest["seeds"] == {f: [0] for f in FAMILIES}
    assert manifest["config"]["history"] == HISTORY and manifest["config"]["horizon"] == HORIZON
    assert manifest["config"]["image_size"] == [manifest["config"]["camera"]["width"],
                                                manifest["config"]["camera"]["height"]]
    assert len(manifest["config_hash"]) == 64 and manifest["episodes_per_s"] > 0


@pytest.mark.parametrize("future", ["dense", "strided"])
def test_loader_yields_tensors_in_the_documented_layout(generated, future):
    data = MotionDataset(generated[1], future=future, only_success=False)
    assert len(data) == len(FAMILIES)
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=2)))  # a map-style dataset to torch
    assert batch["points_2d"].shape == (2, POINTS, 2)
    item = data[0]
    h, w = data.config["camera"]["height"], data.config["camera"]["width"]
    shapes = {
        "rgb": (HISTORY, 3, h, w), "depth": (HISTORY, h, w), "target_mask": (h, w), "points_2d": (POINTS, 2),
        "points_3d_cam": (POINTS, 3), "points_3d_history_cam": (HISTORY, POINTS, 3),
        "future_cam": (POINTS, HORIZON, 3), "future_world": (POINTS, HORIZON, 3), "future_valid": (HORIZON,),
        "future_time_s": (HORIZON,), "K": (3, 3), "T_world_cam": (4, 4), "goal_center_cam": (3,), "stride": (),
    }
    for key, shape in shapes.items():
        assert tuple(item[key].shape) == shape, key
    assert item["rgb"].dtype == torch.uint8 and item["depth"].dtype == torch.float32
    assert item["future_cam"].dtype == torch.float32 and item["future_valid"].dtype == torch.bool
    assert isinstance(item["instruction"], str) and item["family"] == FAMILIES[0]
    # The future's first step is one stride after t0; frames agree with the camera at t0.
    T_cam_world = torch.linalg.inv(item["T_world_cam"].double())
    as_cam = item["future_world"].double() @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]
    torch.testing.assert_close(as_cam.float(), item["future_cam"], atol=1e-4, rtol=0)
    torch.testing.assert_close(item["future_time_s"][0], item["stride"].float() / 15)
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=2)))
    assert tuple(batch["future_cam"].shape) == (2, POINTS, HORIZON, 3) and len(batch["instruction"]) == 2


def test_loader_filters_failures(generated):
    manifest, root = generated
    assert len(MotionDataset(root)) == manifest["successes"]


# --- determinism --------------------------------------------------------------------------------
def test_same_seeds_give_identical_arrays_whatever_the_worker_count(generated, tmp_path):
    manifest, root = generated
    again = generate_dataset("train", 1, tmp_path / "again", history=HISTORY, horizon=HORIZON, workers=2,
                             progress=False)
    assert again["config_hash"] == manifest["config_hash"]
    a, meta_a = read_shard(root, "shard-00000.npz")
    b, meta_b = read_shard(tmp_path / "again", "shard-00000.npz")
    assert a.keys() == b.keys() and meta_a == meta_b
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_rollout_frames_do_not_perturb_the_rollout(generated, tmp_path):
    manifest, root = generated
    generate_dataset("train", 1, tmp_path, families=["push"], history=HISTORY, horizon=HORIZON, workers=1,
                     progress=False, frames_every=10)
    framed = MotionDataset(tmp_path, only_success=False).episode(0)
    plain = MotionDataset(root, only_success=False).episode(FAMILIES.index("push"))
    np.testing.assert_array_equal(framed["target_pose"], plain["target_pose"])
    T = int(framed["trace_length"])
    np.testing.assert_array_equal(framed["frames_trace_index"], np.arange(0, T, 10))
    np.testing.assert_array_equal(framed["frames_rgb"][0], plain["rgb"][-1])  # frame 0 is t0
    assert framed["frames_depth_m"].shape[1:] == plain["depth_m"].shape[1:]


def test_regenerating_in_place_replaces_the_old_dataset(tmp_path):
    args = {"split": "train", "out_dir": tmp_path, "families": ["push"], "horizon": 4, "workers": 1,
            "progress": False, "episodes_per_shard": 1}
    generate_dataset(episodes_per_family=2, **args)
    assert sorted(p.name for p in tmp_path.glob("shard-*.npz")) == ["shard-00000.npz", "shard-00001.npz"]
    manifest = generate_dataset(episodes_per_family=1, **args)  # same config: allowed, stale shard removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "shard-00000.json", "shard-00000.npz"]
    assert manifest["seeds"] == {"push": [0]} and len(MotionDataset(tmp_path, only_success=False)) == 1


# --- refusals -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    ({"split": "training"}, "unknown split"),
    ({"history": 0}, "history"),
    ({"history": 4}, "history"),
    ({"horizon": 0}, "horizon"),
    ({"points_per_episode": 0}, "points_per_episode"),
    ({"families": ["juggle"]}, "unknown task families"),
    ({"episodes_per_family": 0}, "positive"),
    ({"workers": 0}, "workers"),
    ({"options": {"colour": ("red",)}}, "unknown task options"),
])
def test_bad_arguments_raise_dataset_error(tmp_path, kwargs, match):
    args = {"split": "train", "episodes_per_family": 1, "out_dir": tmp_path / "out", "progress": False, **kwargs}
    with pytest.raises(DatasetError, match=match):
        generate_dataset(**args)
    assert not (tmp_path / "out").exists()


def test_unwritable_or_foreign_output_directories_are_refused(tmp_path, generated):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DatasetError, match="cannot write"):
        generate_dataset("train", 1, blocker / "sub", progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="no manifest.json"):
        generate_dataset("train", 1, foreign, progress=False)
    # A dataset of another config (here: another horizon) is not mixed with a new one.
    with pytest.raises(DatasetError, match="another config"):
        generate_dataset("train", 1, generated[1], horizon=HORIZON + 1, history=HISTORY, progress=False)
    assert load_manifest(generated[1])["config"]["horizon"] == HORIZON


def test_loading_a_missing_or_incompatible_dataset_fails_clearly(tmp_path, generated):
    with pytest.raises(DatasetError, match="no manifest.json"):
        load_manifest(tmp_path)
    manifest = dict(generated[0], schema_version=SCHEMA_VERSION + 1)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="schema version"):
        MotionDataset(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(generated[0]))
    with pytest.raises(DatasetError, match="lacks"):
        load_manifest(tmp_path)
    with pytest.raises(DatasetError, match="future"):
        MotionDataset(generated[1], future="sparse")
