"""manipulation_node: a thin ROS 2 adapter over the forecast-driven planner
(:class:`~molmomotion_ros.planning.manipulator.ForecastManipulator`, ``agent: planner``) or a learned
closed-loop policy (:class:`molmomotion_policies.controller.PolicyController`, ``agent: policy``).

Subscribes (relative names, remappable):
  * ``forecast/hypotheses`` (trajectory_msgs/MultiDOFJointTrajectory, the forecaster's K hypotheses;
    encoding in :mod:`molmomotion_ros.conversions.forecasts`): planner: each new forecast is planned
    and executed; forecast-conditioned policy: the forecast of the episode's first frame.
  * ``instruction`` (std_msgs/String, policy only): each starts an episode of the policy, which
    observes ``camera/color/image_raw`` (rgb8/bgr8) with the depth of the same stamp, predicts a chunk
    of grasp-target set-points at 15 fps, executes it through IK and observes again, until it goes idle
    after a release or its sample budget is spent. A new instruction replaces the running episode.
  * ``camera/depth/image_raw`` (32FC1 m or 16UC1 mm) and ``camera/color/camera_info``, sensor-data
    QoS: the depth frame with the forecast's stamp t0 gives the target's shape and the obstacles.
  * ``camera/pose`` (geometry_msgs/PoseStamped): the camera optical frame in ``world_frame``.
  * ``joint_states`` (sensor_msgs/JointState): where the arm is.

Publishes:
  * ``arm_controller/joint_trajectory`` (trajectory_msgs/JointTrajectory): one planned segment at a
    time (approach, descend, carry, ...), each sent when the previous one has arrived; remap it to
    your controller's topic (ros2_control's joint_trajectory_controller takes exactly this).
  * ``gripper/command`` (std_msgs/Float64): per-finger opening in metres, 0 = close with force.
  * ``manipulation/status`` (std_msgs/String, JSON, reliable + transient-local): ``{"state": idle |
    planning | executing | done | failed | stopped, "reason", "forecast_stamp", "agent", "retryable",
    ...}`` on every change; ``/diagnostics`` on problems. Planner: ``forecast_stamp`` is the forecast's,
    plus "skill", "steps", "planning_time_s", "carry_follows_forecast". Policy: ``forecast_stamp`` is the
    episode's first frame, plus "chunks", "samples", "ik_failures" (and "forecast_used" for a
    forecast-conditioned policy: false when no forecast came within frame_timeout_s and it acts without
    one, as in training); ``retryable`` is false (an episode
    is the policy's one closed-loop attempt).

Service ``~/stop`` (std_srvs/Trigger): abort at once — an empty JointTrajectory is sent (a
joint_trajectory_controller holds the current position) and the rest of the sequence is dropped.

Planning and execution run on one worker thread (a newer forecast replaces one not yet started), so
callbacks only convert and store. With ``use_sim_time`` the waits follow the simulator's /clock.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, MultiDOFJointTrajectory

from .. import conversions
from ..conversions.joints import msg_to_joint_positions, timed_trajectory_to_msg, trajectory_msg
from ..forecasting.types import ForecastInputError
from ..geometry import FitError
from ..node_specs.manipulation import MANIPULATION_NODE
from ..planning.planner import PlannerConfig, PlannerConfigError, PlannerUnavailableError
from ..planning.skills import SkillError
from ..robot import ARM_JOINT_NAMES, FINGER_JOINT_NAMES, GRIPPER_OPEN_M
from .params import ParameterValueError, declare_parameters

ARM_JOINTS = ARM_JOINT_NAMES
FINGER_JOINTS = FINGER_JOINT_NAMES
_NS = 1_000_000_000
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class StartupError(RuntimeError):
    """The node cannot start with this configuration."""


class Stopped(Exception):
    """The stop service was called during execution."""


class Superseded(Exception):
    """A new instruction arrived while the policy ran an episode."""


SAMPLE_S = 1.0 / 15.0  # the policies' action rate (15 fps, as the demonstrations)


def frames_near(depth_frames, infos: dict, t_ns: int, tolerance_ns: int) -> tuple[list, list]:
    """Depth frames (stamp_ns, image) within ``tolerance_ns`` of ``t_ns``, nearest first, and those of them
    whose camera_info (``infos``: stamp_ns → msg) arrived, as (stamp_ns, image, info)."""
    near = sorted((e for e in depth_frames if abs(e[0] - t_ns) <= tolerance_ns), key=lambda e: abs(e[0] - t_ns))
    return near, [(t, image, infos[t]) for t, image in near if infos.get(t) is not None]


def stamp_ns(stamp) -> int:
    return int(stamp.sec) * _NS + int(stamp.nanosec)


class ManipulationNode(Node):
    def __init__(self) -> None:
        super().__init__("manipulation_node")
        self._params = declare_parameters(self, MANIPULATION_NODE, on_change=self._on_param)
        self._agent = self._params["agent"]
        self._manipulator = self._policy = None
        if self._agent == "policy":
            self._load_policy()
        else:
            self._load_planner()
        self._lock = threading.Lock()
        self._depth = deque()  # (stamp_ns, depth_m) of the last frame_buffer_s
        self._color = deque()  # (stamp_ns, rgb) likewise, policy only
        self._instruction: tuple[str, int] | None = None  # pending (text, node-clock ns on arrival)
        self._forecast_msg: MultiDOFJointTrajectory | None = None  # latest, for a forecast-conditioned policy
        self._preempt = threading.Event()
        self._episode_stamp = None  # policy: the stamp of the running episode's first frame
        self._used_forecast_ns = -1  # forecast-conditioned policy: the stamp of the last forecast used
        self._episode_running = False
        self._instructions_seen = 0
        self._info: dict[int, CameraInfo] = {}
        self._camera_pose: PoseStamped | None = None
        self._joints: tuple[np.ndarray, np.ndarray] | None = None  # arm (7,), fingers (2,)
        self._pending: MultiDOFJointTrajectory | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        # Arm and gripper commands and ~/stop's hold go out under this lock, each command after a stop check:
        # a command the worker built just before a stop can never follow (and so undo) the stop's hold.
        self._command_lock = threading.Lock()
        self._closing = False

        self.create_subscription(MultiDOFJointTrajectory, "forecast/hypotheses", self._on_forecast, LATCHED)
        self.create_subscription(Image, "camera/depth/image_raw", self._on_depth, qos_profile_sensor_data)
        self.create_subscription(CameraInfo, "camera/color/camera_info", self._on_info, qos_profile_sensor_data)
        self.create_subscription(PoseStamped, "camera/pose", self._on_pose, LATCHED)
        self.create_subscription(JointState, "joint_states", self._on_joints, 10)
        if self._agent == "policy":
            self.create_subscription(Image, "camera/color/image_raw", self._on_color, qos_profile_sensor_data)
            self.create_subscription(String, "instruction", self._on_instruction, LATCHED)
        self._pub_trajectory = self.create_publisher(JointTrajectory, "arm_controller/joint_trajectory", 10)
        self._pub_gripper = self.create_publisher(Float64, "gripper/command", 10)
        self._pub_status = self.create_publisher(String, "manipulation/status", LATCHED)
        self._pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_service(Trigger, "~/stop", self._on_stop)
        self._worker = threading.Thread(target=self._work, name="manipulation", daemon=True)
        self._worker.start()
        self._status("idle")
        what = (f"policy {self._policy_label}" if self._agent == "policy"
                else f"planner {self._params['planner_backend']}")
        self.get_logger().info(f"ready: agent {self._agent}, {what}")

    def _load_planner(self) -> None:
        overrides = {"backend": self._params["planner_backend"]}
        try:
            config = PlannerConfig.from_yaml(self._params["planner_config"] or None, **overrides)
            from ..planning.manipulator import ForecastManipulator

            self._manipulator = ForecastManipulator(config, free_scaling=self._params["free_velocity_scaling"],
                                                    contact_scaling=self._params["contact_velocity_scaling"])
        except (PlannerConfigError, PlannerUnavailableError) as err:
            raise StartupError(f"manipulation_node cannot build its planner: {err}") from None

    def _load_policy(self) -> None:
        try:
            import torch

            from molmomotion_policies.controller import PolicyController
            from molmomotion_policies.observation import PolicyError
        except ImportError as err:
            raise StartupError(f"agent=policy needs molmomotion_policies and torch: {err}") from None
        from ..planning.kinematics import PandaKinematics

        torch.set_num_threads(1)  # one chunk per 4 samples (267 ms): one thread keeps up and leaves a core free
        try:
            self._policy, meta = PolicyController.from_checkpoint(self._params["policy_checkpoint"])
        except (PolicyError, OSError, RuntimeError, KeyError) as err:
            raise StartupError(f"manipulation_node cannot load policy {self._params['policy_checkpoint']!r}: "
                               f"{err}") from None
        self._kinematics = PandaKinematics()
        self._policy_label = (f"policy-{self._policy.policy.cfg.variant} ({self._params['policy_checkpoint']}, "
                              f"step {meta.get('step', '?')})")

    # --- callbacks: convert and store -----------------------------------------------------------
    def _on_param(self, name: str, value) -> None:
        self._params[name] = value
        if name in ("free_velocity_scaling", "contact_velocity_scaling") and self._manipulator is not None:
            skills = self._manipulator.skills
            skills.free_scaling = self._params["free_velocity_scaling"]
            skills.contact_scaling = self._params["contact_velocity_scaling"]

    def _on_depth(self, msg: Image) -> None:
        try:
            depth = conversions.msg_to_depth_m(msg)
        except conversions.ConversionError as err:
            self._diag("WARN", "camera/depth/image_raw", f"depth frame refused: {err}")
            return
        self._hold(self._depth, stamp_ns(msg.header.stamp), depth)

    def _on_info(self, msg: CameraInfo) -> None:
        with self._lock:
            self._info[stamp_ns(msg.header.stamp)] = msg
            if len(self._info) > 600:
                for key in sorted(self._info)[:300]:
                    del self._info[key]

    def _on_pose(self, msg: PoseStamped) -> None:
        with self._lock:
            self._camera_pose = msg

    def _on_joints(self, msg: JointState) -> None:
        try:
            arm, _ = msg_to_joint_positions(msg, ARM_JOINTS)
            fingers, _ = msg_to_joint_positions(msg, FINGER_JOINTS)
        except conversions.ConversionError as err:
            self._diag("WARN", "joint_states", f"joint state refused: {err}")
            return
        with self._lock:
            self._joints = (arm, fingers)

    def _on_color(self, msg: Image) -> None:
        try:
            rgb = conversions.msg_to_rgb(msg)
        except conversions.ConversionError as err:
            self._diag("WARN", "camera/color/image_raw", f"colour frame refused: {err}")
            return
        self._hold(self._color, stamp_ns(msg.header.stamp), rgb)

    def _hold(self, frames: deque, t_ns: int, image: np.ndarray) -> None:
        """Keep (stamp, image) for frame_buffer_s of stamps."""
        with self._lock:
            frames.append((t_ns, image))
            while frames and frames[0][0] < t_ns - self._params["frame_buffer_s"] * _NS:
                frames.popleft()

    def _on_instruction(self, msg: String) -> None:
        text = " ".join(msg.data.split())
        if not text:
            self.get_logger().warning("empty instruction ignored")
            self._diag("WARN", "instruction", "empty instruction ignored")
            return
        with self._lock:
            # The episode starts from a frame received after this: one already held may show the scene
            # before a reset, and the node's clock (from /clock) can lag the frames' stamps.
            newest_ns = max((t for t, _ in self._color), default=-1)
            self._instruction = (text, self.get_clock().now().nanoseconds, newest_ns)
            self._instructions_seen += 1
        self.get_logger().info(f"instruction: {text!r}" + (" (replaces the running episode)"
                                                           if self._episode_running else ""))
        self._stop.clear()
        self._preempt.set()  # a running episode ends; the worker takes this one next
        self._wake.set()

    def _on_forecast(self, msg: MultiDOFJointTrajectory) -> None:
        if self._agent == "policy":
            with self._lock:
                self._forecast_msg = msg  # read by a forecast-conditioned policy at the episode's start
            return
        with self._lock:
            self._pending = msg
        self._stop.clear()
        self._wake.set()

    def _on_stop(self, request, response):
        with self._command_lock:
            self._stop.set()
            self._pub_trajectory.publish(JointTrajectory(joint_names=list(ARM_JOINTS)))  # empty: hold position
        with self._lock:
            self._pending = self._instruction = None
        response.success, response.message = True, "stopped: the controller holds the current position"
        return response

    # --- worker: plan and execute one forecast at a time ------------------------------------------
    def _work(self) -> None:
        while not self._closing:
            self._wake.wait(0.2)
            self._wake.clear()
            if self._agent == "policy":
                with self._lock:
                    request, self._instruction = self._instruction, None
                if request is not None:
                    self._preempt.clear()
                    self._run_policy_episode(*request)
                continue
            with self._lock:
                msg, self._pending = self._pending, None
            if msg is None:
                continue
            try:
                self._handle(msg)
            except Stopped:
                self._status("stopped", stamp=msg.header.stamp, reason="stopped by ~/stop")
            except Exception as err:  # noqa: BLE001  (a node must survive a bug in one request)
                self.get_logger().error(f"unexpected error while handling a forecast: {type(err).__name__}: {err}")
                self._status("failed", stamp=msg.header.stamp, reason=f"{type(err).__name__}: {err}")

    # --- policy: one closed-loop episode per instruction ------------------------------------------
    def _run_policy_episode(self, instruction: str, received_ns: int, held_ns: int) -> None:
        # Until the first frame is chosen the episode is known by the instruction's arrival (node clock), so
        # that even an episode failing before it has a stamp newer than the last (the episode runner matches
        # outcomes to episodes by it).
        self._episode_stamp = Time(nanoseconds=received_ns).to_msg()
        self._episode_running = True
        try:
            self._policy_episode(instruction, received_ns, held_ns)
        except Stopped:
            self._status("stopped", stamp=self._episode_stamp, reason="stopped by ~/stop", retryable=False)
        except Superseded:
            self._status("stopped", stamp=self._episode_stamp, reason="replaced by a new instruction",
                         retryable=False)
        except Exception as err:  # noqa: BLE001  (a node must survive a bug in one episode)
            self.get_logger().error(f"unexpected error in the policy episode: {type(err).__name__}: {err}")
            self._status("failed", stamp=self._episode_stamp, reason=f"{type(err).__name__}: {err}",
                         retryable=False)
        finally:
            self._episode_running = False

    def _policy_episode(self, instruction: str, received_ns: int, held_ns: int) -> None:
        """One closed-loop episode: ``received_ns`` is the instruction's arrival on the node clock, ``held_ns``
        the newest frame stamp held then (the first frame must be newer than both)."""
        from molmomotion_policies.controller import (
            arm_state_from_joints,
            chunk_joint_targets,
            forecast_inputs,
            gripper_segments,
            hold_times,
            pack_forecast,
        )
        from molmomotion_policies.observation import FORECAST_POINTS, FORECAST_STEPS, PolicyError

        controller, forecast, start_ns = self._policy, None, received_ns
        if controller.needs_forecast:
            # This instruction's forecast: newer than the last one used and made at most max_frame_offset_s
            # before the instruction reached this node (the forecaster hears it about when this node does)
            # — at start up to frame_buffer_s before: the forecaster, up sooner, may answer the latched
            # instruction seconds before this node, still loading, hears it.
            slack_s = self._params["frame_buffer_s" if self._instructions_seen <= 1 else "max_frame_offset_s"]
            oldest_ns = max(received_ns - int(slack_s * _NS), self._used_forecast_ns + 1)

            def new_forecast():
                msg = self._forecast_msg
                return msg if msg is not None and stamp_ns(msg.header.stamp) >= oldest_ns else None

            msg = self._wait_until(new_forecast)
            try:
                if msg is None:
                    raise PolicyError(f"no forecast on forecast/hypotheses within {self._params['frame_timeout_s']} "
                                      f"s of the instruction")
                points_t0, hypotheses, _ = conversions.msg_to_forecast_hypotheses(msg)
                forecast = forecast_inputs(hypotheses[0], points_t0)  # best first
                # The policy starts from the frame the forecast saw (or the next, if that one was dropped).
                start_ns = self._used_forecast_ns = stamp_ns(msg.header.stamp)
            except (conversions.ConversionError, PolicyError) as err:
                # As in training, where a failed forecast was zeroed and flagged: act without it.
                self.get_logger().warning(f"acting without a forecast: {err}")
                self._diag("WARN", "forecast/hypotheses", f"acting without a forecast: {err}")
                forecast = pack_forecast(np.zeros((FORECAST_POINTS, FORECAST_STEPS, 3)),
                                         np.zeros((FORECAST_POINTS, 3)), False)
        frame = self._wait_until(lambda: self._policy_frame(max(start_ns, held_ns + 1)))
        if frame is None:
            return self._policy_fail(f"no colour + depth + camera_info frame after the instruction within "
                                     f"{self._params['frame_timeout_s']} s")
        controller.reset(instruction, forecast)
        self._episode_stamp = frame[3]
        report = {"chunks": 0, "samples": 0, "ik_failures": 0}
        if forecast is not None:
            report["forecast_used"] = bool(forecast["forecast_valid"][0])
        used = {None: "", True: ", with its forecast", False: ", without a forecast"}[report.get("forecast_used")]
        self.get_logger().info(f"episode: {instruction!r} from the frame at {stamp_ns(frame[3]) / _NS:.3f} s{used}")
        self._status("executing", stamp=self._episode_stamp, retryable=False, **report)
        closed = False  # the gripper starts open (a reset opens it), as in the harness
        while True:
            rgb, depth, camera, _ = frame
            with self._lock:
                q_arm, fingers = self._joints
            chunk = controller.next_chunk(rgb, depth, camera, arm_state_from_joints(self._kinematics, q_arm, fingers))
            targets, failures = chunk_joint_targets(self._kinematics, chunk, q_arm)
            report["chunks"] += 1
            report["samples"] += len(targets)
            report["ik_failures"] += failures
            for start, stop, segment_closed in gripper_segments(chunk.gripper_closed):
                if segment_closed != closed:
                    closed = segment_closed
                    self._command(self._pub_gripper, Float64(data=0.0 if closed else GRIPPER_OPEN_M))
                times = hold_times(stop - start, SAMPLE_S, self._params["policy_setpoint_rise_s"])
                self._command(self._pub_trajectory, trajectory_msg(times, np.repeat(targets[start:stop], 2, axis=0),
                                                                   ARM_JOINTS))
                self._sleep(float(times[-1]))
            if controller.finished:
                break
            now_ns = self.get_clock().now().nanoseconds
            frame = self._wait_until(lambda t=now_ns: self._policy_frame(t))
            if frame is None:
                return self._policy_fail(f"no camera frame within {self._params['frame_timeout_s']} s after "
                                         f"chunk {report['chunks']}", **report)
        why = controller.reason or "idle after a release"
        self.get_logger().info(f"episode done after {report['chunks']} chunks ({why})")
        self._status("done", stamp=self._episode_stamp, reason=controller.reason, retryable=False, **report)
        return None

    def _policy_frame(self, t_ns: int):
        """(rgb, depth_m, camera, stamp) of the first frame stamped at/after ``t_ns`` whose colour, depth and
        camera_info all arrived, or None."""
        with self._lock:
            depth = dict(self._depth)
            colors = [(t, rgb) for t, rgb in self._color if t >= t_ns and t in depth]
            info = {t: self._info.get(t) for t, _ in colors}
            pose, joints = self._camera_pose, self._joints
        if pose is None or joints is None:
            return None
        for t, rgb in colors:
            if info[t] is None:
                continue
            try:
                camera = conversions.camera_info_to_camera(info[t], conversions.pose_to_matrix(pose.pose))
            except conversions.ConversionError as err:
                self._diag("WARN", "camera/color/camera_info", f"camera refused: {err}")
                continue
            if rgb.shape[:2] != depth[t].shape or (camera.height, camera.width) != depth[t].shape:
                self._diag("WARN", "camera", f"colour {rgb.shape[:2]}, depth {depth[t].shape} and camera_info "
                           f"{camera.height}x{camera.width} differ; frame skipped")
                continue
            return rgb, depth[t], camera, info[t].header.stamp
        return None

    def _wait_until(self, get):
        """Poll ``get`` until it returns something (→ it) or frame_timeout_s of wall time pass (→ None);
        ~/stop and a new instruction interrupt."""
        deadline = time.monotonic() + self._params["frame_timeout_s"]
        while time.monotonic() < deadline:
            if self._stop.is_set():
                raise Stopped
            if self._preempt.is_set():
                raise Superseded
            value = get()
            if value is not None:
                return value
            time.sleep(0.005)
        return None

    def _policy_fail(self, reason: str, **extra) -> None:
        self.get_logger().warning(f"policy episode failed: {reason}")
        self._diag("WARN", "policy", reason)
        self._status("failed", stamp=self._episode_stamp, reason=reason, retryable=False, **extra)

    def _handle(self, msg: MultiDOFJointTrajectory) -> None:
        stamp = msg.header.stamp
        if msg.header.frame_id != self._params["world_frame"]:
            return self._fail(stamp, f"forecast in frame {msg.header.frame_id!r}, expected "
                                     f"{self._params['world_frame']!r}")
        try:
            points_t0, hypotheses, _ = conversions.msg_to_forecast_hypotheses(msg)
        except conversions.ConversionError as err:
            return self._fail(stamp, f"forecast refused: {err}")
        frame = self._frame_at(stamp_ns(stamp))
        deadline = time.monotonic() + 1.0
        while isinstance(frame, str) and time.monotonic() < deadline:
            time.sleep(0.02)  # the forecast (small) may overtake its depth frame (large) in transit
            frame = self._frame_at(stamp_ns(stamp))
        if isinstance(frame, str):
            return self._fail(stamp, frame)
        depth, camera, q_arm = frame
        self._status("planning", stamp=stamp)
        t0 = time.perf_counter()
        try:
            planned = self._manipulator.plan(depth, camera, q_arm, points_t0, hypotheses)
        except (SkillError, FitError, ForecastInputError, ValueError) as err:
            return self._fail(stamp, f"{type(err).__name__}: {err}")
        plan = planned.plan
        summary = {"skill": planned.skill.kind, "steps": [s.label for s in plan.steps],
                   "planning_time_s": round(time.perf_counter() - t0, 3),
                   "carry_follows_forecast": plan.carry_follows_forecast}
        if not self._params["execute"]:
            self._status("done", stamp=stamp, reason="planned only (execute = false)", **summary)
            return None
        self._status("executing", stamp=stamp, **summary)
        for step in plan.steps:
            if self._stop.is_set():
                raise Stopped
            if step.trajectory is not None:
                problem = self._run_trajectory(step.trajectory)
                if problem:
                    return self._fail(stamp, f"{step.label}: {problem}", **summary)
            else:
                self._command(self._pub_gripper, Float64(data=float(step.gripper_opening_m)))
                self._sleep(self._params["gripper_settle_s"])
        self._status("done", stamp=stamp, **summary)
        return None

    def _frame_at(self, t_ns: int):
        """(depth_m, camera, q_arm) at the forecast's stamp, or a sentence saying what is missing."""
        tolerance_ns = int(self._params["max_frame_offset_s"] * _NS)
        with self._lock:
            # The frame the forecast was made from; else the nearest complete one (sensor-data QoS may drop
            # a depth image or its camera_info, and the scene holds still while this node is idle).
            near, complete = frames_near(self._depth, self._info, t_ns, tolerance_ns)
            held = (f"{len(self._depth)} frames held, {self._depth[0][0] / _NS:.3f}–{self._depth[-1][0] / _NS:.3f} s"
                    if self._depth else "no frames received yet")
            pose, joints = self._camera_pose, self._joints
        if not near:
            return (f"no depth frame within {self._params['max_frame_offset_s']} s of the forecast's stamp "
                    f"{t_ns / _NS:.3f} s ({held})")
        if not complete:
            return (f"no camera_info with the stamp of any of the {len(near)} depth frames within "
                    f"{self._params['max_frame_offset_s']} s of the forecast's stamp {t_ns / _NS:.3f} s")
        _, depth, info = complete[0]
        if pose is None:
            return "no camera pose received on camera/pose"
        if joints is None:
            return "no joint_states received"
        try:
            camera = conversions.camera_info_to_camera(info, conversions.pose_to_matrix(pose.pose))
        except conversions.ConversionError as err:
            return f"camera refused: {err}"
        if camera.width != depth.shape[1] or camera.height != depth.shape[0]:
            return (f"camera_info is {camera.width}x{camera.height} but the depth frame is "
                    f"{depth.shape[1]}x{depth.shape[0]}")
        return depth, camera, joints[0].copy()

    def _run_trajectory(self, trajectory) -> str | None:
        """Send one timed trajectory and wait until the joints arrive; a problem sentence or None."""
        self._command(self._pub_trajectory, timed_trajectory_to_msg(trajectory, joint_names=ARM_JOINTS))
        goal = trajectory.positions_rad[-1]
        limit = trajectory.duration_s * self._params["execution_timeout_factor"] + 1.0
        start = self._now_s()
        self._sleep(trajectory.duration_s)
        while True:
            if self._stop.is_set():
                raise Stopped
            with self._lock:
                q = None if self._joints is None else self._joints[0]
            if q is not None and np.max(np.abs(q - goal)) <= self._params["goal_tolerance_rad"]:
                return None
            if self._now_s() - start > limit:
                error = float("nan") if q is None else float(np.max(np.abs(q - goal)))
                return (f"the arm did not reach the trajectory's end within {limit:.1f} s "
                        f"(max joint error {error:.3f} rad)")
            time.sleep(0.005)

    def _command(self, publisher, msg) -> None:
        """Publish an arm or gripper command unless ~/stop came first (then raise Stopped)."""
        with self._command_lock:
            if self._stop.is_set():
                raise Stopped
            publisher.publish(msg)

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds / _NS

    def _sleep(self, seconds: float) -> None:
        """Sleep on the node's clock (the simulator's with use_sim_time), waking for ~/stop."""
        end = self._now_s() + seconds
        while self._now_s() < end:
            if self._stop.is_set():
                raise Stopped
            if self._agent == "policy" and self._preempt.is_set():
                raise Superseded
            if self._closing:
                return
            time.sleep(0.005)

    # --- reporting ------------------------------------------------------------------------------
    def _fail(self, stamp, reason: str, **extra) -> None:
        self.get_logger().warning(f"forecast not carried out: {reason}")
        self._diag("WARN", "plan", reason)
        self._status("failed", stamp=stamp, reason=reason, **extra)

    def _status(self, state: str, stamp=None, reason: str = "", **extra) -> None:
        agent = self._policy_label if self._agent == "policy" else f"planner ({self._params['planner_backend']})"
        doc = {"state": state, "reason": reason, "agent": agent,
               "forecast_stamp": None if stamp is None else stamp_ns(stamp) / _NS, **extra}
        self._pub_status.publish(String(data=json.dumps(doc)))

    def _diag(self, level: str, stage: str, message: str) -> None:
        self._pub_diag.publish(conversions.diagnostic_array(self.get_name(), stage, level, message,
                                                            self.get_clock().now().to_msg()))

    def close(self) -> None:
        self._closing = True
        self._stop.set()
        self._wake.set()
        self._worker.join(timeout=2.0)


def main(args=None) -> None:
    rclpy.init(args=args)
    logger = get_logger("manipulation_node")
    node, status = None, 0
    try:
        node = ManipulationNode()
        # Single-threaded on purpose: every callback only stores its message (the worker thread plans and
        # executes). rclpy's MultiThreadedExecutor (Jazzy 7.1) re-submits tasks still queued in its pool on
        # every spin without waiting; under CPU load that busy loop holds the GIL and delays every callback,
        # an instruction by tens of seconds (bench/bench_executor_resubmission.py).
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (ParameterValueError, StartupError) as err:
        logger.error(str(err))
        status = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown()
    if status:
        sys.exit(status)


if __name__ == "__main__":
    main()
