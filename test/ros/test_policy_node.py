"""policy_node against sim_node, both real processes: the shipped policy A
starts on the instruction and drives the arm closed-loop from the camera frames, ~/stop halts it, a new
instruction starts a new episode, and a missing checkpoint leaves the node unconfigured with the reason until
the parameter names a checkpoint that loads.
The same policy through the whole graph (episode runner) is in test_sim_eval_graph.py."""

import json
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosutil import change_state, configure_problem, lifecycle_state, set_parameters, start_node, stop, wait_until
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, MultiDOFJointTrajectory

from molmomotion_ros.conversions import hypotheses_to_trajectory
from molmomotion_ros.planning.kinematics import PandaKinematics

ROOT = Path(__file__).resolve().parents[2]
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def test_a_missing_policy_checkpoint_leaves_the_node_unconfigured_until_fixed(ros_env, tmp_path):
    log_path = tmp_path / "policy.log"
    process = start_node("molmomotion_ros.nodes.policy_node", "--params-file", str(ROOT / "config/policy_node.yaml"),
                         "-p", "policy_checkpoint:=Z", env=ros_env, log_path=log_path)
    rclpy.init()
    node = rclpy.create_node("policy_test")
    diagnostics, statuses = [], []
    node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    node.create_subscription(String, "manipulation/status", lambda m: statuses.append(json.loads(m.data)), LATCHED)

    def spin():
        rclpy.spin_once(node, timeout_sec=0.05)

    try:
        wait_until(lambda: configure_problem(diagnostics, "policy_node") or process.poll() is not None, 120, spin,
                   "the configure failure on /diagnostics")
        reason = configure_problem(diagnostics, "policy_node")
        assert process.poll() is None, log_path.read_text()
        assert "no policy checkpoint 'Z'" in reason and "shipped: A, B, C" in reason
        assert lifecycle_state(node, "policy_node", spin) == "unconfigured" and not statuses
        assert set_parameters(node, "policy_node", spin, policy_checkpoint="A")[0].successful
        assert change_state(node, "policy_node", "configure", spin), log_path.read_text()
        assert change_state(node, "policy_node", "activate", spin)
        wait_until(lambda: statuses, 10, spin, "the idle status")
        assert statuses[-1]["state"] == "idle" and statuses[-1]["agent"].startswith("policy-A")
        assert stop(process) == 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop(process)


def test_policy_drives_the_arm_from_frames_stop_and_restart(ros_env, tmp_path):
    sim = start_node("molmomotion_ros.nodes.sim_node", "--params-file", str(ROOT / "config/sim_node.yaml"),
                     "-p", "family:=place-in-container", "-p", "seed:=110000", "-p", "camera_rate_hz:=15.0",
                     env=ros_env, log_path=tmp_path / "sim.log")
    manip = start_node("molmomotion_ros.nodes.policy_node", "--params-file",
                       str(ROOT / "config/policy_node.yaml"), "-p", "use_sim_time:=true",
                       "-p", "policy_checkpoint:=A",
                       env=ros_env, log_path=tmp_path / "manipulation.log")
    rclpy.init()
    node = rclpy.create_node("policy_test")
    joints, statuses, trajectories = [], [], []
    node.create_subscription(JointState, "joint_states", joints.append, 10)
    node.create_subscription(String, "manipulation/status", lambda m: statuses.append(json.loads(m.data)), LATCHED)
    node.create_subscription(JointTrajectory, "arm_controller/joint_trajectory", trajectories.append, 10)
    instruction = node.create_publisher(String, "instruction", 10)  # volatile, as `ros2 topic pub --once`
    stop_client = node.create_client(Trigger, "policy_node/stop")

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
        # The graph runs the harness's loop: from the same scene (at rest, arm at home), the first set-points
        # the node sends put the grasp target where the harness agent's do (rgb8 and 32FC1 depth arrive
        # unchanged). Compared as grasp-target positions: the joints agree to 2e-4 rad on a quiet machine, but
        # a set-point whose yaw lies near the last joint's limit may take the other half-turn IK branch.
        sent = np.array([p.positions for p in trajectories[0].points])[1::2]  # zero-order hold: 2 points each
        harness = _harness_first_set_points("place-in-container", 110_000, "A")[: len(sent)]
        kinematics = PandaKinematics()
        apart_m = max(np.linalg.norm(kinematics.fk(a)[:3, 3] - kinematics.fk(b)[:3, 3])
                      for a, b in zip(sent, harness, strict=True))
        assert apart_m < 0.002, (apart_m, np.abs(sent - harness).max())
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
        # Held where it was: within 1 s of simulated time (100 joint states) the arm has stopped and stays
        # still; a chunk slipping out after the stop's hold would still be moving it.
        count = len(joints)
        wait_until(lambda: len(joints) > count + 100, 20, spin, "joint states after the stop")
        speeds = np.abs(np.array([j.velocity[:7] for j in joints[-10:]]))
        drift = np.ptp(np.array([j.position[:7] for j in joints[-50:]]), axis=0)
        assert speeds.max() < 0.05 and drift.max() < 0.02, (speeds.max(), drift.max(), logs())

        # A new instruction, from a volatile publisher, starts a new episode (the node logs it) that drives the
        # arm again; sim_node's latched one, heard on both of the node's subscriptions, started one episode.
        assert node_log().count("episode: ") == 1, node_log()
        count = len(trajectories)
        instruction.publish(String(data="put the red cube in the blue bowl"))
        wait_until(lambda: node_log().count("episode: ") >= 2, 30, spin, f"a second episode {logs()}")
        wait_until(lambda: len(trajectories) >= count + 3, 30, spin, "the second episode's chunks")
        assert manip.poll() is None and sim.poll() is None
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop(manip)
        stop(sim)


def _harness_first_set_points(family: str, seed: int, checkpoint: str) -> np.ndarray:
    """The joint set-points (n, 7) of the first chunk that the harness agent's loop commands."""
    from molmomotion_policies.agent import HarnessRobot
    from molmomotion_policies.controller import PolicyController
    from molmomotion_policies.runner import run_policy_loop
    from molmomotion_ros.planning.kinematics import PandaKinematics
    from molmomotion_sim.suites import load_suite
    from molmomotion_sim.tasks import TASKS
    from molmomotion_sim.world import World

    class FirstChunk(Exception):
        pass

    def stop_after_first(_report, targets):
        raise FirstChunk(targets)

    options = {f.family: f.options for f in load_suite("main").families}[family]
    controller, _ = PolicyController.from_checkpoint(checkpoint)
    with World() as world:
        task = TASKS[family](world, options)
        task.reset(seed)
        controller.reset(task.instruction)
        robot = HarnessRobot(world)
        try:
            run_policy_loop(controller, robot, PandaKinematics(), robot.observe(), on_chunk=stop_after_first)
        except FirstChunk as first:
            return first.args[0]
    raise AssertionError("the policy finished without a chunk")


def test_forecast_conditioned_policy_starts_from_the_frame_of_its_forecast(ros_env, tmp_path, tiny_checkpoints):
    """Variant C (tiny, untrained to succeed): without a forecast it acts without one after frame_timeout_s (as
    in training, where a failed forecast was zeroed) and says so; with one, the episode starts from the frame
    the forecast was made from."""
    sim = start_node("molmomotion_ros.nodes.sim_node", "--params-file", str(ROOT / "config/sim_node.yaml"),
                     "-p", "family:=place-in-container", "-p", "seed:=110000", "-p", "camera_rate_hz:=15.0",
                     env=ros_env, log_path=tmp_path / "sim.log")
    manip = start_node("molmomotion_ros.nodes.policy_node", "--params-file",
                       str(ROOT / "config/policy_node.yaml"), "-p", "use_sim_time:=true",
                       "-p", f"policy_checkpoint:={tiny_checkpoints['C']}", "-p", "frame_timeout_s:=3.0",
                       env=ros_env, log_path=tmp_path / "manipulation.log")
    rclpy.init()
    node = rclpy.create_node("policy_c_test")
    statuses, colors = [], []
    node.create_subscription(String, "manipulation/status", lambda m: statuses.append(json.loads(m.data)), LATCHED)
    node.create_subscription(Image, "camera/color/image_raw", colors.append, qos_profile_sensor_data)
    instruction = node.create_publisher(String, "instruction", LATCHED)
    forecast = node.create_publisher(MultiDOFJointTrajectory, "forecast/hypotheses", LATCHED)
    stop_client = node.create_client(Trigger, "policy_node/stop")

    def spin():
        rclpy.spin_once(node, timeout_sec=0.05)

    def logs():
        return {p.name: p.read_text()[-1500:] for p in tmp_path.glob("*.log")}

    def node_log():
        return (tmp_path / "manipulation.log").read_text()

    def stamp_s(stamp):
        return stamp.sec + stamp.nanosec * 1e-9

    try:
        # sim_node's reset published the instruction; nobody forecasts it.
        wait_until(lambda: ", without a forecast" in node_log(), 120, spin, f"the episode {logs()}")
        assert "acting without a forecast: no forecast on forecast/hypotheses" in node_log()
        assert stop_client.wait_for_service(10)
        future = stop_client.call_async(Trigger.Request())
        wait_until(future.done, 10, spin, "the stop service")
        wait_until(lambda: statuses[-1]["state"] == "stopped", 10, spin, "the stopped status")

        instruction.publish(String(data="put the red cube in the blue bowl"))
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


def test_the_episode_starts_from_a_frame_received_after_the_instruction(ros_env, tmp_path):
    """A frame held before the instruction may show another scene (the one before a reset), and the node's
    clock (from /clock) can lag the frames' stamps, so "stamped at or after the instruction's arrival" is not
    enough: the first frame must also be newer than every frame held when the instruction came. This test
    is the camera and the clock: a frame stamped ahead of /clock, then the instruction, then newer frames."""
    from molmomotion_ros.conversions import camera_info_msg, depth_to_msg, pose_stamped, rgb_to_msg
    from molmomotion_ros.conversions.joints import joint_state_msg, time_msg
    from molmomotion_ros.robot import HOME_JOINTS_RAD
    from molmomotion_sim.world import World

    world = World()  # the empty table: the "scene before the reset"
    observation = world.render(world.camera)
    world.close()
    camera = observation.camera
    manip = start_node("molmomotion_ros.nodes.policy_node", "--params-file",
                       str(ROOT / "config/policy_node.yaml"), "-p", "use_sim_time:=true",
                       "-p", "policy_checkpoint:=A", env=ros_env, log_path=tmp_path / "manipulation.log")
    rclpy.init()
    node = rclpy.create_node("camera_and_clock")
    from rosgraph_msgs.msg import Clock

    clock = node.create_publisher(Clock, "/clock", 10)
    color = node.create_publisher(Image, "camera/color/image_raw", qos_profile_sensor_data)
    depth = node.create_publisher(Image, "camera/depth/image_raw", qos_profile_sensor_data)
    info = node.create_publisher(type(camera_info_msg(camera, time_msg(0.0), "camera")), "camera/color/camera_info",
                                 qos_profile_sensor_data)
    pose = node.create_publisher(type(pose_stamped(camera.T_world_cam, time_msg(0.0), "world")), "camera/pose", LATCHED)
    joints = node.create_publisher(JointState, "joint_states", 10)
    instruction = node.create_publisher(String, "instruction", LATCHED)
    statuses = []
    node.create_subscription(String, "manipulation/status", lambda m: statuses.append(json.loads(m.data)), LATCHED)

    def publish(clock_s: float, frame_s: float | None) -> None:
        clock.publish(Clock(clock=time_msg(clock_s)))
        joints.publish(joint_state_msg([f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1",
                                        "panda_finger_joint2"], list(HOME_JOINTS_RAD) + [0.04, 0.04],
                                       time_msg(clock_s)))
        if frame_s is not None:
            stamp = time_msg(frame_s)
            color.publish(rgb_to_msg(observation.rgb, stamp, "camera"))
            depth.publish(depth_to_msg(observation.depth_m.astype(np.float32), stamp, "camera"))
            info.publish(camera_info_msg(camera, stamp, "camera"))

    def node_log():
        return (tmp_path / "manipulation.log").read_text()

    try:
        pose.publish(pose_stamped(camera.T_world_cam, time_msg(10.0), "world"))
        wait_until(lambda: statuses and instruction.get_subscription_count() > 0, 120, lambda: (
            publish(10.0, None), rclpy.spin_once(node, timeout_sec=0.05)), "the policy node")
        # The clock says 10.0 s; a frame stamped 10.05 s (rendered just before a reset, say) is held.
        for _ in range(10):
            publish(10.0, 10.05)
            rclpy.spin_once(node, timeout_sec=0.05)
        instruction.publish(String(data="put the red cube in the blue bowl"))
        wait_until(lambda: "instruction: " in node_log(), 30, lambda: (publish(10.0, None),
                   rclpy.spin_once(node, timeout_sec=0.05)), "the instruction")
        frame_s = 10.1
        while "episode: " not in node_log():
            publish(frame_s, frame_s)
            rclpy.spin_once(node, timeout_sec=0.05)
            frame_s += 1 / 15
            assert frame_s < 40, node_log()[-2000:]
        line = [x for x in node_log().splitlines() if "episode: " in x][-1]
        started = float(line.split("from the frame at ")[1].split(" s")[0])
        assert started >= 10.1 - 1e-3, line
        assert manip.poll() is None
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop(manip)
