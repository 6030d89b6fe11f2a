"""``sim-eval --record``: one rosbag2 bag per harness episode (sim/episode_bags.py), read back with the ``mcap``
library's reader and ``mcap_ros2``'s decoder (independent of our writer) and with molmomotion_ros.bags.BagReader."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from molmomotion_ros.bags import BagFolderError, BagReader
from molmomotion_ros.conversions import (
    msg_to_depth_m,
    msg_to_forecast_hypotheses,
    msg_to_forecast_tracks,
    msg_to_ground_truth,
    msg_to_rgb,
    msg_to_scores,
    pose_to_matrix,
)
from molmomotion_sim.actions import GripperCommand, MotionSequence
from molmomotion_sim.episode_bags import BagOptions
from molmomotion_sim.evaluation import EpisodeRunner, evaluate
from molmomotion_sim.suites import load_suite
from molmomotion_sim.tasks import TASKS
from molmomotion_sim.tasks.base import OracleAgent
from molmomotion_sim.world import World

NS = 1_000_000_000
SEED = 110000  # the smoke suite's first push episode
CAMERA = ["/camera/color/image_raw", "/camera/depth/image_raw", "/camera/color/camera_info", "/camera/pose"]
RESET = ["/sim/episode", "/sim/ground_truth", "/camera/pose", "/instruction"]  # in sim_node's order
BAG = f"smoke-push-{SEED}"  # as the graph's per-episode recording names it
FORECAST = ["/forecast/trajectory", "/forecast/hypotheses", "/forecast/scores", "/forecast/goal_pose"]


def push_suite():
    return load_suite("smoke").select(families=["push"], episodes_per_family=1)


def read_decoded(bag: Path) -> dict[str, list[tuple[int, object]]]:
    """topic → [(log time, decoded message)], from the bag's one MCAP file, with the mcap library alone."""
    out: dict[str, list] = {}
    for topic, log_time, decoded in read_in_file_order(bag):
        out.setdefault(topic, []).append((log_time, decoded))
    return out


def read_in_file_order(bag: Path) -> list[tuple[str, int, object]]:
    [path] = sorted(bag.glob("*.mcap"))
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        return [(channel.topic, message.log_time, decoded)
                for _, channel, message, decoded in reader.iter_decoded_messages(log_time_order=False)]


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * NS + msg.header.stamp.nanosec


@pytest.fixture(scope="module")
def oracle_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("oracle")
    [result] = evaluate(push_suite(), "oracle", workers=1, progress=False, record=BagOptions(root, "smoke"))
    return root, result


@pytest.fixture(scope="module")
def planner_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("planner")
    [result] = evaluate(push_suite(), "planner-fm", workers=1, progress=False, record=BagOptions(root, "smoke"))
    return root, result


def test_one_bag_folder_per_episode_named_by_suite_family_seed(oracle_run):
    root, result = oracle_run
    bag = root / BAG
    assert result.bag == str(bag) and [p.name for p in root.iterdir()] == [BAG]
    assert sorted(p.name for p in bag.iterdir()) == ["metadata.yaml", f"{BAG}_0.mcap"]
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["storage_identifier"] == "mcap" and info["relative_file_paths"] == [f"{BAG}_0.mcap"]
    topics = {t["topic_metadata"]["name"]: t for t in info["topics_with_message_count"]}
    image = topics["/camera/color/image_raw"]["topic_metadata"]
    assert image["type"] == "sensor_msgs/msg/Image" and image["type_description_hash"].startswith("RIHS01_")
    assert image["offered_qos_profiles"][0]["reliability"] == "best_effort"
    assert topics["/camera/pose"]["topic_metadata"]["offered_qos_profiles"][0]["durability"] == "transient_local"
    assert info["message_count"] == sum(t["message_count"] for t in topics.values())


def test_recording_does_not_change_the_episode(oracle_run):
    _, recorded = oracle_run
    [plain] = evaluate(push_suite(), "oracle", workers=1, progress=False)
    assert plain.bag is None and "bag" not in plain.to_dict()  # unrecorded results files stay as they were
    assert recorded.to_dict()["bag"] == recorded.bag
    assert (recorded.success, recorded.steps, recorded.sim_time_s, recorded.instruction) == \
        (plain.success, plain.steps, plain.sim_time_s, plain.instruction)


def test_the_oracle_bag_holds_the_sim_graphs_topics_at_their_rates(oracle_run):
    root, result = oracle_run
    messages = read_decoded(Path(result.bag))
    assert set(messages) == set(CAMERA + RESET + ["/tf_static", "/joint_states", "/clock"])  # the oracle: no forecast
    for topic in ["/sim/episode", "/sim/ground_truth", "/instruction", "/tf_static"]:
        assert len(messages[topic]) == 1, topic
    assert [topic for topic, _, _ in read_in_file_order(Path(result.bag))[:4]] == RESET
    [(reset_ns, episode)] = messages["/sim/episode"]
    assert json.loads(episode.data) == {"suite": "smoke", "family": "push", "seed": SEED,
                                        "instruction": result.instruction}
    assert messages["/instruction"][0][1].data == result.instruction
    end_ns = round(result.sim_time_s * NS)
    span_s = (end_ns - reset_ns) / NS
    assert reset_ns > 0 and span_s > 1.0

    colour = messages["/camera/color/image_raw"]
    stamps = [stamp_ns(m) for _, m in colour]
    assert [t for t, _ in colour] == stamps  # log time = header stamp
    assert stamps[0] == reset_ns and stamps[-1] <= end_ns and stamps == sorted(set(stamps))
    assert int(span_s * 15) <= len(stamps) <= int(span_s * 15) + 1 + result.steps
    assert np.median(np.diff(stamps)) == pytest.approx(NS / 15, abs=NS / 240)
    for topic in CAMERA[1:3]:  # depth and camera_info come with every colour frame, same stamps
        assert [stamp_ns(m) for _, m in messages[topic]] == stamps, topic
    assert [stamp_ns(m) for _, m in messages["/camera/pose"]] == [reset_ns, *stamps]  # and at the reset

    _, image = colour[0]
    rgb = msg_to_rgb(image)
    info = messages["/camera/color/camera_info"][0][1]
    assert image.encoding == "rgb8" and rgb.shape == (info.height, info.width, 3) and rgb.std() > 1
    assert image.header.frame_id == info.header.frame_id == "camera_color_optical_frame"
    depth = msg_to_depth_m(messages["/camera/depth/image_raw"][0][1])
    assert messages["/camera/depth/image_raw"][0][1].encoding == "32FC1" and depth.shape == rgb.shape[:2]
    assert 0.2 < np.nanmedian(depth) < 3.0
    pose = messages["/camera/pose"][0][1]
    assert pose.header.frame_id == "world" and pose.pose.position.z > 0.3  # the camera looks down on the table
    [(_, tf)] = messages["/tf_static"]
    assert (tf.transforms[0].header.frame_id, tf.transforms[0].child_frame_id) == ("world", image.header.frame_id)

    joints = messages["/joint_states"]
    assert int(span_s * 100) <= len(joints) <= int(span_s * 100) + 2
    assert len(joints[0][1].name) == 9 and len(joints[0][1].velocity) == 9
    clock = [m.clock.sec * NS + m.clock.nanosec for _, m in messages["/clock"]]
    assert clock == [stamp_ns(m) for _, m in joints] == [t for t, _ in messages["/clock"]]


def test_ground_truth_starts_at_the_targets_pose_at_the_reset(oracle_run):
    _, result = oracle_run
    messages = read_decoded(Path(result.bag))
    [(log_ns, msg)] = messages["/sim/ground_truth"]
    assert log_ns == stamp_ns(msg) == messages["/sim/episode"][0][0] and msg.header.frame_id == "world"
    times, poses = msg_to_ground_truth(msg)
    assert times[0] == 0 and np.allclose(np.diff(times), 1 / 15) and len(times) > 10
    spec = push_suite().episodes()[0]
    with World() as world:  # the same scene, built independently
        task = TASKS["push"](world, spec.options)
        task.reset(SEED)
        position, _ = world.object_pose(task.target)
    assert np.linalg.norm(poses[0, :3] - position) < 1e-3
    assert np.linalg.norm(poses[-1, :3] - poses[0, :3]) > 0.02  # the oracle pushed it


def test_bag_reader_reads_the_same_bag(oracle_run):
    _, result = oracle_run
    decoded = read_decoded(Path(result.bag))
    with BagReader(result.bag) as bag:
        assert not bag.warnings and not bag.truncated_files
        assert {name: t.message_count for name, t in bag.topics.items()} == \
            {name: len(m) for name, m in decoded.items()}
        times = [m.log_time for m in bag.messages(["/camera/color/image_raw"])]
    assert times == [t for t, _ in decoded["/camera/color/image_raw"]]


@pytest.mark.slow  # the FM forecaster loads
def test_the_planner_bag_holds_the_forecast_it_acted_on_at_its_frames_stamp(planner_run):
    _, result = planner_run
    messages = read_decoded(Path(result.bag))
    assert set(FORECAST) <= set(messages)
    [(log_ns, trajectory)] = messages["/forecast/trajectory"]
    forecast_ns = stamp_ns(trajectory)
    assert log_ns == forecast_ns and trajectory.header.frame_id == "world"
    colour_stamps = [stamp_ns(m) for _, m in messages["/camera/color/image_raw"]]
    assert colour_stamps.count(forecast_ns) == 1
    points_t0, tracks, times = msg_to_forecast_tracks(trajectory)
    [(_, hypotheses)] = messages["/forecast/hypotheses"]
    [(_, scores)] = messages["/forecast/scores"]
    assert stamp_ns(hypotheses) == stamp_ns(messages["/forecast/goal_pose"][0][1]) == forecast_ns
    h_t0, h_tracks, h_times = msg_to_forecast_hypotheses(hypotheses)
    assert points_t0.shape == (8, 3) and h_tracks.shape[0] == len(msg_to_scores(scores)) > 1
    assert np.allclose(h_tracks[0], tracks) and np.allclose(h_times, times)
    # The t0 points lie on the depth image of that frame (the forecast starts on the visible target).
    depth = msg_to_depth_m(dict((stamp_ns(m), m) for _, m in messages["/camera/depth/image_raw"])[forecast_ns])
    info = messages["/camera/color/camera_info"][0][1]
    T = pose_to_matrix(messages["/camera/pose"][0][1].pose)
    cam = (points_t0 - T[:3, 3]) @ T[:3, :3]
    K = np.asarray(info.k).reshape(3, 3)
    uv = np.round((cam[:, :2] / cam[:, 2:]) * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]).astype(int)
    assert np.allclose(depth[uv[:, 1], uv[:, 0]], cam[:, 2], atol=0.01)


@pytest.mark.slow  # the FM forecaster loads
def test_rclpy_reads_every_topic_as_the_independent_decoder_does(planner_run):
    """The CDR differs from rclpy's own only in padding bytes (zeros here, whatever Fast CDR leaves there)."""
    serialization = pytest.importorskip("rclpy.serialization")
    import importlib

    _, result = planner_run
    decoded = {topic: msgs[0] for topic, msgs in read_decoded(Path(result.bag)).items()}
    with BagReader(result.bag) as bag:
        firsts = {}
        for message in bag.messages():
            firsts.setdefault(message.topic, message)
        assert set(firsts) == set(decoded)
        for topic, message in firsts.items():
            package, _, name = bag.topics[topic].type.split("/")
            ours = serialization.deserialize_message(message.data, getattr(importlib.import_module(f"{package}.msg"),
                                                                           name))
            theirs = decoded[topic][1]
            if hasattr(theirs, "header"):
                assert stamp_ns(ours) == stamp_ns(theirs) == message.log_time, topic
                assert ours.header.frame_id == theirs.header.frame_id, topic
    image = serialization.deserialize_message(firsts["/camera/color/image_raw"].data,
                                              importlib.import_module("sensor_msgs.msg").Image)
    assert np.array_equal(msg_to_rgb(image), msg_to_rgb(decoded["/camera/color/image_raw"][1]))


class ObservingOracle(OracleAgent):
    """The oracle, keeping every frame it is given; it opens the gripper first (an action of a fraction of a second,
    so the next frame it acts on falls between two scheduled ones), and fails on request."""

    needs_observation = True

    def __init__(self, fail: bool = False):
        super().__init__()
        self.fail = fail
        self.seen: list = []

    def act(self, observation, instruction):
        self.seen.append(observation)
        if self.fail:
            raise RuntimeError("the agent broke")
        if len(self.seen) == 1:
            return MotionSequence((GripperCommand(closed=False),), "wait")
        return super().act(observation, instruction)


def test_every_frame_an_agent_acted_on_is_in_the_bag_with_its_stamp(tmp_path):
    spec = push_suite().episodes()[0]
    agent = ObservingOracle()
    runner = EpisodeRunner("oracle", agent=agent, record=BagOptions(tmp_path, "smoke", camera_rate_hz=2.0))
    try:
        result = runner.run(spec)
    finally:
        runner.close()
    assert result.success and result.steps == 2 and len(agent.seen) == 2
    colour = [(stamp_ns(m), msg_to_rgb(m)) for _, m in read_decoded(Path(result.bag))["/camera/color/image_raw"]]
    stamps = [t for t, _ in colour]
    assert len(stamps) == len(set(stamps))  # the frame at the reset, also the first observation, is there once
    scheduled = range(stamps[0], stamps[-1] + 1, NS // 2)  # 2 Hz from the reset
    assert round(agent.seen[1].time_s * NS) not in scheduled
    for observation in agent.seen:
        assert np.array_equal(dict(colour)[round(observation.time_s * NS)], observation.rgb)


def test_an_episode_that_raises_still_closes_its_bag(tmp_path):
    runner = EpisodeRunner("oracle", agent=ObservingOracle(fail=True), record=BagOptions(tmp_path, "smoke"))
    try:
        result = runner.run(push_suite().episodes()[0])
    finally:
        runner.close()
    assert not result.success and result.failure_reason == "RuntimeError: the agent broke"
    assert (Path(result.bag) / "metadata.yaml").is_file()
    messages = read_decoded(Path(result.bag))
    assert len(messages["/sim/episode"]) == 1 and len(messages["/camera/color/image_raw"]) >= 1


def test_a_folder_that_holds_something_stops_the_run_before_any_episode(tmp_path):
    taken = BagOptions(tmp_path, "smoke").folder("push", SEED)
    taken.mkdir(parents=True)
    (taken / "old.mcap").write_bytes(b"x")
    with pytest.raises(BagFolderError, match="not empty"):
        evaluate(push_suite(), "oracle", workers=1, progress=False, record=BagOptions(tmp_path, "smoke"))


def test_folder_names_keep_to_safe_characters(tmp_path):
    assert BagOptions(tmp_path, "smoke-phrasings-heldout").folder("place-in-container", 7) == \
        tmp_path / "smoke-phrasings-heldout-place-in-container-7"
    assert BagOptions(tmp_path, "config/suites/my suite.yaml").folder("push", 1) == tmp_path / "my_suite-push-1"
    with pytest.raises(ValueError, match="camera_rate_hz"):
        BagOptions(tmp_path, "smoke", camera_rate_hz=0)


# --- the command line ------------------------------------------------------------------------------------------
def run_cli(*args: str, limit_file_bytes: int | None = None) -> subprocess.CompletedProcess:
    def limit() -> None:  # Python ignores SIGXFSZ: a write past the limit fails with EFBIG, like a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_bytes, limit_file_bytes))

    return subprocess.run([sys.executable, "-m", "molmomotion_ros.cli", *args], capture_output=True, text=True,
                          timeout=300, preexec_fn=limit if limit_file_bytes else None)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("pybullet build time")]


SIM_EVAL = ("sim-eval", "--suite", "smoke", "--episodes", "1", "--families", "push", "--workers", "1",
            "--no-progress")


@pytest.mark.slow
def test_sim_eval_record_writes_a_bag_per_episode_and_names_it_in_the_results(tmp_path):
    bags, out = tmp_path / "bags", tmp_path / "eval.json"
    result = run_cli(*SIM_EVAL, "--record", str(bags), "--out", str(out))
    assert result.returncode == 0, result.stderr
    [episode] = json.loads(out.read_text())["episodes"]
    bag = bags / BAG
    assert episode["bag"] == str(bag) and (bag / "metadata.yaml").is_file()
    assert json.loads(out.read_text())["meta"]["record"] == {"dir": str(bags), "camera_rate_hz": 15.0}
    assert f"bags: 1 in {bags}, one per episode ({BAG}, ...)" in result.stdout
    assert len(read_decoded(bag)["/camera/color/image_raw"]) > 10

    again = run_cli(*SIM_EVAL, "--record", str(bags), "--out", str(tmp_path / "again.json"))
    lines = error_lines(again.stderr)
    assert again.returncode == 2 and len(lines) == 1, again.stderr
    assert lines[0].startswith("molmomotion: error: cannot record to") and "not empty" in lines[0]
    assert not (tmp_path / "again.json").exists()


@pytest.mark.slow
def test_sim_eval_record_reports_a_write_error_in_one_line(tmp_path):
    bags = tmp_path / "bags"
    result = run_cli(*SIM_EVAL, "--record", str(bags), "--out", str(tmp_path / "eval.json"),
                     limit_file_bytes=200_000)
    lines = error_lines(result.stderr)
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("molmomotion: error: writing ") and "File too large" in lines[0]
    assert (bags / BAG / "metadata.yaml").is_file()  # the bag was still closed
