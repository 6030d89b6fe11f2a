"""A recording replayed through a forecaster node gives the recorded forecasts again.

Recorded: this process streams a harness scene as a camera does (rgb8, 16UC1 depth, camera_info, camera/pose, each
frame with a fresh wall-clock stamp, 10 Hz) and sends two instructions (volatile, like `ros2 topic pub --once`);
forecaster_node (fm, K=8, on_instruction) forecasts once per instruction; `molmomotion record` records it all.
Replayed: `molmomotion play BAG --clock --delay 3` publishes the camera and instruction topics (not the recorded
forecasts) with the bag's time on /clock, into a fresh forecaster_node with the same checkpoint and seed and
use_sim_time: every recorded forecast comes again, from the same frame (stamp), equal within 1e-5 m (the FM noise
is a function of the frame's stamp). `molmomotion reforecast` makes the same forecasts offline.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from rosutil import ROOT, start_node, stop, wait_until  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from trajectory_msgs.msg import MultiDOFJointTrajectory  # noqa: E402

from molmomotion_ros import conversions  # noqa: E402

MODULE = "molmomotion_ros.nodes.forecaster_node"
PARAMS = str(ROOT / "config" / "forecaster_node.yaml")
NODE_ARGS = ("--params-file", PARAMS, "-p", "extrinsics_source:=topic", "-p", "torch_threads:=1", "-p", "seed:=7")
PERIOD_S = 0.1
NS = 1_000_000_000
PLAYED = ["/camera/color/image_raw", "/camera/depth/image_raw", "/camera/color/camera_info", "/camera/pose",
          "/instruction"]


def _scene():
    from sim.tasks import TASKS
    from sim.world import World

    with World() as world:
        scenes = []
        for family, seed in (("place-in-container", 110000), ("push", 110003)):
            task = TASKS[family](world)
            task.reset(seed)
            scenes.append((world.render(), task.instruction))
        return scenes


class Cell:
    """This process's side: a camera streaming frames, a voice giving instructions, an ear for forecasts."""

    def __init__(self, context):
        self.node = rclpy.create_node("replay_test_cell", context=context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        sensor, latched = qos_profile_sensor_data, QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                                               durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.color = self.node.create_publisher(Image, "camera/color/image_raw", sensor)
        self.depth = self.node.create_publisher(Image, "camera/depth/image_raw", sensor)
        self.info = self.node.create_publisher(CameraInfo, "camera/color/camera_info", sensor)
        self.pose = self.node.create_publisher(PoseStamped, "camera/pose", latched)
        self.instruction = self.node.create_publisher(String, "instruction", 10)
        self.forecasts: list[MultiDOFJointTrajectory] = []
        self.node.create_subscription(MultiDOFJointTrajectory, "forecast/trajectory", self.forecasts.append,
                                      QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))

    def spin(self) -> None:
        self.executor.spin_once(timeout_sec=0.01)

    def frame(self, obs) -> None:
        stamp = self.node.get_clock().now().to_msg()
        frame_id = obs.camera.frame_id
        self.pose.publish(conversions.pose_stamped(obs.camera.T_world_cam, stamp, "world"))
        self.info.publish(conversions.camera_info_msg(obs.camera, stamp, frame_id))
        self.depth.publish(conversions.depth_to_msg(obs.depth_m, stamp, frame_id, encoding="16UC1"))
        self.color.publish(conversions.rgb_to_msg(obs.rgb, stamp, frame_id))

    def stream_until(self, obs, done, timeout_s: float, instruction: str | None = None) -> None:
        """Frames every PERIOD_S until ``done()``; the instruction half a period after the first frame (so the
        frame it is forecast from is unambiguous, on replay too)."""
        deadline = time.monotonic() + timeout_s
        next_s = time.monotonic()
        while not done():
            assert time.monotonic() < deadline, "timed out streaming frames"
            self.frame(obs)
            next_s += PERIOD_S
            if instruction is not None:
                time.sleep(PERIOD_S / 2)
                self.instruction.publish(String(data=instruction))
                instruction = None
            while time.monotonic() < next_s:
                self.spin()

    def close(self) -> None:
        self.node.destroy_node()


def test_a_replayed_recording_gives_the_recorded_forecasts(ros_env, tmp_path):
    scenes = _scene()
    bag = tmp_path / "bag"
    recorder = subprocess.Popen([sys.executable, "-m", "molmomotion_ros.cli", "record", str(bag), *PLAYED,
                                 "/forecast/trajectory", "/forecast/hypotheses"], env=ros_env,
                                stdout=open(tmp_path / "record.log", "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
                                start_new_session=True)
    node = start_node(MODULE, *NODE_ARGS, env=ros_env, log_path=tmp_path / "node.log")
    context = rclpy.Context()
    rclpy.init(context=context)
    cell = Cell(context)
    try:
        # the forecaster (active) and the recorder both listen before anything that counts is sent
        wait_until(lambda: cell.color.get_subscription_count() >= 2 and cell.instruction.get_subscription_count() >= 2,
                   120, spin=cell.spin, what="the forecaster's and the recorder's subscriptions")
        for i, (obs, instruction) in enumerate(scenes):
            cell.stream_until(obs, lambda i=i: len(cell.forecasts) > i, 90, instruction)
            end = time.monotonic() + 1.0  # the scene goes on a while after its forecast
            cell.stream_until(obs, lambda end=end: time.monotonic() > end, 5)
    finally:
        stop(node)
        stop(recorder)
    recorded = {conversions_stamp(m): m for m in cell.forecasts}
    assert len(recorded) == 2, (tmp_path / "node.log").read_text()[-2000:]

    replay = start_node(MODULE, *NODE_ARGS, "-p", "use_sim_time:=true", env=ros_env,
                        log_path=tmp_path / "replay.log")
    cell.forecasts.clear()
    try:
        wait_until(lambda: cell.node.count_subscribers("/camera/color/image_raw") >= 1, 120, spin=cell.spin,
                   what="the replaying forecaster's subscriptions")
        # --delay: the player's new publishers match the node before the first message (the instruction is
        # volatile: sent before the match, it would be lost, as with ros2 bag play)
        play = subprocess.Popen([sys.executable, "-m", "molmomotion_ros.cli", "play", str(bag), "--clock", "200",
                                 "--delay", "3", "--topics", *PLAYED], env=ros_env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            wait_until(lambda: play.poll() is not None and len(cell.forecasts) >= 2, 180, spin=cell.spin,
                       what="the replay and its forecasts")
        except TimeoutError as err:
            stop(play)
            raise AssertionError(f"{err}: {len(cell.forecasts)} forecasts; play:\n{play.stdout.read()[-1500:]}\n"
                                 f"node:\n{(tmp_path / 'replay.log').read_text()[-3000:]}") from None
        assert play.returncode == 0, play.stdout.read()
    finally:
        stop(replay)
        cell.close()
        rclpy.try_shutdown(context=context)
    replayed = {conversions_stamp(m): m for m in cell.forecasts}
    assert set(replayed) == set(recorded), (sorted(replayed), sorted(recorded),
                                            (tmp_path / "replay.log").read_text()[-2000:])
    for stamp, msg in recorded.items():
        old_t0, old_tracks, _ = conversions.msg_to_forecast_tracks(msg)
        new_t0, new_tracks, _ = conversions.msg_to_forecast_tracks(replayed[stamp])
        assert np.abs(new_tracks - old_tracks).max() <= 1e-5 and np.abs(new_t0 - old_t0).max() <= 1e-5

    # offline, from the same bag: the same forecasts
    out = subprocess.run([sys.executable, "-m", "molmomotion_ros.cli", "reforecast", str(bag), "--model", "fm",
                          "--seed", "7", "--device", "cpu", "--out", str(tmp_path / "re"), "--no-video",
                          "--no-progress"], env=ros_env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "largest difference to the recorded forecasts" in out.stdout
    import json

    summary = json.loads((tmp_path / "re" / "reforecast.json").read_text())["summary"]
    assert summary["compared_to_recorded"] == 2 and summary["max_diff_to_recorded_m"] <= 1e-5


def conversions_stamp(msg) -> int:
    return msg.header.stamp.sec * NS + msg.header.stamp.nanosec

