"""The arm side shared by the nodes that move the arm (``manipulation_node``: the forecast-driven planner,
``policy_node``: a learned closed-loop policy), in one place so that each node only adds its own job.

* :class:`ArmCommands`: how the arm is commanded and stopped. Publishes ``arm_controller/joint_trajectory``
  (trajectory_msgs/JointTrajectory; ros2_control's joint_trajectory_controller takes exactly this: remap
  it to your controller's topic) and ``gripper/command`` (std_msgs/Float64, per-finger opening in metres,
  0 = close with force); serves ``~/stop`` (std_srvs/Trigger): an empty JointTrajectory is sent at once
  (a joint_trajectory_controller holds the current position) and no command can follow it until the
  node takes a new request. Deactivating the node stops the arm the same way. The publishers are lifecycle
  publishers: an inactive node commands nothing.
* :class:`ActionArmCommands` (``arm_interface: action``): the same methods over control_msgs actions, as
  ros2_control's joint_trajectory_controller, MoveIt and franka_gripper are driven: a trajectory is a
  FollowJointTrajectory goal on ``arm_action`` and a gripper command a GripperCommand goal on
  ``gripper_action``; each waits for its RESULT. A rejected goal, an aborted result (its error_code and
  error_string) or no result in time raises :class:`ArmFailure` (the node ends the sequence "failed" with
  that reason); ``~/stop`` and deactivate cancel the active goals at once (the controller holds where the arm
  is) and no goal goes out until the node takes a new request. :func:`make_arm_commands` picks one from the
  node's parameters (node_specs.manipulation.ARM_PARAMETERS).
* :class:`ArmObservations`: what the node holds of the arm and its camera, from ``joint_states``
  (sensor_msgs/JointState), ``camera/pose`` (geometry_msgs/PoseStamped, the optical frame in the world
  frame, reliable + transient-local) and, sensor-data QoS, ``camera/depth/image_raw`` (32FC1 m or 16UC1
  mm), ``camera/color/camera_info`` and optionally ``camera/color/image_raw`` (rgb8/bgr8), the frames
  of the last ``frame_buffer_s`` kept by stamp. Joints are read by the ``arm_joint_names`` and
  ``finger_joint_names`` parameters and handed on in that (the robot's, planning's) order; a JointState without
  the finger joints (franka_ros2's arm topic) is accepted: the fingers then come from ``gripper_joint_states``
  when set, else from the last gripper command's outcome (:attr:`ArmCommands.finger_opening_m`).
* :class:`StatusReporter`: ``manipulation/status`` (std_msgs/String, JSON, reliable + transient-local:
  ``{"state": idle | planning | planned | executing | done | failed | stopped, "reason", "forecast_stamp",
  "agent", ...}`` on every change, read by the episode runner; "planned" = a dry run's plan waiting for
  ``~/execute``, "done" = executed) and ``/diagnostics``.

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
from ..conversions.joints import duration_msg, msg_to_joint_positions
from ..robot import ARM_JOINT_NAMES, FINGER_JOINT_NAMES, GRIPPER_OPEN_M
from ..streams import NS, Frame, FrameStore, stamp_ns
from ..transforms import TransformError
from .lifecycle import ManagedNode
from .runtime import StartupError
from .tf_listener import make_tf_lookup

ARM_JOINTS = ARM_JOINT_NAMES  # the default robot (config/robot.yaml)
FINGER_JOINTS = FINGER_JOINT_NAMES
STATUS_TOPIC = "manipulation/status"
FORECAST_STATUS_TOPIC = "forecast/status"
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
POLL_S = 0.005  # how often waits look at the clock, the joints and ~/stop


class Stopped(Exception):
    """~/stop was called (or the node is closing) while the node moved the arm."""


class ArmFailure(Exception):
    """The controller refused or aborted a command (the message is the reason, for manipulation/status)."""


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

    def relay_forecaster(self) -> None:
        """While the node is active: an instruction the forecaster refused, or could not forecast for, ends
        "failed" here with the forecaster's reason, so manipulation/status tells the operator why nothing moves.
        Volatile: a status latched before this node was active belongs to an earlier instruction."""
        self._node.while_active(self._node.create_subscription(String, FORECAST_STATUS_TOPIC, self._on_forecast_status,
                                                               RELIABLE))

    def _on_forecast_status(self, msg: String) -> None:
        try:
            status = json.loads(msg.data)
        except ValueError:
            return
        if status.get("state") in ("refused", "failed"):
            self.status("failed", reason=f"forecaster: {status.get('reason', '')}",
                        instruction=status.get("instruction", ""), source="forecaster")


class ArmCommands:
    """Arm and gripper commands on topics, and ``~/stop``.

    Every command and a stop's hold go out under one lock, each command after a stop check: a command the
    node's worker built just before a stop can never follow (and so undo) the stop's hold. ``on_stop`` is
    called after ~/stop's hold (the node drops its pending work there).
    """

    waits_for_result = False  # send_trajectory returns at once: the node watches the joints arrive

    def __init__(self, node: ManagedNode, on_stop: Callable[[], None] | None = None,
                 arm_joint_names=ARM_JOINTS):
        self._node = node
        self._on_stop_hook = on_stop
        self.arm_joint_names = list(arm_joint_names)  # the names trajectories carry (the robot's order)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.stop_reason = ""
        # Per finger, m: the last gripper command's outcome (its opening; an action's result width / 2). Where
        # no JointState has the fingers, this is what the node reads as their position; before any command the
        # hand is taken to be open (as every episode starts).
        self.finger_opening_m = GRIPPER_OPEN_M
        self._create_interfaces()

    def _create_interfaces(self) -> None:
        self._pub_trajectory = self._node.create_lifecycle_publisher(JointTrajectory,
                                                                     "arm_controller/joint_trajectory", 10)
        self._pub_gripper = self._node.create_lifecycle_publisher(Float64, "gripper/command", 10)

    def close(self) -> None:
        """Release what the constructor created besides lifecycle publishers (the node destroys those)."""

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

    def send_trajectory(self, msg: JointTrajectory, timeout_s: float | None = None,
                        goal_tolerance_rad: float = 0.0, goal_time_s: float = 0.0,
                        check: Callable[[], None] | None = None) -> None:
        """Publish ``msg`` (returns at once; the other arguments are the action interface's)."""
        self._send(self._pub_trajectory, msg)

    def send_gripper(self, opening_m: float) -> None:
        """Command each finger's opening (m; 0 = close with force)."""
        self._send(self._pub_gripper, Float64(data=float(opening_m)))
        self.finger_opening_m = float(opening_m)

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
                self._hold()

    def _hold(self) -> None:
        """(Under the lock) stop the arm where it is."""
        self._pub_trajectory.publish(JointTrajectory(joint_names=self.arm_joint_names))  # empty: hold position

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


# control_msgs/action/FollowJointTrajectory Result.error_code names, for the status's reason.
FJT_ERRORS = {0: "SUCCESSFUL", -1: "INVALID_GOAL", -2: "INVALID_JOINTS", -3: "OLD_HEADER_TIMESTAMP",
              -4: "PATH_TOLERANCE_VIOLATED", -5: "GOAL_TOLERANCE_VIOLATED"}


class GoalStatus:
    """action_msgs/msg/GoalStatus's status values that a result carries (fixed by the message definition; rclpy
    brings action_msgs with its actions, test_arm_actions checks these against it)."""

    STATUS_SUCCEEDED = 4
    STATUS_CANCELED = 5
    STATUS_ABORTED = 6


GRIPPER_TIMEOUT_S = 10.0  # s (node clock) for a GripperCommand's result (franka_gripper: width / speed + 2 s)
GRASP_MIN_WIDTH_M = 0.001  # a grasp stopped at least this much wider than commanded has an object in the hand
RESULT_MARGIN_S = 5.0  # s (node clock) past a trajectory's end to wait for its result without our own limit


class ActionArmCommands(ArmCommands):
    """The arm commands over control_msgs actions (``arm_interface: action``).

    A trajectory goes out as one FollowJointTrajectory goal and :meth:`send_trajectory` returns with its
    SUCCEEDED result; a gripper command is one GripperCommand goal, :meth:`send_gripper` returns with its
    result. Goals are sent under the lock after a stop check, and a goal whose acceptance arrives after a stop is
    cancelled on arrival, so a stop is never undone by a goal in flight. ``stop`` cancels the active goals
    (cancel_goal_async: joint_trajectory_controller then holds the current position, franka_gripper stops the
    fingers); the wait then ends at once with :class:`Stopped` (not waiting for the cancel's answer: deactivate
    joins the worker on the executor's thread)."""

    waits_for_result = True

    def __init__(self, node: ManagedNode, on_stop: Callable[[], None] | None = None,
                 arm_joint_names=ARM_JOINTS, arm_action: str = "arm_controller/follow_joint_trajectory",
                 gripper_action: str = "gripper/gripper_action", gripper_max_effort_n: float = 40.0):
        self.arm_action, self.gripper_action = arm_action, gripper_action
        self.max_effort_n = float(gripper_max_effort_n)
        self._active: dict[str, object] = {}  # "arm" / "gripper" → the accepted goal's ClientGoalHandle
        super().__init__(node, on_stop, arm_joint_names)

    def _create_interfaces(self) -> None:
        from control_msgs.action import FollowJointTrajectory, GripperCommand
        from rclpy.action import ActionClient

        self._fjt, self._gc = FollowJointTrajectory, GripperCommand
        self._arm_client = ActionClient(self._node, FollowJointTrajectory, self.arm_action)
        self._gripper_client = ActionClient(self._node, GripperCommand, self.gripper_action)

    def close(self) -> None:
        self._arm_client.destroy()
        self._gripper_client.destroy()

    def wait_for_servers(self, timeout_s: float) -> None:
        """Raise StartupError naming each action whose server did not appear within ``timeout_s`` wall s
        (a graph query: needs no executor, so it works in configure)."""
        deadline = time.monotonic() + timeout_s
        clients = {self.arm_action: self._arm_client, self.gripper_action: self._gripper_client}
        while True:
            missing = [name for name, client in clients.items() if not client.server_is_ready()]
            if not missing or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        if missing:
            resolved = [self._node.resolve_topic_name(name) for name in missing]
            raise StartupError(f"{self._node.get_name()}: no action server for {', '.join(resolved)} within "
                               f"{timeout_s} s (arm_interface = action: start the controllers, or set arm_action / "
                               "gripper_action)")

    # --- commands ---------------------------------------------------------------------------------------
    def send_trajectory(self, msg: JointTrajectory, timeout_s: float | None = None,
                        goal_tolerance_rad: float = 0.0, goal_time_s: float = 0.0,
                        check: Callable[[], None] | None = None) -> None:
        """Send ``msg`` as a FollowJointTrajectory goal and wait for its result (node clock, ``timeout_s`` or the
        trajectory's duration + RESULT_MARGIN_S; then the goal is cancelled). ``goal_tolerance_rad`` > 0 sets
        each joint's goal tolerance and ``goal_time_s`` > 0 the goal_time_tolerance (0 = the controller's own, as
        control_msgs/JointTolerance defines); ``check`` is called while waiting and may raise to stop waiting (the goal
        runs on, as a published trajectory would). Raises ArmFailure (rejected, aborted, no result in time) or
        Stopped."""
        goal = self._fjt.Goal(trajectory=msg)
        if goal_tolerance_rad > 0:
            from control_msgs.msg import JointTolerance

            goal.goal_tolerance = [JointTolerance(name=name, position=float(goal_tolerance_rad))
                                   for name in msg.joint_names]
        if goal_time_s > 0:
            goal.goal_time_tolerance = duration_msg(goal_time_s)
        duration_s = msg.points[-1].time_from_start.sec + msg.points[-1].time_from_start.nanosec / NS \
            if msg.points else 0.0
        limit_s = timeout_s if timeout_s is not None else duration_s + RESULT_MARGIN_S
        response = self._run("arm", self._arm_client, self.arm_action, goal, limit_s, check)
        result = response.result
        if response.status != GoalStatus.STATUS_SUCCEEDED:
            code = int(result.error_code)
            raise ArmFailure(f"{self.arm_action}: the controller ended the trajectory "
                             f"{_status_name(response.status)} (error_code {code} {FJT_ERRORS.get(code, '?')}): "
                             f"{result.error_string or 'no error_string'}")

    def send_gripper(self, opening_m: float) -> None:
        """One GripperCommand goal; returns when the hand is done.

        ``command.position`` is each finger's opening in m (franka_gripper moves to the width 2 * position; 0
        = grasp with ``max_effort`` N), the same quantity as the topic interface's Float64. franka_gripper's
        result reports the hand's *width*. A closing command that ends unreached (franka_gripper aborts with
        reached_goal false when the grasp width is outside its epsilons) with the fingers stopped wider than
        commanded has an object between the fingers: that is the grasp holding it, not a failure (what a
        parallel gripper's GripperCommand means by ``stalled``). An opening command that ends unreached, or a
        closing one stopped narrower than commanded, is a failure."""
        goal = self._gc.Goal()
        goal.command.position, goal.command.max_effort = float(opening_m), self.max_effort_n
        response = self._run("gripper", self._gripper_client, self.gripper_action, goal, GRIPPER_TIMEOUT_S)
        result = response.result
        held, problem = gripper_outcome(response.status, bool(result.reached_goal), bool(result.stalled),
                                        float(result.position), float(opening_m))
        if held is not None:
            self.finger_opening_m = held / 2
        if problem:
            raise ArmFailure(f"{self.gripper_action}: {problem}")
        if held is not None and not result.reached_goal:
            self._node.get_logger().info(f"grasp: the fingers stopped at {held * 1000:.1f} mm on an object")

    def _run(self, key: str, client, name: str, goal, limit_s: float, check: Callable[[], None] | None = None):
        """Send ``goal`` (after a stop check, under the lock) and wait for acceptance and the result; the result
        response (status, result). Raises Stopped, or ArmFailure when rejected or without a result within
        ``limit_s`` (node clock; the goal is cancelled then)."""
        with self._lock:
            self.check()
            if not client.server_is_ready():
                raise ArmFailure(f"no action server for {name}")
            sent = client.send_goal_async(goal)
        # The accepted goal becomes the active one on the executor's thread, under the lock, when its acceptance
        # arrives — or is cancelled then, when a stop came first (this thread has left with Stopped by then).
        sent.add_done_callback(lambda future: self._on_accepted(key, future))
        start = self.now_s()
        self._wait(sent.done, start, limit_s, name, "acceptance of the goal")
        handle = sent.result()
        if handle is None or not handle.accepted:
            raise ArmFailure(f"{name}: the goal was rejected by the server (its log says why; the joints sent were "
                             f"{list(getattr(goal, 'trajectory', JointTrajectory()).joint_names) or 'n/a'})")
        try:
            result = handle.get_result_async()
            self._wait(result.done, start, limit_s, name, "result", handle, check)
            return result.result()
        finally:
            with self._lock:
                if self._active.get(key) is handle:
                    del self._active[key]

    def _on_accepted(self, key: str, sent) -> None:
        handle = sent.result()
        if handle is not None and handle.accepted:
            with self._lock:
                if self._stopped.is_set():
                    handle.cancel_goal_async()
                else:
                    self._active[key] = handle  # stop() cancels it from now on

    def _wait(self, done: Callable[[], bool], start_s: float, limit_s: float, name: str, what: str,
              handle=None, check: Callable[[], None] | None = None) -> None:
        while not done():
            self.check()
            if check is not None:
                check()
            if self.now_s() - start_s > limit_s:
                if handle is not None:
                    handle.cancel_goal_async()
                raise ArmFailure(f"{name}: no {what} within {limit_s:.1f} s (goal cancelled)")
            time.sleep(POLL_S)

    def _hold(self) -> None:
        """(Under the lock) cancel the active goals: the controller holds where the arm is."""
        for handle in self._active.values():
            handle.cancel_goal_async()


def gripper_outcome(status: int, reached_goal: bool, stalled: bool, width_m: float, opening_m: float
                    ) -> tuple[float | None, str | None]:
    """How a GripperCommand to each finger's ``opening_m`` ended, from its result (franka_gripper reports the
    hand's *width*): (the width now held, or None when unknown; None, or why it failed).

    Succeeded or reached_goal: done. Aborted with the fingers stopped wider than commanded (by more than
    GRASP_MIN_WIDTH_M), or ``stalled``: an object stopped the closing fingers — franka_gripper's grasp ends
    unreached when the width is outside its epsilons around the commanded one — so the hand holds it: done.
    Anything else (an opening blocked short of its width, an out-of-range command, cancelled) failed."""
    commanded_m = 2 * opening_m
    if status == GoalStatus.STATUS_SUCCEEDED or reached_goal:
        return width_m, None
    if status == GoalStatus.STATUS_ABORTED and (stalled or width_m > commanded_m + GRASP_MIN_WIDTH_M):
        return width_m, None  # holding an object this wide
    return (width_m if status == GoalStatus.STATUS_ABORTED else None,
            f"the gripper command (width {commanded_m * 1000:.1f} mm) ended {_status_name(status)} at width "
            f"{width_m * 1000:.1f} mm")


def _status_name(status: int) -> str:
    return {GoalStatus.STATUS_SUCCEEDED: "succeeded", GoalStatus.STATUS_ABORTED: "aborted",
            GoalStatus.STATUS_CANCELED: "canceled"}.get(status, f"with status {status}")


def make_arm_commands(node: ManagedNode, params: dict, on_stop: Callable[[], None] | None = None) -> ArmCommands:
    """The arm commands the node's parameters ask for (``arm_interface`` and the rest of ARM_PARAMETERS); with
    the action interface, wait up to ``action_server_timeout_s`` for both servers (StartupError naming the
    missing ones, so that configure fails with the reason)."""
    names = check_joint_names(params)
    if params["arm_interface"] == "topic":
        return ArmCommands(node, on_stop, names[0])
    arm = ActionArmCommands(node, on_stop, names[0], params["arm_action"], params["gripper_action"],
                            params["gripper_max_effort_n"])
    try:
        arm.wait_for_servers(params["action_server_timeout_s"])
    except StartupError:
        arm.close()
        raise
    return arm


def check_joint_names(params: dict) -> tuple[list[str], list[str]]:
    """(arm, finger) joint names from the parameters; StartupError unless 7 + 2 distinct non-empty names."""
    arm, fingers = list(params["arm_joint_names"]), list(params["finger_joint_names"])
    if len(arm) != len(ARM_JOINTS) or len(fingers) != len(FINGER_JOINTS):
        raise StartupError(f"arm_joint_names needs {len(ARM_JOINTS)} names and finger_joint_names "
                           f"{len(FINGER_JOINTS)} (got {len(arm)} and {len(fingers)})")
    if len(set(arm + fingers)) != len(arm) + len(fingers) or not all(arm + fingers):
        raise StartupError(f"arm_joint_names and finger_joint_names must be distinct and non-empty: {arm + fingers}")
    return arm, fingers


class ArmObservations:
    """Joint states, the camera pose and the camera frames of the last ``buffer_s`` of stamps (a
    :class:`~molmomotion_ros.streams.FrameStore`: depth is the primary part, or colour when subscribed; the
    parts of a frame carry the same stamp).

    The camera pose comes from ``camera/pose`` (``extrinsics = "topic"``: the newest pose holds) or from TF
    (``"tf"``: ``world_frame`` ← ``camera_frame``, or the camera_info's frame_id, at the frame's stamp, waiting
    up to ``tf_timeout_s``; :mod:`.tf_listener`)."""

    def __init__(self, node: ManagedNode, buffer_s: float, report: Callable[[str, str, str], None],
                 color: bool = False, arm_joint_names=ARM_JOINTS, finger_joint_names=FINGER_JOINTS,
                 gripper_joint_states: str = "", finger_fallback: Callable[[], float] | None = None,
                 extrinsics: str = "topic", world_frame: str = "world", camera_frame: str = "",
                 tf_timeout_s: float = 0.2):
        self._world_frame, self._camera_frame, self._tf_timeout_s = world_frame, camera_frame, tf_timeout_s
        self._tf = make_tf_lookup(node) if extrinsics == "tf" else None
        self._report = report  # (level, stage, message) → /diagnostics
        self._lock = threading.Lock()
        self._arm_names, self._finger_names = list(arm_joint_names), list(finger_joint_names)
        # Where joint_states lacks the fingers: the newest from gripper_joint_states, else finger_fallback()
        # (per finger, m; the last gripper command's outcome), else open.
        self._finger_fallback = finger_fallback or (lambda: GRIPPER_OPEN_M)
        self._gripper_fingers: np.ndarray | None = None
        self.frames = FrameStore(("color", "depth", "info") if color else ("depth", "info"), window_s=buffer_s)
        self._camera_pose: PoseStamped | None = None
        self._joints: tuple[np.ndarray, np.ndarray] | None = None  # arm (7,), fingers (2,)
        # Receipt time (node clock) of the newest joint_states: its age tells a silent driver (the stamps may
        # come from another machine's clock).
        self._clock = node.get_clock()
        self._joints_received_ns: int | None = None
        subscriptions = [(Image, "camera/depth/image_raw", self._on_depth, qos_profile_sensor_data),
                         (CameraInfo, "camera/color/camera_info", self._on_info, qos_profile_sensor_data),
                         (JointState, "joint_states", self._on_joints, 10)]
        if self._tf is None:
            subscriptions.append((PoseStamped, "camera/pose", self._on_pose, LATCHED))
        if color:
            subscriptions.append((Image, "camera/color/image_raw", self._on_color, qos_profile_sensor_data))
        if gripper_joint_states:
            subscriptions.append((JointState, gripper_joint_states, self._on_gripper_joints, 10))
        for msg_type, topic, callback, qos in subscriptions:  # the node destroys them at deactivate
            node.while_active(node.create_subscription(msg_type, topic, callback, qos))

    def set_buffer_s(self, seconds: float) -> None:
        self.frames.set_window(seconds)

    def close(self) -> None:
        """Release the TF listener (at deactivate; the subscriptions go with the node's while_active ones)."""
        if self._tf is not None:
            self._tf.close()
            self._tf = None

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
            arm, _ = msg_to_joint_positions(msg, self._arm_names)
            fingers = None
            if all(name in msg.name for name in self._finger_names):
                fingers, _ = msg_to_joint_positions(msg, self._finger_names)
        except conversions.ConversionError as err:
            self._report("WARN", "joint_states", f"joint state refused: {err}")
            return
        with self._lock:
            if fingers is None:  # franka_ros2's arm topic: the fingers are published by the gripper's node
                fingers = self._gripper_fingers
            if fingers is None:
                fingers = np.full(len(self._finger_names), float(self._finger_fallback()))
            self._joints = (arm, fingers)
            self._joints_received_ns = self._clock.now().nanoseconds

    def _on_gripper_joints(self, msg: JointState) -> None:
        try:
            fingers, _ = msg_to_joint_positions(msg, self._finger_names)
        except conversions.ConversionError as err:
            self._report("WARN", "gripper_joint_states", f"finger joint state refused: {err}")
            return
        with self._lock:
            self._gripper_fingers = fingers
            if self._joints is not None:
                self._joints = (self._joints[0], fingers)

    # --- what the node reads ----------------------------------------------------------------------------
    def joints(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(arm (7,), fingers (2,)) positions in rad and m, or None before the first joint_states."""
        with self._lock:
            return self._joints

    def joints_age_s(self) -> float | None:
        """s (node clock) since the newest joint_states arrived, or None before the first."""
        with self._lock:
            received_ns = self._joints_received_ns
        return None if received_ns is None else (self._clock.now().nanoseconds - received_ns) / NS

    def camera_pose(self) -> PoseStamped | None:
        with self._lock:
            return self._camera_pose

    def held(self) -> str:
        """The frames held, in words."""
        n, oldest_ns, newest_ns = self.frames.held()
        return f"{n} frames held, {oldest_ns / NS:.3f}–{newest_ns / NS:.3f} s" if n else "no frames received yet"

    def camera_pose_at(self, frame: Frame) -> np.ndarray | str:
        """T_world_cam for ``frame`` (topic: the newest camera/pose; tf: at the frame's stamp), or a sentence
        saying why there is none. With TF this may wait up to tf_timeout_s: call it from a worker thread."""
        if self._tf is None:
            pose = self.camera_pose()
            if pose is None:
                return "no camera pose received on camera/pose"
            try:
                return conversions.pose_to_matrix(pose.pose)
            except conversions.ConversionError as err:
                return f"camera pose refused: {err}"
        info = frame["info"]
        camera_frame = self._camera_frame or (info.header.frame_id if info is not None else "")
        if not camera_frame:
            return "no camera frame to look up in TF (camera_frame is empty and camera_info has no frame_id)"
        try:
            return self._tf.lookup(self._world_frame, camera_frame, frame.stamp_ns, self._tf_timeout_s)
        except TransformError as err:
            return f"no camera pose {self._world_frame} ← {camera_frame} in TF at {frame.stamp_ns / NS:.3f} s: {err}"

    def view(self, frame: Frame):
        """(camera, depth_m, rgb or None) of a complete frame, rectified when its camera_info has plumb_bob
        distortion (the camera is then the pinhole of the same K), the camera posed by :meth:`camera_pose_at`;
        or a sentence saying why there is none."""
        try:
            camera, rectifier = conversions.camera_info_to_rectified(frame["info"])
        except conversions.ConversionError as err:
            return f"camera refused: {err}"
        depth, rgb = frame["depth"], frame["color"] if "color" in frame.parts else None
        if depth.shape != (camera.height, camera.width):
            return (f"camera_info is {camera.width}x{camera.height} but the depth frame is "
                    f"{depth.shape[1]}x{depth.shape[0]}")
        if rectifier is not None:
            depth = rectifier.depth(depth)
            rgb = rectifier.rgb(rgb) if rgb is not None else None
        T_world_cam = self.camera_pose_at(frame)
        if isinstance(T_world_cam, str):
            return T_world_cam
        return camera.with_pose(T_world_cam), depth, rgb

    def camera(self, frame: Frame):
        """The frame's :class:`~molmomotion_ros.camera.PinholeCamera` (its camera_info, the camera pose now),
        or a sentence saying why there is none (distorted images are refused: see :meth:`view`)."""
        pose = self.camera_pose()
        if pose is None:
            return "no camera pose received on camera/pose"
        try:
            return conversions.camera_info_to_camera(frame["info"], conversions.pose_to_matrix(pose.pose))
        except conversions.ConversionError as err:
            return f"camera refused: {err}"
