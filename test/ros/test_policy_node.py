"""manipulation_node with ``agent: policy`` against sim_node, both real processes: the shipped policy A
starts on the instruction and drives the arm closed-loop from the camera frames, ~/stop halts it, a new
and a missing checkpoint stops the node at start with a reason.
The same policy through the whole graph (episode runner) is in test_sim_eval_graph.py."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosutil import start_node, stop, wait_until
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, MultiDOFJointTrajectory

from molmomotion_ros.conversions import hypotheses_to_trajectory

ROOT = Path(__file__).resolve().parents[2]
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def test_a_missing_policy_checkpoint_stops_the_node_at_start_with_a_reason(ros_env):
    result = subprocess.run(
        [sys.executable, "-m", "molmomotion_ros.nodes.manipulation_node", "--ros-args", "--params-file",
         str(ROOT / "config/manipulation_node.yaml"), "-p", "agent:=policy", "-p", "policy_checkpoint:=Z"],
        env=ros_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "no policy checkpoint 'Z'" in result.stderr + result.stdout
    assert "shipped: A, B, C" in result.stderr + result.stdout


def test_policy_drives_the_arm_from_frames_and_stop_halts_it(ros_env, tmp_path):
    sim = start_node("molmomotion_ros.nodes.sim_node", "--params-file", str(ROOT / "config/sim_node.yaml"),
                     "-p", "family:=place-in-container", "-p", "seed:=110000", "-p", "camera_rate_hz:=15.0",
                     env=ros_env, log_path=tmp_path / "sim.log")
    manip = start_node("molmomotion_ros.nodes.manipulation_node", "--params-file",
                       str(ROOT / "config/manipulation_node.yaml"), "-p", "use_sim_time:=true",
                       "-p", "agent:=policy", "-p", "policy_checkpoint:=A",
                       env=ros_env, log_path=tmp_path / "manipulation.log")
    rclpy.init()
    node = rclpy.create_node("policy_test")
    joints, statuses, trajectories = [], [], []
    node.create_subscription(JointState, "joint_states", joints.append, 10)
    node.create_subscription(String, "manipulation/status", lambda m: statuses.append(json.loads(m.data)), LATCHED)
    node.create_subscription(JointTrajectory, "arm_controller/joint_trajectory", trajectories.append, 10)
    stop_client = node.create_client(Trigger, "manipulation_node/stop")

    def spin():
        rclpy.spin_once(node, timeout_sec=0.05)

    def logs():
        return {p.name: p.read_text()[-1500:] for p in tmp_path.glob("*.log")}

    def node_log():
        return (tmp_path / "manipulation.log").read_text()

    try:
        # sim_node's reset publishes the instruction (latched): the policy starts on it by itself.
        wait_until(lambda: statuses and statuses[-1]["state"] == "executing", 120, spin,
                   f"the policy's first chunk {logs()}")
        first = statuses[-1]
        assert first["agent"].startswith("policy-A") and first["retryable"] is False
        wait_until(lambda: len(trajectories) >= 3, 30, spin, "three chunks")
        chunk = trajectories[-1]
        assert chunk.joint_names == [f"panda_joint{i}" for i in range(1, 8)]
        times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in chunk.points]
        assert len(times) % 2 == 0 and abs(times[1] - 1 / 15) < 1e-6  # zero-order hold at 15 fps
        moved = np.abs(np.array(joints[-1].position[:7]) - np.array(joints[0].position[:7])).max()
        assert moved > 0.02, moved

        assert stop_client.wait_for_service(10)
        future = stop_client.call_async(Trigger.Request())
        wait_until(future.done, 10, spin, "the stop service")
        wait_until(lambda: statuses[-1]["state"] == "stopped", 10, spin, "the stopped status")
        count = len(joints)
        wait_until(lambda: len(joints) > count + 30, 10, spin, "joint states after the stop")
        speeds = np.abs(np.array([j.velocity[:7] for j in joints[-10:]]))
        assert speeds.max() < 0.05, (speeds.max(), logs())

        assert manip.poll() is None and sim.poll() is None
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop(manip)
        stop(sim)


def test_forecast_conditioned_policy_starts_from_the_frame_of_its_forecast(ros_env, tmp_path, tiny_checkpoints):
    """Variant C (tiny, untrained to succeed) waits for the forecast of its instruction and starts from the
    frame the forecast was made from."""
    sim = start_node("molmomotion_ros.nodes.sim_node", "--params-file", str(ROOT / "config/sim_node.yaml"),
                     "-p", "family:=place-in-container", "-p", "seed:=110000", "-p", "camera_rate_hz:=15.0",
                     env=ros_env, log_path=tmp_path / "sim.log")
    manip = start_node("molmomotion_ros.nodes.manipulation_node", "--params-file",
                       str(ROOT / "config/manipulation_node.yaml"), "-p", "use_sim_time:=true", "-p", "agent:=policy",
                       "-p", f"policy_checkpoint:={tiny_checkpoints['C']}", "-p", "frame_timeout_s:=30.0",
                       env=ros_env, log_path=tmp_path / "manipulation.log")
    rclpy.init()
    node = rclpy.create_node("policy_c_test")
    statuses, colors = [], []
    node.create_subscription(String, "manipulation/status", lambda m: statuses.append(json.loads(m.data)), LATCHED)
    node.create_subscription(Image, "camera/color/image_raw", colors.append, qos_profile_sensor_data)
    forecast = node.create_publisher(MultiDOFJointTrajectory, "forecast/hypotheses", LATCHED)
    stop_client = node.create_client(Trigger, "manipulation_node/stop")

    def spin():
        rclpy.spin_once(node, timeout_sec=0.05)

    def logs():
        return {p.name: p.read_text()[-1500:] for p in tmp_path.glob("*.log")}

    def node_log():
        return (tmp_path / "manipulation.log").read_text()

    def stamp_s(stamp):
        return stamp.sec + stamp.nanosec * 1e-9

    try:
        # sim_node's reset published the instruction; the node waits for its forecast, made here from a
        # frame taken after the node heard the instruction.
        wait_until(lambda: "instruction: " in node_log() and len(colors) > 2, 120, spin, f"the instruction {logs()}")
        count = len(colors)
        wait_until(lambda: len(colors) > count + 2, 30, spin, "frames after the instruction")
        frame_stamp = colors[-1].header.stamp
        points_t0 = np.array([[0.5 + 0.01 * i, 0.0, 0.05] for i in range(8)])
        tracks = points_t0[None, :, None, :] + np.linspace(0, 0.1, 32)[None, None, :, None] * np.array([0, 1, 0])
        forecast.publish(hypotheses_to_trajectory(points_t0, tracks, np.arange(1, 33) * 2 / 15, frame_stamp, "world"))
        wait_until(lambda: ", with its forecast" in node_log(), 30, spin, f"the episode {logs()}")
        line = [x for x in node_log().splitlines() if ", with its forecast" in x][-1]
        started = float(line.split("from the frame at ")[1].split(" s")[0])
        # From that frame (logged to 1 ms), or a later one if sensor-data QoS dropped it under load.
        assert -0.001 <= started - stamp_s(frame_stamp) < 1.0, (started, stamp_s(frame_stamp))

        future = stop_client.call_async(Trigger.Request())
        wait_until(future.done, 10, spin, "the stop service")
        wait_until(lambda: statuses[-1]["state"] == "stopped", 10, spin, "the stopped status")
        assert manip.poll() is None and sim.poll() is None
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop(manip)
        stop(sim)
