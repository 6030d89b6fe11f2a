"""Camera extrinsics from TF and raw (plumb_bob-distorted) RealSense-style images, in the real cell's frames: no
``world`` frame, the robot base frame fr3_link0 instead.

The node processes run for real; this test process plays the camera driver and the hand-eye calibration: it
publishes raw images rendered through a plumb_bob lens (molmomotion_ros.distortion.DistortedView), their
camera_info, and the static chain fr3_link0 → camera_link → camera_color_optical_frame on /tf_static, as
realsense2_camera and a calibration tool do.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, TransformStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosutil import ROOT, start_node, stop, wait_until
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import String
from tf2_msgs.msg import TFMessage
from trajectory_msgs.msg import MultiDOFJointTrajectory

from molmomotion_ros import conversions as conv
from molmomotion_ros.distortion import DistortedView, PlumbBob
from molmomotion_ros.robot import ARM_JOINT_NAMES, FINGER_JOINT_NAMES, GRIPPER_OPEN_M, HOME_JOINTS_RAD, ROBOT_BASE_M
from molmomotion_ros.streams import stamp_ns

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
TF_STATIC_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)
LENS = PlumbBob(-0.3, 0.1, 0.002, -0.003, 0.0)  # stronger than a RealSense's: a missed rectification would show
OPTICAL = "camera_color_optical_frame"
BASE = "fr3_link0"
SEED = 110_000


def translation(xyz) -> np.ndarray:
    T = np.eye(4)
    T[:3, 3] = xyz
    return T


T_WORLD_BASE = translation(ROBOT_BASE_M)  # the harness's cell: the base on the table


@pytest.fixture(scope="module")
def scene():
    """A place-in-container scene: the raw (distorted) colour + depth, the camera and the target's centre."""
    from molmomotion_sim.tasks import TASKS
    from molmomotion_sim.world import World

    with World() as world:
        task = TASKS["place-in-container"](world)
        task.reset(SEED)
        view = DistortedView.build(world.camera, LENS)
        canvas = world.render(view.source)
        pinhole = world.render(world.camera)
        mask = pinhole.segmentation == task.target.body_id
        cam = pinhole.camera
        xyz = cam.depth_to_points_cam(pinhole.depth_m) @ cam.T_world_cam[:3, :3].T + cam.T_world_cam[:3, 3]
        yield {"rgb": view.rgb(canvas.rgb), "depth_m": view.depth(canvas.depth_m), "camera": world.camera,
               "instruction": task.instruction, "target_center_m": world.object_center(task.target),
               "points_t0_m": xyz[mask][:: max(1, mask.sum() // 8)][:8],
               "goal_center_m": np.asarray(task.goal_center_m)}


class Driver:
    """This process: the camera driver, the calibration's /tf_static, joint states, and recorders."""

    def __init__(self, scene):
        self.scene = scene
        self.node = rclpy.create_node("frames_test")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        n = self.node
        self.pub_color = n.create_publisher(Image, "camera/color/image_raw", qos_profile_sensor_data)
        self.pub_depth = n.create_publisher(Image, "camera/depth/image_raw", qos_profile_sensor_data)
        self.pub_info = n.create_publisher(CameraInfo, "camera/color/camera_info", qos_profile_sensor_data)
        self.pub_tf_static = n.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
        self.pub_joints = n.create_publisher(JointState, "joint_states", 10)
        self.diagnostics: list[DiagnosticArray] = []
        n.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 50)
        self.distortion_model = "plumb_bob"
        self.last_stamp = None

    def spin(self) -> None:
        self.executor.spin_once(timeout_sec=0.02)

    def publish_tf_static(self) -> None:
        """The hand-eye result as a calibration tool publishes it: base → camera_link, camera_link → optical."""
        T_base_optical = np.linalg.inv(T_WORLD_BASE) @ self.scene["camera"].T_world_cam
        T_base_link = translation([0.2, -0.1, 0.3])  # any mount: the chain must compose to T_base_optical
        msgs = []
        for parent, child, T in ((BASE, "camera_link", T_base_link),
                                 ("camera_link", OPTICAL, np.linalg.inv(T_base_link) @ T_base_optical)):
            msg = TransformStamped(child_frame_id=child, transform=conv.matrix_to_transform(T))
            msg.header.frame_id, msg.header.stamp = parent, self.node.get_clock().now().to_msg()
            msgs.append(msg)
        self.pub_tf_static.publish(TFMessage(transforms=msgs))

    def send_frame(self) -> None:
        stamp = self.node.get_clock().now().to_msg()
        info = conv.camera_info_msg(self.scene["camera"], stamp, OPTICAL)
        info.distortion_model = self.distortion_model
        info.d = LENS.as_list() if self.distortion_model == "plumb_bob" else [0.1, 0.01, 0.0, 0.0]
        self.pub_info.publish(info)
        self.pub_depth.publish(conv.depth_to_msg(self.scene["depth_m"], stamp, OPTICAL, encoding="16UC1"))
        self.pub_color.publish(conv.rgb_to_msg(self.scene["rgb"], stamp, OPTICAL))
        joints = JointState(name=[*ARM_JOINT_NAMES, *FINGER_JOINT_NAMES],
                            position=[*map(float, HOME_JOINTS_RAD), GRIPPER_OPEN_M, GRIPPER_OPEN_M])
        joints.header.stamp = stamp
        self.pub_joints.publish(joints)
        self.last_stamp = stamp

    def stream_until(self, predicate, what: str, timeout_s: float, logs) -> None:
        last = -np.inf

        def done():
            nonlocal last
            if time.monotonic() - last >= 0.1:
                self.send_frame()
                last = time.monotonic()
            return predicate()

        try:
            wait_until(done, timeout_s, spin=self.spin, what=what)
        except TimeoutError as err:
            raise AssertionError(f"{err}\n{logs()}") from None

    def problem(self, kind: str) -> str | None:
        """The newest diagnostic message naming problem ``kind``."""
        for array in reversed(self.diagnostics):
            for status in array.status:
                if any(kv.key == "problem" and kv.value == kind for kv in status.values):
                    return status.message
        return None


@pytest.fixture
def driver(scene, ros_env):
    rclpy.init()
    driver = Driver(scene)
    try:
        yield driver
    finally:
        driver.node.destroy_node()
        rclpy.try_shutdown()


def logs_of(tmp_path):
    return lambda: "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in tmp_path.glob("*.log"))


def test_forecaster_takes_the_camera_pose_from_tf_static_in_the_base_frame(scene, driver, ros_env, tmp_path):
    """extrinsics_source tf, world_frame fr3_link0, raw plumb_bob images: without the transform a frame is
    dropped with the reason and nothing is forecast; with the calibration's /tf_static the forecast lands on
    the target, in fr3_link0; a camera_info of another distortion model is refused with the reason."""
    logs = logs_of(tmp_path)
    process = start_node("molmomotion_ros.nodes.forecaster_node", "--params-file",
                         str(ROOT / "config" / "forecaster_node.yaml"), "-p", "extrinsics_source:=tf",
                         "-p", f"world_frame:={BASE}", "-p", "torch_threads:=1", env=ros_env,
                         log_path=tmp_path / "forecaster.log")
    forecasts: list[MultiDOFJointTrajectory] = []
    driver.node.create_subscription(MultiDOFJointTrajectory, "forecast/trajectory", forecasts.append, LATCHED)
    pub_instruction = driver.node.create_publisher(String, "instruction", LATCHED)
    try:
        wait_until(lambda: driver.pub_color.get_subscription_count() > 0 or process.poll() is not None, 90,
                   driver.spin, "the forecaster's subscriptions")
        assert process.poll() is None, logs()
        pub_instruction.publish(String(data=scene["instruction"]))
        driver.stream_until(lambda: driver.problem("extrinsics_tf") is not None, "the missing-transform diagnostic",
                            30, logs)
        message = driver.problem("extrinsics_tf")
        assert f"no camera pose {BASE} ← {OPTICAL}" in message and "not in the TF tree" in message, message
        assert not forecasts

        driver.publish_tf_static()
        driver.stream_until(lambda: forecasts, "a forecast", 60, logs)
        points_t0, tracks, _ = conv.msg_to_forecast_tracks(forecasts[-1])
        assert forecasts[-1].header.frame_id == BASE
        target_in_base = scene["target_center_m"] - np.asarray(ROBOT_BASE_M)
        assert np.linalg.norm(points_t0.mean(0) - target_in_base) < 0.03, (points_t0.mean(0), target_in_base)
        assert np.linalg.norm(points_t0 - target_in_base, axis=1).max() < 0.05

        driver.distortion_model = "equidistant"
        driver.diagnostics.clear()
        count = len(forecasts)
        pub_instruction.publish(String(data=scene["instruction"]))
        driver.stream_until(lambda: driver.problem("camera_info") is not None, "the distortion-model refusal", 30,
                            logs)
        assert "model 'equidistant'" in driver.problem("camera_info")
        assert len(forecasts) == count
        assert process.poll() is None
    finally:
        assert stop(process) in (0, -2), logs()


def start_manipulation(name: str, ros_env, tmp_path, *args: str):
    return start_node("molmomotion_ros.nodes.manipulation_node", "--params-file",
                      str(ROOT / "config" / "manipulation_node.yaml"), "-r", f"__node:={name}",
                      "-r", f"manipulation/status:={name}/status", "-r", f"forecast/hypotheses:={name}/hypotheses",
                      "-p", "execute:=false", *args, env=ros_env, log_path=tmp_path / f"{name}.log")


def test_manipulation_plans_the_same_from_tf_in_the_base_frame_as_from_the_topic_in_world(scene, driver, ros_env,
                                                                                         tmp_path):
    """Two manipulation nodes see the same raw plumb_bob frames: one with camera/pose and forecasts in world (the
    simulated graphs' set-up), one with TF, world_frame fr3_link0 and an identity robot_base_pose (a real cell).
    Both plan the same motion; without the transform the TF one fails naming it; another distortion model
    fails with the reason."""
    logs = logs_of(tmp_path)
    topic = start_manipulation("manip_topic", ros_env, tmp_path)
    tf = start_manipulation("manip_tf", ros_env, tmp_path, "-p", "extrinsics_source:=tf",
                            "-p", f"world_frame:={BASE}", "-p", "robot_base_pose:=[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]")
    n = driver.node
    statuses = {name: [] for name in ("manip_topic", "manip_tf")}
    pubs = {}
    for name in statuses:
        n.create_subscription(String, f"{name}/status", lambda m, k=name: statuses[k].append(json.loads(m.data)),
                              LATCHED)
        pubs[name] = n.create_publisher(MultiDOFJointTrajectory, f"{name}/hypotheses", LATCHED)
    pub_pose = n.create_publisher(PoseStamped, "camera/pose", LATCHED)
    points_world = scene["points_t0_m"]
    shift = scene["goal_center_m"][:2] - points_world.mean(0)[:2]
    s = np.linspace(1 / 32, 1, 32)
    tracks_world = points_world[:, None] + np.stack([shift[0] * s, shift[1] * s, 0.12 * np.sin(np.pi * s)], 1)[None]
    times = np.arange(1, 33) * 2 / 15

    def plan(name: str, frame_id: str, offset=(0.0, 0.0, 0.0)):
        """Send the forecast (moved by ``offset``) stamped like the newest frame; its final status."""
        stamp = driver.last_stamp
        offset = np.asarray(offset)
        pubs[name].publish(conv.hypotheses_to_trajectory(points_world + offset, (tracks_world + offset)[None], times,
                                                         stamp, frame_id))
        driver.stream_until(lambda: statuses[name] and statuses[name][-1]["state"] in ("done", "failed", "planned")
                            and abs(statuses[name][-1].get("forecast_stamp", 0) - stamp_ns(stamp) / 1e9) < 1e-6,
                            f"{name}'s plan", 120, logs)
        return statuses[name][-1]

    try:
        pub_pose.publish(conv.pose_stamped(scene["camera"].T_world_cam, n.get_clock().now().to_msg(), "world"))
        driver.stream_until(lambda: all(statuses.values()) and all(p.get_subscription_count() for p in pubs.values()),
                            "both nodes idle", 120, logs)
        end = time.monotonic() + 1.0
        driver.stream_until(lambda: time.monotonic() > end, "a second of frames", 5, logs)
        base_offset = -np.asarray(ROBOT_BASE_M)  # world → fr3_link0 (the base sits at ROBOT_BASE_M in world)

        missing = plan("manip_tf", BASE, base_offset)
        assert missing["state"] == "failed", (missing, logs())
        assert f"no camera pose {BASE} ← {OPTICAL}" in missing["reason"], missing

        reference = plan("manip_topic", "world")
        assert reference["state"] in ("done", "planned"), (reference, logs())
        driver.publish_tf_static()
        planned = plan("manip_tf", BASE, base_offset)
        assert planned["state"] == reference["state"], (planned["reason"], logs())
        for key in ("skill", "steps", "carry_follows_forecast"):
            assert planned[key] == reference[key], key

        driver.distortion_model = "equidistant"
        for _ in range(3):
            driver.send_frame()
        refused = plan("manip_topic", "world")
        assert refused["state"] == "failed" and "model 'equidistant'" in refused["reason"], refused
        assert topic.poll() is None and tf.poll() is None
    finally:
        stop(topic)
        stop(tf)


def test_forecaster_against_fake_franka_as_on_a_real_cell(scene, driver, ros_env, tmp_path):
    """fake_franka (the real cell's names: RealSense topics and QoS, plumb_bob camera_info, the hand-eye on
    /tf_static, no world frame) and the forecaster remapped onto it with TF extrinsics in fr3_link0: the forecast
    starts on the episode's target (the same scene as this test's: place-in-container, seed 110000)."""
    logs = logs_of(tmp_path)
    fake = start_node("molmomotion_ros.nodes.fake_franka_node", "--params-file",
                      str(ROOT / "config" / "fake_franka.yaml"), "-p", "family:=place-in-container",
                      "-p", f"seed:={SEED}", "-p", "camera_rate_hz:=10.0", env=ros_env, log_path=tmp_path / "fake.log")
    camera = "/camera/camera"
    forecaster = start_node("molmomotion_ros.nodes.forecaster_node", "--params-file",
                            str(ROOT / "config" / "forecaster_node.yaml"), "-p", "extrinsics_source:=tf",
                            "-p", f"world_frame:={BASE}", "-p", "torch_threads:=1",
                            "-r", f"camera/color/image_raw:={camera}/color/image_raw",
                            "-r", f"camera/depth/image_raw:={camera}/aligned_depth_to_color/image_raw",
                            "-r", f"camera/color/camera_info:={camera}/color/camera_info",
                            env=ros_env, log_path=tmp_path / "forecaster.log")
    forecasts: list[MultiDOFJointTrajectory] = []
    driver.node.create_subscription(MultiDOFJointTrajectory, "forecast/trajectory", forecasts.append, LATCHED)
    pub_instruction = driver.node.create_publisher(String, "instruction", LATCHED)
    try:
        wait_until(lambda: pub_instruction.get_subscription_count() > 0 or forecaster.poll() is not None, 90,
                   driver.spin, "the forecaster")
        pub_instruction.publish(String(data=scene["instruction"]))
        try:
            wait_until(lambda: forecasts or fake.poll() is not None or forecaster.poll() is not None, 120,
                       driver.spin, "a forecast from fake_franka's camera")
        except TimeoutError as err:
            raise AssertionError(f"{err}\n{logs()}") from None
        assert forecasts, logs()
        assert forecasts[-1].header.frame_id == BASE
        points_t0, _, _ = conv.msg_to_forecast_tracks(forecasts[-1])
        target_in_base = scene["target_center_m"] - np.asarray(ROBOT_BASE_M)
        assert np.linalg.norm(points_t0.mean(0) - target_in_base) < 0.03, (points_t0.mean(0), target_in_base, logs())
    finally:
        stop(forecaster)
        stop(fake)
