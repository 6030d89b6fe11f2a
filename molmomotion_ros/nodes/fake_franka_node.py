"""fake_franka: the PyBullet Panda behind exactly the interfaces a real Franka cell exposes.

A cell brought up with franka_ros2 (Jazzy, ``franka.launch.py robot_type:=fr3 load_gripper:=true``) and
realsense2_camera (``rs_launch.py align_depth.enable:=true``) offers the names below; this node offers
the same names, types, QoS and semantics from the simulator, so a graph written for the cell runs
unchanged against it (names relative to the node's namespace unless absolute; defaults of the parameters
``robot``, ``arm_controller``, ``gripper_node``, ``camera_namespace``, ``camera_name``):

- ``fr3_arm_controller/follow_joint_trajectory``: control_msgs/action/FollowJointTrajectory on node
  ``/fr3_arm_controller``, rclcpp_action's default QoS, joint_trajectory_controller's semantics; and the
  controller's topic ``fr3_arm_controller/joint_trajectory`` (trajectory_msgs/JointTrajectory, system default QoS).
- ``franka_gripper/gripper_action``: control_msgs/action/GripperCommand on node ``/franka_gripper``, with
  ``franka_gripper/joint_states`` (sensor_msgs/JointState of the fingers, reliable keep-last-1, 15 Hz) and
  ``franka_gripper/stop`` (std_srvs/Trigger).
- ``franka/joint_states``: the arm's joints (joint_state_broadcaster, system default QoS); ``joint_states``: arm and
  fingers merged (joint_state_publisher, reliable depth 10, 30 Hz) — robot_state_publisher's input.
- ``/tf`` (depth 100) and ``/tf_static`` (transient local, keep last 1): tf2_msgs/TFMessage, tf2_ros's QoS.
- ``camera/camera/color/image_raw`` (sensor_msgs/Image rgb8) and ``camera/camera/aligned_depth_to_color/image_raw``
  (16UC1 millimetres, 0 = no return), realsense2_camera's image QoS (system default); ``.../color/camera_info``
  and ``.../aligned_depth_to_color/camera_info`` (plumb_bob with the ``distortion`` parameter, D ≠ 0; default QoS,
  reliable depth 10), all on node ``/camera/camera`` and published only while subscribed, as the camera does.

TF: ``base`` → ``fr3_link0`` → … → ``fr3_link7`` → ``fr3_link8`` → ``fr3_hand`` → ``fr3_hand_tcp`` (and the two
fingers), as robot_state_publisher publishes franka_description; ``camera_link`` → ``camera_color_frame`` →
``camera_color_optical_frame`` (and the depth frames), as realsense2_camera does; and ``fr3_link0`` →
``camera_link`` from the ``hand_eye`` parameter, on its own latched publisher, as a hand-eye calibration tool
adds it. There is no ``world`` frame. The simulated robot is the PyBullet Panda; only names differ.

The simulator's own controls (not on a real cell): ``~/reset`` and ``~/success`` (std_srvs/Trigger, JSON
message, as sim_node's) and ``/clock`` with ``clock:=sim``.

Fault injection (parameters, changeable at runtime, each ending when set back; node_specs/fake_franka.py):
``fault_push_rad`` drives joint 1 off the commanded path ``fault_push_after_s`` into every arm goal (with a path
tolerance set, the goal aborts with PATH_TOLERANCE_VIOLATED mid-way); ``fault_stop_joint_states`` stops all three
joint state topics (stale joints); ``fault_stop_tf`` stops ``/tf``; ``fault_hand_eye_missing`` withdraws the
hand-eye static transform (a node that joins later never gets it: TF missing); ``fault_distortion_model``
publishes camera_info with another distortion model.

Semantics: the arm's action and topic follow joint_trajectory_controller (sim/franka_driver.py says what
exactly, and where the fake refuses more); the hand follows franka_gripper (``command.position`` is one
finger's opening, the width is twice it; result and feedback report the *width*; ``stalled`` is never set).

Threads: the World is touched only by the simulation thread. The action servers, the topic and the gripper's
stop service live on their own nodes (named as on the cell) in a multi-threaded executor, since an action
goal's execute callback waits for its end; they hand the simulation closures through a queue, as the main
node's services do.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import rclpy
from control_msgs.action import FollowJointTrajectory, GripperCommand
from geometry_msgs.msg import TransformStamped
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_system_default,
)
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from molmomotion_sim.franka_driver import (
    HAND_SAME_WIDTH_M,
    INVALID_GOAL,
    FrankaHandEmulation,
    FrankaNames,
    GoalRejected,
    SegmentTolerances,
    ToleranceRequest,
    TrajectoryControllerEmulation,
    TrajectoryPoint,
    base_in_world,
    camera_transforms,
    goal_tolerances,
    optical_rotation,
    robot_transforms,
    validate_trajectory,
)
from molmomotion_sim.seeds import SeedRangeError, split_of
from molmomotion_sim.suites import SuiteError
from molmomotion_sim.tasks import TASKS, SceneError
from molmomotion_sim.world import ARM_JOINTS, FINGER_JOINTS, PHYSICS_HZ, World

from ..camera import PinholeCamera
from ..conversions.errors import ConversionError
from ..conversions.images import depth_to_msg, rgb_to_msg
from ..conversions.joints import duration_msg, duration_to_s, time_msg, time_to_s
from ..conversions.poses import matrix_to_transform, xyz_quat_to_matrix
from ..distortion import DistortedView, DistortionError, PlumbBob
from ..node_specs.fake_franka import FAKE_FRANKA
from ..paths import config_path
from ..planning.limits import JointLimits
from .params import declare_parameters
from .runtime import StartupError, run_node
from .sim_node import MAX_LAG_S, SERVICE_TIMEOUT_S, ResetError, _Schedule, _suite_options

# tf2_ros's publishers: TransformBroadcaster (depth 100) and StaticTransformBroadcaster (latched, keep last 1).
TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
TF_STATIC_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)
JOINT_STATE_PUBLISHER_QOS = 10  # joint_state_publisher: depth 10, reliable, volatile
GRIPPER_STATE_QOS = 1  # franka_gripper: create_publisher("~/joint_states", 1)
CAMERA_INFO_QOS = 10  # realsense2_camera's info QoS "DEFAULT"
CLOCK_RATE_HZ = 100.0  # /clock with clock:=sim
# Threads of the drivers' executor: an arm goal, a gripper goal and a preempted goal's last moments wait at most;
# the rest answer goal, cancel and result requests, the stop service and the topic.
ACTION_THREADS = 6


SLOW_PACE = 0.9  # a simulation below this fraction of its real-time factor over PACE_WINDOW_S is reported
PACE_WINDOW_S = 5.0


@dataclass
class _Pace:
    """Simulated seconds per wall second, measured over windows of PACE_WINDOW_S."""

    wall_s: float
    sim_s: float

    def update(self, wall_s: float, sim_s: float) -> float | None:
        """The pace of the window that ends now, or None while it lasts."""
        if wall_s - self.wall_s < PACE_WINDOW_S:
            return None
        pace = (sim_s - self.sim_s) / (wall_s - self.wall_s)
        self.wall_s, self.sim_s = wall_s, sim_s
        return pace


@dataclass
class _Goal:
    """An accepted action goal as the simulation thread sees it: ``end`` is set when it ends."""

    handle: object
    done: threading.Event = field(default_factory=threading.Event)
    end: object = None


def _transform(parent: str, child: str, T: np.ndarray, stamp) -> TransformStamped:
    msg = TransformStamped(transform=matrix_to_transform(T))
    msg.header.stamp, msg.header.frame_id, msg.child_frame_id = stamp, parent, child
    return msg


class FakeFrankaNode(Node):
    def __init__(self, **kwargs):
        super().__init__(FAKE_FRANKA.name, **kwargs)
        self._params = declare_parameters(self, FAKE_FRANKA, on_change=self._on_parameter)
        p = self._params
        self._names = FrankaNames(p["robot"])
        self._sim_clock = p["clock"] == "sim"
        self._view = self._camera_view()
        self._world = World(camera=self._view.camera)
        self._limits = JointLimits.from_yaml()
        self._arm = TrajectoryControllerEmulation(self._names.arm_joints, self._default_tolerances(),
                                                  1.0 / PHYSICS_HZ)
        self._hand = FrankaHandEmulation(speed_m_s=p["gripper_speed_m_s"], epsilon_inner_m=p["grasp_epsilon_inner_m"],
                                         epsilon_outer_m=p["grasp_epsilon_outer_m"],
                                         default_grasp_force_n=p["grasp_force_n"])
        self._task = None
        self._episode: dict | None = None
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._clock_base_s = 0.0
        self._state = self._read_state()  # (q, qd, effort) of the 9 joints, replaced (never mutated) per step

        # joint_state_publisher, joint_state_broadcaster, robot_state_publisher (and the calibration tool).
        self._joint_pub = self.create_publisher(JointState, "joint_states", JOINT_STATE_PUBLISHER_QOS)
        self._arm_joint_pub = self.create_publisher(JointState, "franka/joint_states", qos_profile_system_default)
        self._tf_pub = self.create_publisher(TFMessage, "/tf", TF_QOS)
        self._robot_static_pub = self.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
        self._hand_eye_pub = None  # created while the hand-eye transform is published (fault_hand_eye_missing)
        self._pushed_goal, self._push_from_s = None, 0.0  # the arm goal fault_push_rad pushes, and from when
        self._clock_pub = self.create_publisher(Clock, "/clock", 10) if self._sim_clock else None
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_service(Trigger, "~/success", self._on_success)

        # The drivers' own nodes: joint_trajectory_controller, franka_gripper, realsense2_camera.
        namespace = self.get_namespace()
        child = {"context": self.context, "use_global_arguments": False, "start_parameter_services": False}
        self._arm_node = rclpy.create_node(p["arm_controller"], namespace=namespace, **child)
        self._gripper_node = rclpy.create_node(p["gripper_node"], namespace=namespace, **child)
        camera_ns = namespace.rstrip("/") + "/" + p["camera_namespace"]
        self._camera_node = rclpy.create_node(p["camera_name"], namespace=camera_ns, **child)
        group = ReentrantCallbackGroup()
        self._arm_server = ActionServer(
            self._arm_node, FollowJointTrajectory, "~/follow_joint_trajectory", self._execute_arm,
            goal_callback=self._on_arm_goal, cancel_callback=lambda _: CancelResponse.ACCEPT, callback_group=group)
        self._arm_node.create_subscription(JointTrajectory, "~/joint_trajectory", self._on_arm_topic,
                                           qos_profile_system_default, callback_group=group)
        self._gripper_server = ActionServer(
            self._gripper_node, GripperCommand, "~/gripper_action", self._execute_gripper,
            goal_callback=lambda _: GoalResponse.ACCEPT, cancel_callback=lambda _: CancelResponse.ACCEPT,
            callback_group=group)
        self._gripper_joint_pub = self._gripper_node.create_publisher(JointState, "~/joint_states", GRIPPER_STATE_QOS)
        self._gripper_node.create_service(Trigger, "~/stop", self._on_gripper_stop, callback_group=group)
        self._color_pub = self._camera_node.create_publisher(Image, "~/color/image_raw", qos_profile_system_default)
        self._depth_pub = self._camera_node.create_publisher(Image, "~/aligned_depth_to_color/image_raw",
                                                             qos_profile_system_default)
        self._color_info_pub = self._camera_node.create_publisher(CameraInfo, "~/color/camera_info", CAMERA_INFO_QOS)
        self._depth_info_pub = self._camera_node.create_publisher(CameraInfo, "~/aligned_depth_to_color/camera_info",
                                                                  CAMERA_INFO_QOS)
        self._camera_static_pub = self._camera_node.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
        self._publish_static_transforms()

        self._schedules = {
            "camera": _Schedule(1.0 / p["camera_rate_hz"]),
            "arm_joints": _Schedule(1.0 / p["arm_joint_state_rate_hz"]),
            "joints": _Schedule(1.0 / p["joint_state_rate_hz"]),
            "gripper": _Schedule(1.0 / p["gripper_state_rate_hz"]),
            "tf": _Schedule(1.0 / p["tf_rate_hz"]),
            "clock": _Schedule(1.0 / CLOCK_RATE_HZ),
        }
        self._executor = MultiThreadedExecutor(num_threads=ACTION_THREADS, context=self.context)
        for node in (self._arm_node, self._gripper_node, self._camera_node):
            self._executor.add_node(node)
        self._executor_thread = threading.Thread(target=self._spin_drivers, name="drivers", daemon=True)
        self._executor_thread.start()
        if p["reset_on_start"]:
            self._commands.put(self._reset_on_start)
        self._thread = threading.Thread(target=self._run, name="simulation", daemon=True)
        self._thread.start()
        self.get_logger().info(
            f"{self._names.robot} arm on {self._arm_node.get_fully_qualified_name()}/follow_joint_trajectory, hand on "
            f"{self._gripper_node.get_fully_qualified_name()}/gripper_action, camera on "
            f"{self._camera_node.get_fully_qualified_name()}/..., clock={p['clock']}")

    # --- configuration --------------------------------------------------------------------------
    def _camera_view(self) -> DistortedView:
        """The colour camera: intrinsics from config/camera.yaml, pose from the hand-eye transform and the
        colour sensor's offset, rendered through the lens distortion."""
        p = self._params
        base = PinholeCamera.from_yaml(config_path("camera.yaml"))
        offset = np.asarray(p["color_offset_m"], dtype=float)
        if offset.shape != (3,) or not np.all(np.isfinite(offset)):
            raise StartupError(f"color_offset_m must be 3 numbers [x, y, z], got {p['color_offset_m']!r}")
        T_link_optical = np.eye(4)
        T_link_optical[:3, 3] = offset
        T_link_optical = T_link_optical @ optical_rotation()
        try:
            self._T_base_camera_link = xyz_quat_to_matrix(p["hand_eye"])
        except ConversionError as err:
            raise StartupError(f"hand_eye: {err}") from None
        T_world_optical = base_in_world() @ self._T_base_camera_link @ T_link_optical
        camera = PinholeCamera(width=base.width, height=base.height, fx=base.fx, fy=base.fy, cx=base.cx, cy=base.cy,
                               T_world_cam=T_world_optical, near_m=base.near_m, far_m=base.far_m,
                               frame_id=f"{p['camera_name']}_color_optical_frame")
        try:
            return DistortedView.build(camera, PlumbBob.from_list(p["distortion"]))
        except DistortionError as err:
            raise StartupError(f"distortion: {err}") from None

    def _default_tolerances(self) -> SegmentTolerances:
        p = self._params
        return SegmentTolerances.from_constraints(
            len(self._names.arm_joints), trajectory=p["trajectory_tolerance_rad"], goal=p["goal_tolerance_rad"],
            stopped_velocity=p["stopped_velocity_tolerance"], goal_time_s=p["goal_time_s"])

    def _on_parameter(self, name: str, value) -> None:
        """Rates take effect at their next tick, tolerances with the next trajectory, the rest at the next reset."""
        self._params[name] = value
        rates = {"camera_rate_hz": "camera", "arm_joint_state_rate_hz": "arm_joints", "joint_state_rate_hz": "joints",
                 "gripper_state_rate_hz": "gripper", "tf_rate_hz": "tf"}
        if name in rates:
            self._schedules[rates[name]].period_s = 1.0 / float(value)
        if name in ("trajectory_tolerance_rad", "goal_tolerance_rad", "stopped_velocity_tolerance", "goal_time_s"):
            tolerances = self._default_tolerances()
            self._commands.put(lambda: setattr(self._arm, "defaults", tolerances))
        if name == "gripper_speed_m_s":
            self._commands.put(lambda: setattr(self._hand, "speed_m_s", float(value)))
        if name == "fault_hand_eye_missing":
            if value and self._hand_eye_pub is not None:
                self.destroy_publisher(self._hand_eye_pub)
                self._hand_eye_pub = None
            elif not value:
                self._publish_hand_eye()

    # --- time -------------------------------------------------------------------------------------
    def _sim_time_s(self) -> float:
        """The controllers' clock: simulated seconds, never going back across resets."""
        return self._clock_base_s + self._world.time_s

    def _stamp(self):
        """A header stamp for now: wall-clock time (clock=system, as a driver stamps) or simulated time."""
        return time_msg(self._sim_time_s() if self._sim_clock else time.time())

    def _start_in_sim_time(self, stamp) -> float | None:
        """A trajectory header stamp in the controllers' clock (None for a zero stamp: start on arrival)."""
        stamp_s = time_to_s(stamp)
        if stamp_s == 0.0:
            return None
        return stamp_s if self._sim_clock else self._sim_time_s() + (stamp_s - time.time())

    # --- the arm: joint_trajectory_controller ---------------------------------------------------------
    def _validate(self, trajectory: JointTrajectory, check_start: bool):
        points = [TrajectoryPoint(duration_to_s(pt.time_from_start), tuple(pt.positions), tuple(pt.velocities),
                                  tuple(pt.accelerations), tuple(pt.effort)) for pt in trajectory.points]
        q = self._state[0][:7]
        return validate_trajectory(
            list(trajectory.joint_names), points, self._names.arm_joints,
            start_s=self._start_in_sim_time(trajectory.header.stamp), now_s=self._sim_time_s(),
            current_rad=q if check_start else None, start_tolerance_rad=self._params["start_tolerance_rad"],
            velocity_limits_rad_s=self._limits.velocity_rad_s, lower_rad=self._limits.position_lower_rad,
            upper_rad=self._limits.position_upper_rad)

    def _on_arm_goal(self, goal: FollowJointTrajectory.Goal) -> GoalResponse:
        try:
            self._validate(goal.trajectory, check_start=True)
        except GoalRejected as err:
            self._arm_node.get_logger().error(f"goal rejected: {err}")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _on_arm_topic(self, msg: JointTrajectory) -> None:
        try:
            command = self._validate(msg, check_start=True)
        except GoalRejected as err:
            self._arm_node.get_logger().error(f"joint_trajectory dropped: {err}")
            return
        self._commands.put(lambda: self._arm.command(command))

    def _execute_arm(self, handle) -> FollowJointTrajectory.Result:
        goal = handle.request
        result = FollowJointTrajectory.Result()
        try:
            command = self._validate(goal.trajectory, check_start=False)  # checked in full on acceptance
        except GoalRejected as err:
            result.error_code, result.error_string = INVALID_GOAL, str(err)
            handle.abort()
            return result
        joints = self._names.arm_joints

        def requests(tolerances):
            return [ToleranceRequest(t.name, t.position, t.velocity, t.acceleration) for t in tolerances]

        tolerances, warning = goal_tolerances(self._default_tolerances(), joints, requests(goal.path_tolerance),
                                              requests(goal.goal_tolerance), duration_to_s(goal.goal_time_tolerance))
        if warning:
            self._arm_node.get_logger().error(warning)
        record = _Goal(handle)
        self._commands.put(lambda: self._arm.command(command, record, tolerances))
        period_s, sent = 1.0 / self._params["action_monitor_rate_hz"], None
        while not record.done.wait(period_s):
            if self._stop.is_set():
                result.error_code, result.error_string = INVALID_GOAL, "the controller is shutting down"
                handle.abort()
                return result
            if handle.is_cancel_requested:
                if self._in_simulation(lambda: self._arm.cancel(record, self._state[0][:7])):
                    self._arm_node.get_logger().info("goal canceled: holding position")
                    handle.canceled()
                    return result
                continue  # it ended meanwhile: report how
            feedback = self._arm.feedback
            if feedback is not None and feedback is not sent and feedback.goal is record:
                handle.publish_feedback(self._feedback_msg(feedback))
                sent = feedback
        end = record.end
        result.error_code, result.error_string = end.code, end.message
        log = self._arm_node.get_logger()
        if end.succeeded:
            log.info(end.message)
            handle.succeed()
        else:
            log.warning(f"goal aborted ({end.code}): {end.message}")
            handle.abort()
        return result

    def _feedback_msg(self, feedback) -> FollowJointTrajectory.Feedback:
        msg = FollowJointTrajectory.Feedback(joint_names=list(self._names.arm_joints))
        msg.header.stamp = self._stamp()
        desired = feedback.desired
        msg.desired = JointTrajectoryPoint(positions=desired.positions.tolist(),
                                           velocities=desired.velocities.tolist(),
                                           accelerations=desired.accelerations.tolist(),
                                           time_from_start=duration_msg(max(0.0, feedback.time_from_start_s)))
        msg.actual = JointTrajectoryPoint(positions=feedback.actual_positions.tolist(),
                                          velocities=feedback.actual_velocities.tolist(),
                                          time_from_start=duration_msg(max(0.0, feedback.time_from_start_s)))
        msg.error = JointTrajectoryPoint(
            positions=(desired.positions - feedback.actual_positions).tolist(),
            velocities=(desired.velocities - feedback.actual_velocities).tolist())
        return msg

    # --- the hand: franka_gripper ---------------------------------------------------------------------
    @staticmethod
    def _width(state) -> float:
        return float(state[0][7] + state[0][8])

    def _execute_gripper(self, handle) -> GripperCommand.Result:
        command = handle.request.command
        result = GripperCommand.Result()
        log = self._gripper_node.get_logger()
        if self._hand.out_of_range(command.position):
            log.error(f"commanding out of range width! max_width = {self._hand.max_width_m} "
                      f"command = {2 * command.position}")
            handle.abort()
            return result
        width = self._width(self._state)
        if abs(2 * command.position - width) < HAND_SAME_WIDTH_M:
            result.position, result.reached_goal = float(width), True
            handle.succeed()
            return result
        record = _Goal(handle)
        self._commands.put(lambda: self._hand.start(record, command.position, command.max_effort,
                                                    self._sim_time_s(), self._width(self._state)))
        period_s = 1.0 / self._params["gripper_feedback_rate_hz"]
        while not record.done.wait(period_s):
            if self._stop.is_set():
                handle.abort()
                return result
            if handle.is_cancel_requested:
                if self._in_simulation(lambda: self._hand.cancel(record, self._width(self._state))):
                    log.info("gripper command canceled")
                    handle.canceled()
                    return result
                continue
            handle.publish_feedback(GripperCommand.Feedback(position=self._width(self._state), effort=0.0))
        end = record.end
        result.position, result.effort = float(end.width_m), 0.0
        result.reached_goal, result.stalled = bool(end.reached_goal), False
        if end.reached_goal:
            log.info("gripper command succeeded")
            handle.succeed()
        else:
            log.info("gripper command failed")
            handle.abort()
        return result

    def _on_gripper_stop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        try:
            self._in_simulation(lambda: self._hand.stop(self._width(self._state)))
            response.success = True
        except Exception as err:  # answered, never raised
            response.success, response.message = False, f"{type(err).__name__}: {err}"
        return response

    # --- episodes -----------------------------------------------------------------------------------
    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        suite, family, seed = self._params["suite"], self._params["family"], int(self._params["seed"])
        try:
            response.message = json.dumps(self._in_simulation(lambda: self._reset(suite, family, seed)))
            response.success = True
        except ResetError as err:
            response.success, response.message = False, str(err)
            self.get_logger().warning(f"reset refused: {response.message}")
        except Exception as err:  # answered, never raised: an exception here would end the executor
            response.success, response.message = False, f"reset failed: {type(err).__name__}: {err}"
            self.get_logger().error(response.message)
        return response

    def _on_success(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        try:
            report = self._in_simulation(self._judge)
        except Exception as err:  # answered, never raised (see _on_reset)
            report = {"success": False, "reason": f"judging failed: {type(err).__name__}: {err}", "sim_time_s": None}
        response.success, response.message = report["success"], json.dumps(report)
        return response

    def _in_simulation(self, fn):
        """Run ``fn`` on the simulation thread between two steps; return its result (or raise its error)."""
        if self._stop.is_set():
            raise RuntimeError("the simulation has stopped")
        future: Future = Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except Exception as err:  # handed back to the caller
                future.set_exception(err)

        self._commands.put(run)
        return future.result(timeout=SERVICE_TIMEOUT_S)

    def _reset(self, suite: str, family: str, seed: int) -> dict:
        """The episode (suite, family, seed) as sim_node builds it, seen by the fixed camera; goals running on
        the arm or the hand end (INVALID_GOAL, as when the controller is switched off)."""
        try:
            split, options = _suite_options(suite)
        except SuiteError as err:
            raise ResetError(str(err)) from None
        if family not in TASKS:
            raise ResetError(f"unknown family {family!r}; choose from {', '.join(sorted(TASKS))}")
        if family not in options:
            raise ResetError(f"suite {suite!r} has no family {family!r}; it has {', '.join(options)}")
        try:
            seed_split = split_of(seed)
        except SeedRangeError as err:
            raise ResetError(str(err)) from None
        if seed_split != split:
            raise ResetError(f"seed {seed} lies in the {seed_split} split; suite {suite!r} runs the {split} split")
        self._arm.abort_active(INVALID_GOAL, "Current goal cancelled: the episode was reset")
        self._hand.reset(self._width(self._state))
        self._clock_base_s = self._sim_time_s()
        self._task, self._episode = None, None
        task = TASKS[family](self._world, options[family])
        try:
            task.reset(seed)
        except SceneError as err:
            raise ResetError(str(err)) from None
        finally:
            self._world.camera = self._view.camera  # calibrated and fixed: no per-episode jitter
            self._state = self._read_state()
            self._arm.hold(self._state[0][:7])
            self._hand.reset(self._width(self._state))
            self._resolve(self._arm.update(self._sim_time_s(), self._state[0][:7], self._state[1][:7])[1])
        self._task = task
        self._episode = {"suite": suite, "family": family, "seed": seed, "instruction": task.instruction}
        self.get_logger().info(f"episode {self._episode} at sim time {self._sim_time_s():.3f} s")
        return self._episode

    def _reset_on_start(self) -> None:
        try:
            self._reset(self._params["suite"], self._params["family"], int(self._params["seed"]))
        except ResetError as err:
            self.get_logger().error(f"reset at start failed, the table stays empty: {err}")

    def _judge(self) -> dict:
        if self._task is None:
            return {"success": False, "reason": "no episode: call ~/reset first", "sim_time_s": self._world.time_s}
        outcome = self._task.success()
        return {"success": bool(outcome.success), "reason": outcome.reason, "sim_time_s": self._world.time_s}

    # --- simulation thread ----------------------------------------------------------------------------
    def _read_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        states = self._world.client.getJointStates(self._world.robot_id, ARM_JOINTS + FINGER_JOINTS)
        return (np.array([s[0] for s in states]), np.array([s[1] for s in states]), np.array([s[3] for s in states]))

    def _spin_drivers(self) -> None:
        try:
            self._executor.spin()
        except Exception as err:  # after shutdown the context goes first: not an error then
            if self.context.ok():
                self.get_logger().fatal(f"driver executor stopped: {type(err).__name__}: {err}")

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as err:
            if self.context.ok():
                self.get_logger().fatal(f"simulation thread stopped: {type(err).__name__}: {err}")
                raise

    def _loop(self) -> None:
        def rtf() -> float:
            return self._params["real_time_factor"] if self._sim_clock else 1.0

        wall_anchor, sim_anchor, factor = time.monotonic(), self._sim_time_s(), rtf()
        pace = _Pace(time.monotonic(), self._sim_time_s())
        while not self._stop.is_set():
            before_s = self._sim_time_s()
            self._drain_commands()
            if self._sim_time_s() != before_s or rtf() != factor:  # a reset settled its scene, or a new factor
                wall_anchor, sim_anchor, factor = time.monotonic(), self._sim_time_s(), rtf()
                pace = _Pace(time.monotonic(), self._sim_time_s())
            self._step()
            self._publish_due()
            if factor > 0:
                delay_s = wall_anchor + (self._sim_time_s() - sim_anchor) / factor - time.monotonic()
                if delay_s > 0:
                    time.sleep(delay_s)
                elif delay_s < -MAX_LAG_S:  # rendering or the machine is too slow: run late, don't burst
                    wall_anchor, sim_anchor = time.monotonic(), self._sim_time_s()
                achieved = pace.update(time.monotonic(), self._sim_time_s())
                if achieved is not None and achieved < SLOW_PACE * factor and not self._sim_clock:
                    # With wall-clock stamps the controllers' time then lags the clients' clocks, whose timeouts
                    # (a real controller runs in real time) may fire before a goal ends.
                    self.get_logger().warning(
                        f"the simulation runs at {achieved:.2f}x real time (machine too slow): the arm's goals take "
                        f"longer than their trajectories' times; lower camera_rate_hz or the load",
                        throttle_duration_sec=30.0)

    def _drain_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                command()
            except Exception as err:  # a broken command must not stop the simulation
                self.get_logger().error(f"simulation command failed: {type(err).__name__}: {err}")

    def _step(self) -> None:
        q, qd, _ = self._state
        now_s = self._sim_time_s()
        setpoint, arm_ended = self._arm.update(now_s, q[:7], qd[:7])
        goal = self._arm.active_goal
        if goal is not self._pushed_goal:
            self._pushed_goal, self._push_from_s = goal, now_s + self._params["fault_push_after_s"]
        if goal is not None and self._params["fault_push_rad"] and now_s >= self._push_from_s:
            setpoint = np.array(setpoint, dtype=float)
            setpoint[0] += self._params["fault_push_rad"]  # the push: the joint leaves the commanded path
        self._world.hold_arm(setpoint)
        finger_m, force_n, hand_ended = self._hand.update(now_s, q[7] + q[8], qd[7] + qd[8], 1.0 / PHYSICS_HZ)
        self._world.command_gripper(closed=self._hand.grasping, opening_m=finger_m, force_n=force_n)
        self._world.step()
        self._state = self._read_state()
        self._resolve(arm_ended + hand_ended)

    @staticmethod
    def _resolve(ended) -> None:
        for end in ended:
            end.goal.end = end
            end.goal.done.set()

    def _publish_due(self) -> None:
        now_s = self._sim_time_s()
        due = {name: schedule.due(now_s) for name, schedule in self._schedules.items()}
        if not any(due.values()):
            return
        stamp = self._stamp()
        q, qd, effort = self._state
        names = self._names
        if due["clock"] and self._clock_pub is not None:
            self._clock_pub.publish(Clock(clock=stamp))
        if self._params["fault_stop_joint_states"]:
            due["arm_joints"] = due["gripper"] = due["joints"] = False
        if self._params["fault_stop_tf"]:
            due["tf"] = False
        if due["arm_joints"]:  # joint_state_broadcaster: the arm's position, velocity and (measured) effort
            self._arm_joint_pub.publish(self._joint_state(names.arm_joints, q[:7], qd[:7], effort[:7], stamp))
        finger = (q[7] + q[8]) / 2
        if due["gripper"]:  # franka_gripper: width / 2 for both fingers, no velocity or effort measured
            self._gripper_joint_pub.publish(self._joint_state(names.finger_joints, [finger] * 2, [0.0] * 2,
                                                              [0.0] * 2, stamp))
        if due["joints"]:  # joint_state_publisher: both merged, in the URDF's joint order
            self._joint_pub.publish(self._joint_state(names.arm_joints + names.finger_joints,
                                                      [*q[:7], finger, finger], [*qd[:7], 0.0, 0.0],
                                                      [*effort[:7], 0.0, 0.0], stamp))
        if due["tf"]:  # robot_state_publisher: the moving joints
            moving = robot_transforms(self._world, names, static=False)
            self._tf_pub.publish(TFMessage(transforms=[_transform(parent, child, T, stamp)
                                                       for parent, child, T in moving]))
        if due["camera"]:
            self._publish_camera(stamp)

    @staticmethod
    def _joint_state(names, positions, velocities, efforts, stamp) -> JointState:
        msg = JointState(name=list(names), position=[float(v) for v in positions],
                         velocity=[float(v) for v in velocities], effort=[float(v) for v in efforts])
        msg.header.stamp = stamp
        return msg

    def _camera_info(self, stamp) -> CameraInfo:
        camera = self._view.camera
        K = camera.K
        model, d = self._params["fault_distortion_model"] or "plumb_bob", self._view.distortion.as_list()
        if model != "plumb_bob":  # the injected fault: the coefficient count of that model
            n = {"equidistant": 4, "rational_polynomial": 8}[model]
            d = (d + [0.0] * n)[:n]
        msg = CameraInfo(height=camera.height, width=camera.width, distortion_model=model,
                         d=d, k=K.reshape(-1).tolist(),
                         r=np.eye(3).reshape(-1).tolist(), p=np.hstack([K, np.zeros((3, 1))]).reshape(-1).tolist())
        msg.header.stamp, msg.header.frame_id = stamp, camera.frame_id
        return msg

    def _publish_camera(self, stamp) -> None:
        """realsense2_camera publishes a stream (and its camera_info) only while someone listens."""
        info = self._camera_info(stamp)
        for publisher in (self._color_info_pub, self._depth_info_pub):
            if publisher.get_subscription_count():
                publisher.publish(info)
        want_color, want_depth = self._color_pub.get_subscription_count(), self._depth_pub.get_subscription_count()
        if not (want_color or want_depth):
            return
        observation = self._world.render(self._view.source)
        frame = self._view.camera.frame_id
        if want_color:
            self._color_pub.publish(rgb_to_msg(self._view.rgb(observation.rgb), stamp, frame))
        if want_depth:  # aligned to colour: the colour camera's geometry and frame, millimetres, 0 = no return
            self._depth_pub.publish(depth_to_msg(self._view.depth(observation.depth_m), stamp, frame, "16UC1"))

    def _publish_static_transforms(self) -> None:
        stamp = self._stamp()
        self._robot_static_pub.publish(TFMessage(transforms=[
            _transform(parent, child, T, stamp) for parent, child, T in robot_transforms(self._world, self._names,
                                                                                         True)]))
        camera = self._params["camera_name"]
        self._camera_static_pub.publish(TFMessage(transforms=[
            _transform(parent, child, T, stamp)
            for parent, child, T in camera_transforms(camera, self._params["color_offset_m"])]))
        if not self._params["fault_hand_eye_missing"]:
            self._publish_hand_eye()

    def _publish_hand_eye(self) -> None:
        """The calibration tool's static transform, on its own latched publisher (created if withdrawn)."""
        if self._hand_eye_pub is None:
            self._hand_eye_pub = self.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
        camera = self._params["camera_name"]
        self._hand_eye_pub.publish(TFMessage(transforms=[
            _transform(self._names.base, f"{camera}_link", self._T_base_camera_link, self._stamp())]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        self._executor.shutdown(timeout_sec=5.0)
        self._executor_thread.join(timeout=5.0)
        for node in (self._arm_node, self._gripper_node, self._camera_node):
            node.destroy_node()
        self._world.close()


def main(args=None) -> None:
    run_node(FAKE_FRANKA.name, FakeFrankaNode, args)


if __name__ == "__main__":
    main()
