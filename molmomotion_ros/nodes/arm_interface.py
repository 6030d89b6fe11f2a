"""The arm side shared by the nodes that move the arm (``manipulation_node``: the forecast-driven planner,
``policy_node``: a learned closed-loop policy), in one place so that each node only adds its own job.

* :class:`ArmCommands`: how the arm is commanded and stopped. Publishes ``arm_controller/joint_trajectory``
  (trajectory_msgs/JointTrajectory; ros2_control's joint_trajectory_controller takes exactly this: remap
  it to your controller's topic) and ``gripper/command`` (std_msgs/Float64, per-finger opening in metres,
  0 = close with force); serves ``~/stop`` (std_srvs/Trigger): an empty JointTrajectory is sent at once
  (a joint_trajectory_controller holds the current position) and no command can follow it until the
  node takes a new request. Deactivating the node stops the arm the same way. The publishers are lifecycle
  publishers: an inactive node commands nothing. Another controller interface (a FollowJointTrajectory
  action client) is another implementation of the same methods.
* :class:`ArmObservations`: what the node holds of the arm and its camera, from ``joint_states``
  (sensor_msgs/JointState), ``camera/pose`` (geometry_msgs/PoseStamped, the optical frame in the world
  frame, reliable + transient-local) and, sensor-data QoS, ``camera/depth/image_raw`` (32FC1 m or 16UC1
  mm), ``camera/color/camera_info`` and optionally ``camera/color/image_raw`` (rgb8/bgr8), the frames
  of the last ``frame_buffer_s`` kept by stamp.
* :class:`StatusReporter`: ``manipulation/status`` (std_msgs/String, JSON, reliable + transient-local:
  ``{"state": idle | planning | executing | done | failed | stopped, "reason", "forecast_stamp",
  "agent", ...}`` on every change, read by the episode runner) and ``/diagnostics``.

The node (a :class:`~.lifecycle.ManagedNode`) builds StatusReporter and ArmCommands at configure (their
publishers) and ArmObservations and ``~/stop`` at activate (subscriptions and service, destroyed at deactivate).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from .. import conversions
from ..conversions.joints import msg_to_joint_positions
from ..robot import ARM_JOINT_NAMES, FINGER_JOINT_NAMES
from ..streams import NS, Frame, FrameStore, stamp_ns
from .lifecycle import ManagedNode

ARM_JOINTS = ARM_JOINT_NAMES  # the default robot (config/robot.yaml)
FINGER_JOINTS = FINGER_JOINT_NAMES
STATUS_TOPIC = "manipulation/status"
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
POLL_S = 0.005  # how often waits look at the clock, the joints and ~/stop


class Stopped(Exception):
    """~/stop was called (or the node is closing) while the node moved the arm."""


class StatusReporter:
    """The JSON status on ``manipulation/status`` and problems on ``/diagnostics``."""

    def __init__(self, node: ManagedNode, agent: str):
        self._node = node
        self.agent = agent  # the status's "agent": who moves the arm (the episode runner records it)
        self._pub_status = node.create_lifecycle_publisher(String, STATUS_TOPIC, LATCHED)

    def status(self, state: str, stamp=None, reason: str = "", **extra) -> None:
        doc = {"state": state, "reason": reason, "agent": self.agent,
               "forecast_stamp": None if stamp is None else stamp_ns(stamp) / NS, **extra}
        self._pub_status.publish(String(data=json.dumps(doc)))

    def diag(self, level: str, stage: str, message: str) -> None:
        self._node.diag(stage, level, message)


class ArmCommands:
    """Arm and gripper commands on topics, and ``~/stop``.

    Every command and a stop's hold go out under one lock, each command after a stop check: a command the
    node's worker built just before a stop can never follow (and so undo) the stop's hold. ``on_stop`` is
    called after ~/stop's hold (the node drops its pending work there).
    """

    def __init__(self, node: ManagedNode, on_stop: Callable[[], None] | None = None):
        self._node = node
        self._on_stop_hook = on_stop
        self._pub_trajectory = node.create_lifecycle_publisher(JointTrajectory, "arm_controller/joint_trajectory", 10)
        self._pub_gripper = node.create_lifecycle_publisher(Float64, "gripper/command", 10)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.stop_reason = ""

    def stop_service(self):
        """``~/stop`` (created at activate, destroyed at deactivate)."""
        return self._node.create_service(Trigger, "~/stop", self._on_stop)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def resume(self) -> None:
        """A new request came after a stop: commands may go out again."""
        self._stopped.clear()

    def check(self) -> None:
        """Raise Stopped when ~/stop came (or the node is closing)."""
        if self._stopped.is_set():
            raise Stopped

    def send_trajectory(self, msg: JointTrajectory) -> None:
        self._send(self._pub_trajectory, msg)

    def send_gripper(self, opening_m: float) -> None:
        self._send(self._pub_gripper, Float64(data=float(opening_m)))

    def _send(self, publisher, msg) -> None:
        """Publish a command unless ~/stop came first (then raise Stopped)."""
        with self._lock:
            self.check()
            publisher.publish(msg)

    def stop(self, reason: str) -> None:
        """Hold the arm where it is now (unless the process is already shutting down); no command goes out
        until :meth:`resume`, and every wait ends with Stopped (``reason`` goes into the status)."""
        with self._lock:
            self.stop_reason = reason
            self._stopped.set()
            if self._node.context.ok():
                self._pub_trajectory.publish(JointTrajectory(joint_names=list(ARM_JOINTS)))  # empty: hold position

    def _on_stop(self, request, response):
        self.stop("stopped by ~/stop")
        if self._on_stop_hook is not None:
            self._on_stop_hook()
        response.success, response.message = True, "stopped: the controller holds the current position"
        return response

    def now_s(self) -> float:
        return self._node.get_clock().now().nanoseconds / NS

    def sleep(self, seconds: float, check: Callable[[], None] | None = None) -> None:
        """Sleep on the node's clock (the simulator's with use_sim_time); ~/stop (and ``check``, which
        raises to interrupt) wake it."""
        end = self.now_s() + seconds
        while self.now_s() < end:
            self.check()
            if check is not None:
                check()
            time.sleep(POLL_S)


class ArmObservations:
    """Joint states, the camera pose and the camera frames of the last ``buffer_s`` of stamps (a
    :class:`~molmomotion_ros.streams.FrameStore`: depth is the primary part, or colour when subscribed; the
    parts of a frame carry the same stamp)."""

    def __init__(self, node: ManagedNode, buffer_s: float, report: Callable[[str, str, str], None],
                 color: bool = False):
        self._report = report  # (level, stage, message) → /diagnostics
        self._lock = threading.Lock()
        self.frames = FrameStore(("color", "depth", "info") if color else ("depth", "info"), window_s=buffer_s)
        self._camera_pose: PoseStamped | None = None
        self._joints: tuple[np.ndarray, np.ndarray] | None = None  # arm (7,), fingers (2,)
        subscriptions = [(Image, "camera/depth/image_raw", self._on_depth, qos_profile_sensor_data),
                         (CameraInfo, "camera/color/camera_info", self._on_info, qos_profile_sensor_data),
                         (PoseStamped, "camera/pose", self._on_pose, LATCHED),
                         (JointState, "joint_states", self._on_joints, 10)]
        if color:
            subscriptions.append((Image, "camera/color/image_raw", self._on_color, qos_profile_sensor_data))
        for msg_type, topic, callback, qos in subscriptions:  # the node destroys them at deactivate
            node.while_active(node.create_subscription(msg_type, topic, callback, qos))

    def set_buffer_s(self, seconds: float) -> None:
        self.frames.set_window(seconds)

    # --- callbacks: convert and store -----------------------------------------------------------------
    def _on_depth(self, msg: Image) -> None:
        try:
            depth = conversions.msg_to_depth_m(msg)
        except conversions.ConversionError as err:
            self._report("WARN", "camera/depth/image_raw", f"depth frame refused: {err}")
            return
        self.frames.add("depth", stamp_ns(msg.header.stamp), depth)

    def _on_color(self, msg: Image) -> None:
        try:
            rgb = conversions.msg_to_rgb(msg)
        except conversions.ConversionError as err:
            self._report("WARN", "camera/color/image_raw", f"colour frame refused: {err}")
            return
        self.frames.add("color", stamp_ns(msg.header.stamp), rgb)

    def _on_info(self, msg: CameraInfo) -> None:
        self.frames.add("info", stamp_ns(msg.header.stamp), msg)

    def _on_pose(self, msg: PoseStamped) -> None:
        with self._lock:
            self._camera_pose = msg

    def _on_joints(self, msg: JointState) -> None:
        try:
            arm, _ = msg_to_joint_positions(msg, ARM_JOINTS)
            fingers, _ = msg_to_joint_positions(msg, FINGER_JOINTS)
        except conversions.ConversionError as err:
            self._report("WARN", "joint_states", f"joint state refused: {err}")
            return
        with self._lock:
            self._joints = (arm, fingers)

    # --- what the node reads ----------------------------------------------------------------------------
    def joints(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(arm (7,), fingers (2,)) positions in rad and m, or None before the first joint_states."""
        with self._lock:
            return self._joints

    def camera_pose(self) -> PoseStamped | None:
        with self._lock:
            return self._camera_pose

    def held(self) -> str:
        """The frames held, in words."""
        n, oldest_ns, newest_ns = self.frames.held()
        return f"{n} frames held, {oldest_ns / NS:.3f}–{newest_ns / NS:.3f} s" if n else "no frames received yet"

    def camera(self, frame: Frame):
        """The frame's :class:`~molmomotion_ros.camera.PinholeCamera` (its camera_info, the camera pose now),
        or a sentence saying why there is none."""
        pose = self.camera_pose()
        if pose is None:
            return "no camera pose received on camera/pose"
        try:
            return conversions.camera_info_to_camera(frame["info"], conversions.pose_to_matrix(pose.pose))
        except conversions.ConversionError as err:
            return f"camera refused: {err}"
