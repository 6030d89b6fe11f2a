"""manipulation_node: a thin ROS 2 adapter over the forecast-driven planner
(:class:`~molmomotion_ros.planning.manipulator.ForecastManipulator`): each new forecast is planned and
executed. (A learned closed-loop policy is ``policy_node``.)

Subscribes (relative names, remappable):
  * ``forecast/hypotheses`` (trajectory_msgs/MultiDOFJointTrajectory, the forecaster's K hypotheses;
    encoding in :mod:`molmomotion_ros.conversions.forecasts`, reliable + transient-local).
  * ``camera/depth/image_raw`` and ``camera/color/camera_info`` (sensor-data QoS): the depth frame with the
    forecast's stamp t0 (else the nearest complete one within ``max_frame_offset_s``) gives the target's
    shape and the obstacles; ``camera/pose`` (or TF with ``extrinsics_source: tf``), ``joint_states``: see
    :mod:`.arm_interface`. A plumb_bob-distorted camera_info's depth is rectified first; other models are refused.

Frames: forecasts and camera poses arrive in ``world_frame``; the planner's model world has the robot base at
config/robot.yaml's position, so both are moved by T_model_world = T_model_base · inv(T_world_base), with
T_world_base = ``robot_base_pose`` (identity for the harness's world; a real cell sets world_frame fr3_link0 and
an identity robot_base_pose).

Publishes ``arm_controller/joint_trajectory`` (one planned segment at a time: approach, descend, carry, ...,
each sent when the previous one has arrived), ``gripper/command`` (with ``arm_interface: action`` instead:
FollowJointTrajectory goals on ``arm_action``, each sent after the previous one's result, and GripperCommand
goals on ``gripper_action``; a rejected or aborted goal ends the sequence "failed" with the controller's reason),
``manipulation/status`` (``agent`` = "planner (<backend>)", ``forecast_stamp`` = the forecast's, plus "skill",
"steps", "planning_time_s", "carry_follows_forecast") and ``/diagnostics``; serves ``~/stop`` (abort at once:
the controller holds the current position and the rest of the sequence is dropped). See :mod:`.arm_interface`.

Planning and execution run on one worker thread (a newer forecast replaces one not yet started), so
callbacks only convert and store. With ``use_sim_time`` the waits follow the simulator's /clock.

A managed node (:mod:`.lifecycle`): configure checks the parameters, builds the planner (a failure, e.g. no
moveit_py, leaves the node unconfigured with the reason) and the command and status publishers; activate
subscribes, serves ``~/stop``, starts the worker and publishes the "idle" status; deactivate stops the arm as
``~/stop`` does (the hold is sent; a sequence under way ends with the "stopped" status) and stops the worker;
cleanup releases the planner. A forecast taken before a deactivation is not carried out again when the
re-activated subscription is sent it once more (transient-local).
"""

from __future__ import annotations

import threading
import time

import numpy as np
from trajectory_msgs.msg import MultiDOFJointTrajectory

from .. import conversions
from ..conversions.joints import timed_trajectory_to_msg
from ..forecasting.types import ForecastInputError
from ..geometry import FitError
from ..node_specs.manipulation import MANIPULATION_NODE
from ..planning.planner import PlannerConfig, PlannerConfigError, PlannerUnavailableError
from ..planning.skills import SkillError
from ..robot import ROBOT_BASE_M
from ..streams import NS, LatestMailbox, seconds_to_ns, stamp_ns
from .arm_interface import LATCHED, POLL_S, ArmFailure, ArmObservations, StatusReporter, Stopped, make_arm_commands
from .lifecycle import ManagedNode, TakenMessages
from .runtime import StartupError, run_node

FRAME_WAIT_S = 1.0  # wall s a forecast waits for its depth frame (the small forecast may overtake it in transit)


class ManipulationNode(ManagedNode):
    def __init__(self) -> None:
        super().__init__(MANIPULATION_NODE)
        self._manipulator = self._report = self._arm = self._observed = None
        self._mailbox: LatestMailbox | None = None  # the next forecast to carry out
        self._worker: threading.Thread | None = None
        self._taken = TakenMessages()
        self._T_model_world = np.eye(4)  # world_frame → the planner's model world (robot_base_pose)

    # --- lifecycle ------------------------------------------------------------------------------------
    def configure(self) -> None:
        try:
            T_world_base = conversions.xyz_quat_to_matrix(self._params["robot_base_pose"])
        except conversions.ConversionError as err:
            raise StartupError(f"manipulation_node: bad robot_base_pose: {err}") from None
        T_model_base = np.eye(4)
        T_model_base[:3, 3] = ROBOT_BASE_M
        self._T_model_world = T_model_base @ np.linalg.inv(T_world_base)
        self._manipulator = self._load_planner()
        self._report = StatusReporter(self, f"planner ({self._params['planner_backend']})")
        self._arm = make_arm_commands(self, self._params, on_stop=self._drop_pending)

    def activate(self) -> None:
        p = self._params
        self._observed = ArmObservations(self, p["frame_buffer_s"], self._report.diag,
                                         arm_joint_names=p["arm_joint_names"],
                                         finger_joint_names=p["finger_joint_names"],
                                         gripper_joint_states=p["gripper_joint_states"],
                                         finger_fallback=lambda arm=self._arm: arm.finger_opening_m,
                                         extrinsics=p["extrinsics_source"], world_frame=p["world_frame"],
                                         camera_frame=p["camera_frame"], tf_timeout_s=p["tf_timeout_s"])
        self.while_active(self.create_subscription(MultiDOFJointTrajectory, "forecast/hypotheses", self._on_forecast,
                                                   LATCHED))
        self.while_active(self._arm.stop_service())
        self._mailbox = LatestMailbox()
        self._worker = threading.Thread(target=self._work, args=(self._mailbox,), name="manipulation", daemon=True)
        self._worker.start()
        self._report.status("idle")
        self.get_logger().info(f"ready: planner {self._params['planner_backend']}")

    def deactivate(self) -> None:
        """Stop the arm (the hold goes out) and the worker (a sequence under way ends with "stopped")."""
        if self._arm is not None:
            self._arm.stop("stopped: the node was deactivated")
        if self._mailbox is not None:
            self._mailbox.close()
            self._worker.join(timeout=5.0)
            self._mailbox = self._worker = None
        if self._observed is not None:
            self._observed.close()
        self._observed = None

    def cleanup(self) -> None:
        if self._arm is not None:
            self._arm.close()
        self._manipulator = self._report = self._arm = None

    def _load_planner(self):
        overrides = {"backend": self._params["planner_backend"]}
        try:
            config = PlannerConfig.from_yaml(self._params["planner_config"] or None, **overrides)
            from ..planning.manipulator import ForecastManipulator

            return ForecastManipulator(config, free_scaling=self._params["free_velocity_scaling"],
                                       contact_scaling=self._params["contact_velocity_scaling"])
        except (PlannerConfigError, PlannerUnavailableError) as err:
            raise StartupError(f"manipulation_node cannot build its planner: {err}") from None

    # --- callbacks: convert and store -----------------------------------------------------------
    def apply_parameter(self, name: str, value) -> None:
        if name in ("free_velocity_scaling", "contact_velocity_scaling"):
            skills = self._manipulator.skills
            skills.free_scaling = self._params["free_velocity_scaling"]
            skills.contact_scaling = self._params["contact_velocity_scaling"]
        elif name == "frame_buffer_s" and self._observed is not None:
            self._observed.set_buffer_s(value)

    def _on_forecast(self, msg: MultiDOFJointTrajectory, info) -> None:
        if not self._taken.first_time(info):
            return  # sent again to the re-activated subscription: carried out (or refused) already
        self._arm.resume()
        self._mailbox.put(msg)

    def _drop_pending(self) -> None:
        if self._mailbox is not None:
            self._mailbox.discard()

    # --- worker: plan and execute one forecast at a time ------------------------------------------
    def _work(self, mailbox: LatestMailbox) -> None:
        while (msg := mailbox.take()) is not None:
            try:
                self._handle(msg)
            except Stopped:
                self._report.status("stopped", stamp=msg.header.stamp, reason=self._arm.stop_reason)
            except Exception as err:  # noqa: BLE001  (a node must survive a bug in one request)
                self.get_logger().error(f"unexpected error while handling a forecast: {type(err).__name__}: {err}")
                self._report.status("failed", stamp=msg.header.stamp, reason=f"{type(err).__name__}: {err}")

    def _handle(self, msg: MultiDOFJointTrajectory) -> None:
        stamp = msg.header.stamp
        if msg.header.frame_id != self._params["world_frame"]:
            return self._fail(stamp, f"forecast in frame {msg.header.frame_id!r}, expected "
                                     f"{self._params['world_frame']!r}")
        try:
            points_t0, hypotheses, _ = conversions.msg_to_forecast_hypotheses(msg)
        except conversions.ConversionError as err:
            return self._fail(stamp, f"forecast refused: {err}")
        points_t0, hypotheses = self._to_model(points_t0), self._to_model(hypotheses)
        frame = self._frame_at(stamp_ns(stamp))
        deadline = time.monotonic() + FRAME_WAIT_S
        while isinstance(frame, str) and time.monotonic() < deadline:
            time.sleep(0.02)  # the forecast (small) may overtake its depth frame (large) in transit
            frame = self._frame_at(stamp_ns(stamp))
        if isinstance(frame, str):
            return self._fail(stamp, frame)
        depth, camera, q_arm = frame
        self._report.status("planning", stamp=stamp)
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
            self._report.status("done", stamp=stamp, reason="planned only (execute = false)", **summary)
            return None
        self._report.status("executing", stamp=stamp, **summary)
        for step in plan.steps:
            self._arm.check()
            try:
                if step.trajectory is not None:
                    problem = self._run_trajectory(step.trajectory)
                else:
                    problem = None
                    self._arm.send_gripper(step.gripper_opening_m)
                    self._arm.sleep(self._params["gripper_settle_s"])
            except ArmFailure as err:  # the action interface: the controller's reason
                problem = str(err)
            if problem:
                return self._fail(stamp, f"{step.label}: {problem}", **summary)
        self._report.status("done", stamp=stamp, **summary)
        return None

    def _frame_at(self, t_ns: int):
        """(depth_m, camera, q_arm) at the forecast's stamp, or a sentence saying what is missing."""
        # The frame the forecast was made from; else the nearest complete one (sensor-data QoS may drop a
        # depth image or its camera_info, and the scene holds still while this node is idle).
        offset_s = self._params["max_frame_offset_s"]
        near = self._observed.frames.near(t_ns, seconds_to_ns(offset_s))
        complete = [frame for frame in near if frame.complete]
        if not near:
            return (f"no depth frame within {offset_s} s of the forecast's stamp {t_ns / NS:.3f} s "
                    f"({self._observed.held()})")
        if not complete:
            return (f"no camera_info with the stamp of any of the {len(near)} depth frames within {offset_s} s of "
                    f"the forecast's stamp {t_ns / NS:.3f} s")
        joints = self._observed.joints()
        if joints is None:
            return "no joint_states received"
        view = self._observed.view(complete[0])  # rectified, posed in world_frame (camera/pose or TF)
        if isinstance(view, str):
            return view
        camera, depth, _ = view
        return depth, camera.with_pose(self._T_model_world @ camera.T_world_cam), joints[0].copy()

    def _to_model(self, points_world_m: np.ndarray) -> np.ndarray:
        """world_frame points (..., 3) → the planner's model world; untouched when that is the same frame, so
        that the simulated graphs plan bit for bit as before."""
        if np.array_equal(self._T_model_world, np.eye(4)):
            return points_world_m
        return points_world_m @ self._T_model_world[:3, :3].T + self._T_model_world[:3, 3]

    def _run_trajectory(self, trajectory) -> str | None:
        """Send one timed trajectory and wait until the joints arrive (the action interface: until the
        controller's result); a problem sentence or None."""
        msg = timed_trajectory_to_msg(trajectory, joint_names=self._arm.arm_joint_names)
        limit = trajectory.duration_s * self._params["execution_timeout_factor"] + 1.0
        if self._arm.waits_for_result:
            # The controller judges arrival: goal_tolerance_rad per joint, and the same time past the end that
            # the topic interface allows (goal_time_tolerance); our own wait ends a little later.
            self._arm.send_trajectory(msg, timeout_s=limit + 1.0, goal_tolerance_rad=self._params["goal_tolerance_rad"],
                                      goal_time_s=limit - trajectory.duration_s)
            return None
        self._arm.send_trajectory(msg)
        goal = trajectory.positions_rad[-1]
        start = self._arm.now_s()
        self._arm.sleep(trajectory.duration_s)
        while True:
            self._arm.check()
            joints = self._observed.joints()
            q = None if joints is None else joints[0]
            if q is not None and np.max(np.abs(q - goal)) <= self._params["goal_tolerance_rad"]:
                return None
            if self._arm.now_s() - start > limit:
                error = float("nan") if q is None else float(np.max(np.abs(q - goal)))
                return (f"the arm did not reach the trajectory's end within {limit:.1f} s "
                        f"(max joint error {error:.3f} rad)")
            time.sleep(POLL_S)

    def _fail(self, stamp, reason: str, **extra) -> None:
        self.get_logger().warning(f"forecast not carried out: {reason}")
        self._report.diag("WARN", "plan", reason)
        self._report.status("failed", stamp=stamp, reason=reason, **extra)


def main(args=None) -> None:
    run_node(MANIPULATION_NODE.name, ManipulationNode, args)


if __name__ == "__main__":
    main()
