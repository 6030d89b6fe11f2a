"""Recording a simulated evaluation episode by episode, and the ground truth that makes each bag scorable.

sim_node's ``publish_ground_truth``: checked on a sim_node in this process (its reset called directly, its
topics heard by a probe node in the same context), on, off, and with an oracle that fails. The per-episode writer
alone, with messages whose arrival order differs from their publish order. Then the whole path across processes:
sim_node (ground truth on), ``molmomotion record --split-by-episode`` and the test as the episode runner (two
resets) and as a static transform broadcaster; each bag is read with the ``mcap`` library's reader and
``mcap_ros2``'s decoder (not the writer's code) and with BagReader.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosutil import ROOT, call_service, set_parameters, start_node, stop, wait_until
from std_msgs.msg import String
from trajectory_msgs.msg import MultiDOFJointTrajectory

from molmomotion_ros.conversions import msg_to_ground_truth
from molmomotion_ros.conversions.joints import time_to_s
from molmomotion_sim.suites import load_suite
from molmomotion_sim.tasks import TASKS
from molmomotion_sim.world import World

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
OPTIONS = {f.family: f.options for f in load_suite("main").families}


def start_pose(family: str, seed: int) -> np.ndarray:
    """The target's world pose (position, quaternion xyzw) after the harness's reset of (family, seed)."""
    with World() as world:
        task = TASKS[family](world, OPTIONS[family])
        task.reset(seed)
        position, orientation = world.client.getBasePositionAndOrientation(task.target.body_id)
    return np.r_[position, orientation]


class InProcessSim:
    """A sim_node and a probe node in one context, spun by one executor thread; resets run on the sim thread."""

    def __init__(self, **parameters):
        from molmomotion_ros.nodes.sim_node import SimNode

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        overrides = [Parameter(k, value=v) for k, v in {"reset_on_start": False, "camera_rate_hz": 5.0,
                                                         **parameters}.items()]
        self.node = SimNode(context=self.context, parameter_overrides=overrides)
        self.probe = rclpy.create_node("ground_truth_probe", context=self.context)
        self.messages: dict[str, list] = defaultdict(list)
        for topic, msg_type in (("sim/episode", String), ("sim/ground_truth", MultiDOFJointTrajectory),
                                ("camera/pose", PoseStamped)):
            self.probe.create_subscription(msg_type, topic, self.messages[topic].append, LATCHED)
        self.probe.create_subscription(DiagnosticArray, "/diagnostics", self.messages["/diagnostics"].append, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.probe)
        self._spinning = threading.Thread(target=self._spin, daemon=True)
        self._spinning.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 (the context went down under the executor at close)
                return

    def reset(self, family: str, seed: int) -> dict:
        return self.node._in_simulation(lambda: self.node._reset("main", family, seed))

    def ground_truth_status(self) -> DiagnosticStatus | None:
        for array in reversed(self.messages["/diagnostics"]):
            for status in array.status:
                if status.name == "sim_node: ground_truth":
                    return status
        return None

    def close(self) -> None:
        self.node.close()
        rclpy.try_shutdown(context=self.context)
        self._spinning.join(5.0)
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.probe.destroy_node()


@pytest.fixture
def in_process_sim(ros_env):
    sims = []

    def make(**parameters) -> InProcessSim:
        sims.append(InProcessSim(**parameters))
        return sims[-1]

    yield make
    for sim in sims:
        sim.close()


def test_sim_node_publishes_the_ground_truth_at_each_reset_only_when_asked(in_process_sim):
    sim = in_process_sim(publish_ground_truth=False, diagnostics_period_s=0.2)
    episode = sim.reset("stack", 110_003)
    assert episode["family"] == "stack"
    wait_until(lambda: sim.messages["sim/episode"], 15, what="sim/episode")
    wait_until(lambda: sim.ground_truth_status() is not None, 15, what="a ground_truth diagnostic")
    assert sim.ground_truth_status().message.startswith("off")
    assert sim.node.count_publishers("/sim/ground_truth") == 0  # off: the topic is not in the graph at all
    assert not sim.messages["sim/ground_truth"]

    # On at runtime: the next reset computes and publishes it, stamped as camera/pose at the reset.
    assert sim.node.set_parameters([Parameter("publish_ground_truth", value=True)])[0].successful
    wait_until(lambda: sim.probe.count_subscribers("/sim/ground_truth") and
               sim.node.count_publishers("/sim/ground_truth") == 1, 15, what="the sim/ground_truth publisher")
    sim.reset("place-in-container", 110_001)
    wait_until(lambda: sim.messages["sim/ground_truth"], 15, what="sim/ground_truth")
    (truth,) = sim.messages["sim/ground_truth"]
    times_s, poses = msg_to_ground_truth(truth)
    assert times_s[0] == 0 and np.allclose(np.diff(times_s), 1 / 15, atol=1e-6) and len(times_s) > 15
    assert np.abs(poses[0, :3] - start_pose("place-in-container", 110_001)[:3]).max() < 1e-3
    assert np.abs(poses[-1, :3] - poses[0, :3]).max() > 0.05  # the oracle carried the target somewhere
    assert truth.header.frame_id == "world"
    stamp_s = time_to_s(truth.header.stamp)
    wait_until(lambda: any(time_to_s(m.header.stamp) == stamp_s for m in sim.messages["camera/pose"]), 15,
               what="the reset's camera/pose with the ground truth's stamp")
    assert json.loads(sim.messages["sim/episode"][-1].data)["seed"] == 110_001
    wait_until(lambda: "place-in-container seed 110001" in sim.ground_truth_status().message, 15,
               what="the diagnostic naming the episode")
    assert sim.ground_truth_status().level == DiagnosticStatus.OK

    # Off again: the next reset publishes none.
    assert sim.node.set_parameters([Parameter("publish_ground_truth", value=False)])[0].successful
    sim.reset("stack", 110_003)
    wait_until(lambda: len(sim.messages["sim/episode"]) == 3, 15, what="the third sim/episode")
    wait_until(lambda: sim.ground_truth_status().message.startswith("off"), 15, what="the diagnostic 'off'")
    assert len(sim.messages["sim/ground_truth"]) == 1


def test_a_ground_truth_that_cannot_be_computed_is_a_warning_and_the_episode_runs(in_process_sim, monkeypatch):
    from molmomotion_ros.nodes import sim_node
    from molmomotion_sim.tasks.base import SceneError

    class FailingOracle:
        def trace(self, family, seed, options):
            raise SceneError(f"{family} seed {seed}: the oracle found no grasp")

        def close(self):
            pass

    monkeypatch.setattr(sim_node, "GroundTruthOracle", FailingOracle)
    sim = in_process_sim(publish_ground_truth=True, diagnostics_period_s=60.0)
    episode = sim.reset("stack", 110_003)
    assert episode["seed"] == 110_003 and sim.node._task is not None  # the episode is there, to be run and judged
    wait_until(lambda: sim.messages["sim/episode"], 15, what="sim/episode")
    # The warning is published at once (not at the next period, 60 s away).
    wait_until(lambda: getattr(sim.ground_truth_status(), "level", None) == DiagnosticStatus.WARN, 15,
               what="the ground_truth diagnostic's warning")
    status = sim.ground_truth_status()
    assert "no ground truth for stack seed 110003: SceneError: stack seed 110003: the oracle found no grasp" in \
        status.message
    assert not sim.messages["sim/ground_truth"]
    assert sim.node._in_simulation(sim.node._judge)["reason"]  # judged as any episode


# --- the per-episode writer alone (no graph): ordering by publish time, names, repeated latched messages ----------
def _string(text: str) -> bytes:
    from rclpy.serialization import serialize_message

    return serialize_message(String(data=text))


def _episode(family: str, seed: int, suite: str = "main") -> bytes:
    return _string(json.dumps({"suite": suite, "family": family, "seed": seed, "instruction": f"do {family}"}))


def _bag_strings(folder) -> list[tuple[str, str, int, int]]:
    """(topic, text, log time, publish time) of every message of a bag folder, in file order."""
    from molmomotion_ros.bags import BagReader

    reader = BagReader(folder)
    try:
        return [(m.topic, json.loads(m.data[8:].rstrip(b"\0").decode()) if m.topic == "/sim/episode" else
                 m.data[8:].rstrip(b"\0").decode(), m.log_time, m.publish_time) for m in reader.messages()]
    finally:
        reader.close()


def _split_writer(tmp_path, window_s: float = 0.5):
    from molmomotion_ros.bags import DefinitionSource, QosProfile, TopicMetadata
    from molmomotion_ros.bags.episode_split import EpisodeSplitWriter

    latched = QosProfile(history="keep_last", depth=1, reliability="reliable", durability="transient_local")
    volatile = QosProfile(history="keep_last", depth=10, reliability="reliable", durability="volatile")
    definition = DefinitionSource().get("std_msgs/msg/String")
    writer = EpisodeSplitWriter(tmp_path / "run", window_s=window_s, compression="none")
    for name, offers in (("/sim/episode", [latched]), ("/sim/ground_truth", [latched]), ("/camera", [volatile]),
                         ("/tf_static", [latched, latched]), ("/instruction", [latched])):
        writer.add_topic(TopicMetadata(name, "std_msgs/msg/String", offers), definition)
    return writer


S = 1_000_000_000  # ns


def test_the_boundary_is_the_episode_messages_publish_time_within_the_window(tmp_path):
    writer = _split_writer(tmp_path)
    # (topic, text, receive s, publish s): the arrival order differs from the publish order around each reset.
    messages = [
        ("/tf_static", "base", 1.00, 1.00), ("/tf_static", "camera mount", 1.01, 1.01),  # two static broadcasters
        ("/camera", "frame 0", 1.10, 1.10),
        ("/sim/ground_truth", "truth A", 2.02, 2.001),  # taken before the episode's message, published after it
        ("/sim/episode", _episode("stack", 110_003), 2.03, 2.000),
        ("/camera", "frame 1 (before the reset)", 2.04, 1.999),  # published before the reset, taken after it
        ("/instruction", "stack A", 2.05, 2.002),
        ("/camera", "frame 2", 2.30, 2.30),
        ("/camera", "frame 3", 3.00, 3.00),
        ("/sim/episode", _episode("stack", 110_003), 4.00, 4.00),  # the same episode again
        ("/camera", "frame 4", 4.10, 4.10),
        ("/sim/episode", _episode("place in/container?", 7, suite="config/suites/my suite.yaml"), 5.00, 5.00),
        ("/sim/ground_truth", "truth C", 5.01, 5.01),
        ("/camera", "frame 6", 5.60, 5.60),  # its arrival lets the reset (0.6 s before) be written
        ("/camera", "frame 5 (late)", 6.00, 4.99),  # published before that reset, arrived a second later: too late
    ]
    from molmomotion_ros.bags.episode_split import cdr_string

    for topic, text, received_s, published_s in messages:
        data = text if isinstance(text, bytes) else _string(text)
        writer.write(topic, data, int(received_s * S), int(published_s * S))
    written = writer.message_count
    summary = writer.close()
    assert written < summary.message_count  # the last ones waited for the window to pass, until the close
    assert [b.name for b in summary.bags] == ["preamble", "main-stack-110003", "main-stack-110003_2",
                                              "my_suite-place_in_container-7"]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(b.name for b in summary.bags)
    assert json.loads(cdr_string(_episode("stack", 1))) == {"suite": "main", "family": "stack", "seed": 1,
                                                            "instruction": "do stack"}

    preamble, first, again, third = (_bag_strings(tmp_path / "run" / b.name) for b in summary.bags)
    assert [(t, x) for t, x, _, _ in preamble] == [("/tf_static", "base"), ("/tf_static", "camera mount"),
                                                   ("/camera", "frame 0"), ("/camera", "frame 1 (before the reset)")]
    episode = {"suite": "main", "family": "stack", "seed": 110_003, "instruction": "do stack"}
    # The episode's bag opens with its sim/episode, then /tf_static written again (its two latest, at the episode's
    # receive time, with their own publish times); the ground truth and instruction published after the reset are
    # its own (not the previous ones repeated before them).
    assert [(t, x) for t, x, _, _ in first] == [
        ("/sim/episode", episode), ("/tf_static", "base"), ("/tf_static", "camera mount"),
        ("/sim/ground_truth", "truth A"), ("/instruction", "stack A"), ("/camera", "frame 2"), ("/camera", "frame 3")]
    # Log times follow the order written: the episode's is raised to that of frame 1 (2.04 s), written before it.
    assert [log for _, _, log, _ in first[:3]] == [int(2.04 * S)] * 3
    assert [publish for t, _, _, publish in first if t == "/tf_static"] == [int(1.00 * S), int(1.01 * S)]
    assert [log for _, _, log, _ in first] == sorted(log for _, _, log, _ in first)
    assert summary.bags[1].repeated == 2 and summary.bags[1].episode == episode
    # No fresh ground truth or instruction after the repeated episode: the latest ones open its bag.
    assert [(t, x) for t, x, _, _ in again] == [
        ("/sim/episode", episode), ("/sim/ground_truth", "truth A"), ("/tf_static", "base"),
        ("/tf_static", "camera mount"), ("/instruction", "stack A"), ("/camera", "frame 4")]
    assert [(t, x) for t, x, _, _ in third][1:] == [
        ("/tf_static", "base"), ("/tf_static", "camera mount"), ("/instruction", "stack A"),
        ("/sim/ground_truth", "truth C"), ("/camera", "frame 5 (late)"), ("/camera", "frame 6")]
    assert summary.bags[0].episode is None and summary.repeated == 2 + 4 + 3
    assert summary.message_count == len(messages) + summary.repeated
    assert {t.metadata.name: t.message_count for t in summary.topics}["/tf_static"] == 2 + 2 * 3
    for bag in summary.bags:  # each bag lists every topic, also those without a message in it
        meta = yaml.safe_load((tmp_path / "run" / bag.name / "metadata.yaml").read_text())
        assert len(meta["rosbag2_bagfile_information"]["topics_with_message_count"]) == 5


def test_waiting_messages_are_written_when_the_window_has_passed(tmp_path):
    writer = _split_writer(tmp_path, window_s=0.5)
    writer.write("/camera", _string("frame"), 10 * S, 10 * S)
    writer.poll(int(10.4 * S))
    assert writer.message_count == 0 and not (tmp_path / "run" / "preamble").exists()
    writer.poll(int(10.6 * S))
    assert writer.message_count == 1 and (tmp_path / "run" / "preamble").is_dir()
    writer.write("/sim/episode", _string("not JSON"), 11 * S, 11 * S)
    writer.poll(12 * S)
    assert [b.name for b in writer.bags] == ["preamble"]  # closed: its metadata.yaml is there now
    assert (tmp_path / "run" / "preamble" / "metadata.yaml").is_file()
    summary = writer.close()
    assert [(b.name, b.episode, b.summary.message_count) for b in summary.bags] == [("preamble", None, 1),
                                                                                   ("episode", None, 1)]


def test_nothing_received_leaves_the_folder_empty(tmp_path):
    writer = _split_writer(tmp_path)
    summary = writer.close()
    assert summary.bags == () and list((tmp_path / "run").iterdir()) == []


# --- across processes: sim_node, the recorder, two episodes ----------------------------------------------------------
EPISODES = (("place-in-container", 110_000), ("stack", 110_003))


def _read_mcap(folder: Path) -> list[tuple[str, int, object]]:
    """(topic, log time, decoded message) of every message of a bag folder's files, by the mcap library."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    meta = yaml.safe_load((folder / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    out = []
    for name in meta["relative_file_paths"]:
        with open(folder / name, "rb") as stream:
            reader = make_reader(stream, decoder_factories=[DecoderFactory()])
            assert reader.get_header().profile == "ros2"
            out += [(channel.topic, message.log_time, decoded)
                    for _, channel, message, decoded in reader.iter_decoded_messages(log_time_order=True)]
    assert meta["message_count"] == len(out)
    return out


def test_a_recording_split_by_episode_gives_each_episode_a_bag_of_its_own(ros_env, tmp_path):
    from geometry_msgs.msg import TransformStamped
    from std_srvs.srv import Trigger
    from tf2_msgs.msg import TFMessage

    from molmomotion_ros.bags import BagReader

    sim = start_node("molmomotion_ros.nodes.sim_node", "--params-file", str(ROOT / "config" / "sim_node.yaml"),
                     "-p", "reset_on_start:=false", "-p", "publish_ground_truth:=true", "-p", "camera_rate_hz:=10.0",
                     env=ros_env, log_path=tmp_path / "sim_node.log")
    out, err = tmp_path / "recorder.out", tmp_path / "recorder.err"
    recording = tmp_path / "episodes"
    recorder = subprocess.Popen([sys.executable, "-m", "molmomotion_ros.cli", "record", str(recording),
                                 "--split-by-episode", "--discovery-interval", "0.2"], env=ros_env,
                                stdout=open(out, "w"), stderr=open(err, "w"),  # noqa: SIM115
                                start_new_session=True, cwd=ROOT)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("episode_driver", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)

    def spin() -> None:
        executor.spin_once(timeout_sec=0.02)

    try:
        # A static transform, latched, published once before any episode (as a static_transform_publisher).
        static = node.create_publisher(TFMessage, "/tf_static", LATCHED)
        mount = TransformStamped(child_frame_id="camera_mount")
        mount.header.frame_id, mount.transform.rotation.w = "world", 1.0
        static.publish(TFMessage(transforms=[mount]))

        def subscribed() -> bool:
            assert recorder.poll() is None, err.read_text()
            assert sim.poll() is None, (tmp_path / "sim_node.log").read_text()
            text = out.read_text()
            return all(f"  {t}: " in text for t in ("/sim/episode", "/sim/ground_truth", "/tf_static",
                                                     "/camera/color/image_raw", "/instruction"))

        wait_until(subscribed, 40, spin, "the recorder's subscriptions")
        wait_until(lambda: (recording / "preamble").is_dir(), 20, spin, "the preamble bag (the empty table)")
        for family, seed in EPISODES:
            assert all(r.successful for r in set_parameters(node, "sim_node", spin, family=family, seed=seed))
            reset = call_service(node, Trigger, "/sim_node/reset", Trigger.Request(), spin)
            assert reset.success, reset.message
            end = time.monotonic() + 2.0  # ~20 camera frames of the episode
            while time.monotonic() < end:
                spin()
        os.killpg(recorder.pid, signal.SIGINT)
        assert recorder.wait(60) == 0, f"{out.read_text()}\n{err.read_text()}"
    finally:
        stop(recorder)
        stop(sim)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    stdout = out.read_text()

    names = [f"main-{family}-{seed}" for family, seed in EPISODES]
    assert sorted(p.name for p in recording.iterdir()) == sorted(["preamble", *names])
    reset_stamps, frames = [], {}
    for (family, seed), name in zip(EPISODES, names, strict=True):
        messages = _read_mcap(recording / name)
        by_topic = defaultdict(list)
        for topic, log_time, decoded in messages:
            by_topic[topic].append((log_time, decoded))
        # It opens with its own sim/episode, and holds no other.
        assert messages[0][0] == "/sim/episode"
        (episode,) = [json.loads(m.data) for _, m in by_topic["/sim/episode"]]
        assert (episode["suite"], episode["family"], episode["seed"]) == ("main", family, seed)
        assert [m.data for _, m in by_topic["/instruction"]] == [episode["instruction"]]
        # Its ground truth: the target's trace from where the reset put it.
        (truth,) = [m for _, m in by_topic["/sim/ground_truth"]]
        times_s, poses = msg_to_ground_truth(truth)
        assert times_s[0] == 0 and len(times_s) > 15
        assert np.abs(poses[0, :3] - start_pose(family, seed)[:3]).max() < 1e-3
        reset_stamps.append(time_to_s(truth.header.stamp))
        # /tf_static, published once before the first episode, is written again at the bag's start.
        assert [(log, m.transforms[0].child_frame_id) for log, m in by_topic["/tf_static"]] == \
            [(messages[0][1], "camera_mount")]
        frames[name] = [time_to_s(m.header.stamp) for _, m in by_topic["/camera/color/image_raw"]]
        assert len(frames[name]) >= 5 and len(by_topic["/camera/depth/image_raw"]) >= 5
        # BagReader reads the same bag.
        reader = BagReader(recording / name)
        try:
            assert reader.message_count == len(messages)
            assert [m.topic for m in reader.messages()].count("/sim/ground_truth") == 1
        finally:
            reader.close()
    # The boundary: every camera frame of an episode's bag was taken after its reset and before the next one.
    frames_1, frames_2 = (frames[n] for n in names)
    assert reset_stamps[0] <= min(frames_1) and max(frames_1) < reset_stamps[1] <= min(frames_2)
    preamble = [t for t, _, _ in _read_mcap(recording / "preamble")]
    assert preamble and "/sim/episode" not in preamble  # (the camera's frames there only once its match was made)

    # The summary lists the bags with their message counts.
    for name in ["preamble", *names]:
        count = yaml.safe_load((recording / name / "metadata.yaml").read_text())[
            "rosbag2_bagfile_information"]["message_count"]
        assert re.search(rf"^{re.escape(name)}\s+.*\s{count}\s+\d+\s+[\d.]+$", stdout, re.M), stdout
    assert re.search(r"^3 bags\s", stdout, re.M) and "into 3 bags" in stdout, stdout


def test_launch_records_the_simulated_graphs_a_bag_per_episode_with_the_ground_truth(tmp_path):
    from molmomotion_ros.graph import GRAPHS
    from molmomotion_ros.launcher import node_commands, recorder_command, recording_plan

    overrides, split = recording_plan(GRAPHS["sim_eval"], {"forecaster_node": {"backend": "ar"}}, tmp_path / "bags")
    assert split and overrides == {"forecaster_node": {"backend": "ar"}, "sim_node": {"publish_ground_truth": True}}
    (sim,) = [p for p in node_commands(GRAPHS["sim_eval"], overrides) if p.name == "sim_node"]
    assert "publish_ground_truth:=true" in sim.command
    assert recorder_command(tmp_path / "bags", None, split).command[-1] == "--split-by-episode"
    assert recording_plan(GRAPHS["sim_eval_policy"], None, tmp_path / "bags")[1]
    # --record-one-bag, a --set of the parameter, no --record, a graph without episodes: as asked, or as before.
    assert recording_plan(GRAPHS["sim_eval"], None, tmp_path / "bags", split_by_episode=False) == \
        ({"sim_node": {"publish_ground_truth": True}}, False)
    assert recording_plan(GRAPHS["sim_eval"], {"sim_node": {"publish_ground_truth": False}}, tmp_path) == \
        ({"sim_node": {"publish_ground_truth": False}}, True)
    assert recording_plan(GRAPHS["sim_eval"], None, None) == ({}, False)
    assert recording_plan(GRAPHS["real_arm"], None, tmp_path / "bags") == ({}, False)
    assert "--split-by-episode" not in recorder_command(tmp_path / "bags").command
    result = subprocess.run([sys.executable, "-m", "molmomotion_ros.cli", "launch", "sim_eval", "--record-one-bag"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2 and "--record-one-bag goes with --record DIR" in result.stderr
