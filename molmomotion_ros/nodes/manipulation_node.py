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

Safety for hardware: the planner's backend comes from planner.yaml unless ``planner_backend`` names one; every
motion is timed under the velocity and ``acceleration_scaling``; grasp-target goals outside ``workspace_box_m``
(robot base frame) fail the forecast with the reason; joint states older than ``max_joint_state_age_s`` (receipt,
node clock) refuse planning and each step. Dry run (``execute: false``): the plan is published whole on
``manipulation/preview`` (trajectory_msgs/JointTrajectory in ``world_frame``, ``arm_joint_names``, time_from_start
running across the steps, each gripper step a hold of ``gripper_settle_s``) and ``manipulation/markers``
(visualization_msgs/MarkerArray in ``world_frame``: the grasp target's path by forward kinematics, the forecast's
query-point tracks, the gripper steps as labels), both reliable + transient-local; the status is "planned" (a state
of its own: "done" only ever follows execution) and nothing goes to the arm until ``~/execute``
(std_srvs/Trigger), which carries out that plan once, or refuses saying why: no plan, older than
``plan_expiry_s``, joint states stale, or the arm more than START_TOLERANCE_FACTOR x ``goal_tolerance_rad`` from
the plan's start.

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
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, MultiDOFJointTrajectory
from visualization_msgs.msg import Marker, MarkerArray

from .. import conversions
from ..conversions.joints import timed_trajectory_to_msg, trajectory_msg
from ..forecasting.types import ForecastInputError
from ..geometry import FitError
from ..node_specs.manipulation import MANIPULATION_NODE
from ..planning.planner import PlannerConfig, PlannerConfigError, PlannerUnavailableError, WorkspaceBounds
from ..planning.skills import SkillError, sequence_samples
from ..robot import ROBOT_BASE_M
from ..streams import NS, LatestMailbox, seconds_to_ns, stamp_ns
from .arm_interface import LATCHED, POLL_S, ArmFailure, ArmObservations, StatusReporter, Stopped, make_arm_commands
from .lifecycle import ManagedNode, TakenMessages
from .runtime import StartupError, run_node

FRAME_WAIT_S = 1.0  # wall s a forecast waits for its depth frame (the small forecast may overtake it in transit)
# ~/execute refuses when the arm is further than this many goal tolerances from the plan's start: the first goal
# would start far from the state (joint_trajectory_controller rejects that too, but only after the steps before).
START_TOLERANCE_FACTOR = 2.0


@dataclass
class PendingPlan:
    """A dry run's plan, kept for ~/execute."""

    steps: list
    summary: dict
    stamp: object  # the forecast's (builtin_interfaces/Time)
    planned_at_s: float  # node clock
    q_start: np.ndarray  # (7,) the joints it was planned from


class ManipulationNode(ManagedNode):
    def __init__(self) -> None:
        super().__init__(MANIPULATION_NODE)
        self._manipulator = self._report = self._arm = self._observed = None
        self._mailbox: LatestMailbox | None = None  # the next forecast to carry out
        self._worker: threading.Thread | None = None
        self._taken = TakenMessages()
        self._pending: PendingPlan | None = None  # a dry run's plan until ~/execute
        self._pending_lock = threading.Lock()
        self._pub_preview = self._pub_markers = None
        self._backend = ""  # the planner's backend (planner_backend, else planner.yaml's)
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
        self._report = StatusReporter(self, f"planner ({self._backend})")
        self._arm = make_arm_commands(self, self._params, on_stop=self._drop_pending)
        self._pub_preview = self.create_lifecycle_publisher(JointTrajectory, "manipulation/preview", LATCHED)
        self._pub_markers = self.create_lifecycle_publisher(MarkerArray, "manipulation/markers", LATCHED)

    def activate(self) -> None:
        self._report.relay_forecaster()
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
        self.while_active(self.create_service(Trigger, "~/execute", self._on_execute))
        self._mailbox = LatestMailbox()
        self._worker = threading.Thread(target=self._work, args=(self._mailbox,), name="manipulation", daemon=True)
        self._worker.start()
        self._report.status("idle")
        self.get_logger().info(f"ready: planner {self._backend}" + ("" if self._params["execute"] else
                                                                      " (dry run: execute = false)"))

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
        self._set_pending(None)

    def cleanup(self) -> None:
        if self._arm is not None:
            self._arm.close()
        self._manipulator = self._report = self._arm = None

    def _load_planner(self):
        p = self._params
        # Empty parameters leave planner.yaml's values (its backend, MoveIt configuration and workspace) in force.
        overrides = {"backend": p["planner_backend"], "moveit_config": p["moveit_config"]}
        overrides = {key: value for key, value in overrides.items() if value}
        try:
            if p["workspace_box_m"]:
                # The planner's world has the robot base at robot.yaml's base position (the model world).
                overrides["workspace"] = WorkspaceBounds.from_base_box(p["workspace_box_m"], ROBOT_BASE_M)
            config = PlannerConfig.from_yaml(p["planner_config"] or None, **overrides)
            self._backend = config.backend
            from ..planning.manipulator import ForecastManipulator

            return ForecastManipulator(config, free_scaling=p["free_velocity_scaling"],
                                       contact_scaling=p["contact_velocity_scaling"],
                                       acceleration_scaling=p["acceleration_scaling"])
        except (PlannerConfigError, PlannerUnavailableError) as err:
            raise StartupError(f"manipulation_node cannot build its planner: {err}") from None

    # --- callbacks: convert and store -----------------------------------------------------------
    def apply_parameter(self, name: str, value) -> None:
        if name in ("free_velocity_scaling", "contact_velocity_scaling", "acceleration_scaling"):
            skills = self._manipulator.skills
            skills.free_scaling = self._params["free_velocity_scaling"]
            skills.contact_scaling = self._params["contact_velocity_scaling"]
            skills.acceleration_scaling = self._params["acceleration_scaling"]
        elif name == "frame_buffer_s" and self._observed is not None:
            self._observed.set_buffer_s(value)

    def _on_forecast(self, msg: MultiDOFJointTrajectory, info) -> None:
        if not self._taken.first_time(info):
            return  # sent again to the re-activated subscription: carried out (or refused) already
        self._arm.resume()
        self._mailbox.put(msg)

    def _drop_pending(self) -> None:
        """~/stop: the queued request and a dry run's plan are dropped."""
        if self._mailbox is not None:
            self._mailbox.discard()
        self._set_pending(None)

    def _set_pending(self, plan: PendingPlan | None) -> PendingPlan | None:
        """Replace the dry run's plan; the one it replaced."""
        with self._pending_lock:
            old, self._pending = self._pending, plan
        return old

    def _on_execute(self, request, response):
        """~/execute: carry out the dry run's plan (on the worker), or refuse saying why."""
        with self._pending_lock:
            plan = self._pending
            problem = self._execute_problem(plan)
            if problem is None:
                self._pending = None  # a plan is carried out once
        if problem is not None:
            self.get_logger().warning(f"~/execute refused: {problem}")
            response.success, response.message = False, problem
            return response
        self._arm.resume()
        self._mailbox.put(plan)
        response.success = True
        response.message = (f"executing the plan of the forecast at {stamp_ns(plan.stamp) / NS:.3f} s: "
                            f"{', '.join(plan.summary['steps'])}")
        return response

    def _execute_problem(self, plan: PendingPlan | None) -> str | None:
        if plan is None:
            return "no plan to execute (a dry run's plan is kept until it is executed, stopped or replaced)"
        age_s = self._arm.now_s() - plan.planned_at_s
        if age_s > self._params["plan_expiry_s"]:
            return f"the plan is {age_s:.1f} s old (plan_expiry_s {self._params['plan_expiry_s']}): send a new forecast"
        problem = self._joint_state_problem()
        if problem:
            return problem
        q = self._observed.joints()[0]
        limit = self._params["goal_tolerance_rad"] * START_TOLERANCE_FACTOR
        moved = float(np.max(np.abs(q - plan.q_start)))
        if moved > limit:
            return (f"the arm has moved {moved:.3f} rad (max joint) from the plan's start since planning (limit "
                    f"{limit:.3f} rad = {START_TOLERANCE_FACTOR} x goal_tolerance_rad): send a new forecast")
        return None

    def _joint_state_problem(self) -> str | None:
        """Why the joint states may not be acted on (none, or older than max_joint_state_age_s), or None."""
        age_s = self._observed.joints_age_s() if self._observed is not None else None
        if age_s is None:
            return "no joint_states received"
        if age_s > self._params["max_joint_state_age_s"]:
            return (f"the newest joint_states is {age_s:.2f} s old (max_joint_state_age_s "
                    f"{self._params['max_joint_state_age_s']}): is the arm's driver publishing?")
        return None

    # --- worker: plan and execute one forecast at a time ------------------------------------------
    def _work(self, mailbox: LatestMailbox) -> None:
        while (item := mailbox.take()) is not None:
            # A forecast to plan (and execute), or a dry run's plan that ~/execute released.
            stamp = item.stamp if isinstance(item, PendingPlan) else item.header.stamp
            try:
                if isinstance(item, PendingPlan):
                    self._execute(item.steps, item.stamp, item.summary)
                else:
                    self._handle(item)
            except Stopped:
                self._report.status("stopped", stamp=stamp, reason=self._arm.stop_reason)
            except Exception as err:  # noqa: BLE001  (a node must survive a bug in one request)
                self.get_logger().error(f"unexpected error while handling a forecast: {type(err).__name__}: {err}")
                self._report.status("failed", stamp=stamp, reason=f"{type(err).__name__}: {err}")

    def _handle(self, msg: MultiDOFJointTrajectory) -> None:
        stamp = msg.header.stamp
        self._set_pending(None)  # a new forecast replaces a dry run's plan
        if msg.header.frame_id != self._params["world_frame"]:
            return self._fail(stamp, f"forecast in frame {msg.header.frame_id!r}, expected "
                                     f"{self._params['world_frame']!r}")
        try:
            points_t0, hypotheses, _ = conversions.msg_to_forecast_hypotheses(msg)
        except conversions.ConversionError as err:
            return self._fail(stamp, f"forecast refused: {err}")
        forecast_world = (points_t0, hypotheses)  # for the dry run's markers, in world_frame as received
        points_t0, hypotheses = self._to_model(points_t0), self._to_model(hypotheses)
        frame = self._frame_at(stamp_ns(stamp))
        deadline = time.monotonic() + FRAME_WAIT_S
        while isinstance(frame, str) and time.monotonic() < deadline:
            time.sleep(0.02)  # the forecast (small) may overtake its depth frame (large) in transit
            frame = self._frame_at(stamp_ns(stamp))
        if isinstance(frame, str):
            return self._fail(stamp, frame)
        depth, camera, q_arm = frame
        problem = self._joint_state_problem()
        if problem:
            return self._fail(stamp, problem)
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
            self._set_pending(PendingPlan(plan.steps, summary, stamp, self._arm.now_s(), np.asarray(q_arm).copy()))
            self._publish_preview(plan.steps, q_arm, *forecast_world)
            self._report.status("planned", stamp=stamp, reason="dry run (execute = false): nothing was sent to the "
                                "arm; the plan is on manipulation/preview and manipulation/markers; call ~/execute "
                                f"within plan_expiry_s = {self._params['plan_expiry_s']} s to carry it out", **summary)
            return None
        return self._execute(plan.steps, stamp, summary)

    def _execute(self, steps, stamp, summary: dict) -> None:
        """Send the steps in turn, each after the previous one has arrived; the outcome goes to the status."""
        self._report.status("executing", stamp=stamp, **summary)
        for step in steps:
            self._arm.check()
            problem = self._joint_state_problem()
            if problem:
                return self._fail(stamp, f"{step.label}: not sent: {problem}", **summary)
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

    # --- dry run: the plan for RViz ----------------------------------------------------------------------
    def _publish_preview(self, steps, q_start, points_t0, hypotheses) -> None:
        """The whole sequence on manipulation/preview and its grasp-target path, the forecast and the gripper
        steps on manipulation/markers (world_frame)."""
        from ..planning.manipulator import consensus_tracks

        p = self._params
        samples = sequence_samples(steps, q_start, p["gripper_settle_s"])
        preview = trajectory_msg(samples.times_s, samples.positions_rad, self._arm.arm_joint_names)
        preview.header.frame_id = p["world_frame"]
        preview.header.stamp = self.get_clock().now().to_msg()
        self._pub_preview.publish(preview)
        T_world_model = self._T_world_model()
        fk = self._manipulator.kinematics.fk
        tcp_model = np.array([fk(q)[:3, 3] for q in samples.positions_rad])  # (N, 3)
        tcp = tcp_model @ T_world_model[:3, :3].T + T_world_model[:3, 3]
        at = {t: tcp[i] for i, t in enumerate(samples.times_s)}
        tracks = consensus_tracks(hypotheses)  # (P, F, 3) in world_frame, what the planner followed
        markers = [Marker(action=Marker.DELETEALL)]
        markers.append(self._marker("tcp_path", 0, Marker.LINE_STRIP, tcp, (0.1, 0.6, 1.0), 0.005))
        for i, track in enumerate(tracks):
            markers.append(self._marker("forecast", i, Marker.LINE_STRIP, np.vstack([points_t0[i], track]),
                                        (1.0, 0.5, 0.0), 0.003))
        markers.append(self._marker("forecast_t0", 0, Marker.SPHERE_LIST, points_t0, (1.0, 0.9, 0.0), 0.01))
        for i, (t, label, opening_m) in enumerate(samples.gripper_events):
            text = self._marker("gripper", i, Marker.TEXT_VIEW_FACING, [at[t] + [0.0, 0.0, 0.04]],
                                (1.0, 1.0, 1.0), 0.02)
            text.text = f"{label} ({opening_m * 2000:.0f} mm)"
            markers.append(text)
        self._pub_markers.publish(MarkerArray(markers=markers))

    def _marker(self, ns: str, marker_id: int, kind: int, points_m, rgb, size_m: float) -> Marker:
        marker = Marker(ns=ns, id=marker_id, type=kind, action=Marker.ADD, lifetime=Duration())
        marker.header.frame_id = self._params["world_frame"]
        marker.header.stamp = self.get_clock().now().to_msg()
        marker.pose.orientation.w = 1.0
        marker.scale.x = marker.scale.y = marker.scale.z = size_m
        marker.color.r, marker.color.g, marker.color.b, marker.color.a = (*map(float, rgb), 1.0)
        if kind == Marker.TEXT_VIEW_FACING:
            marker.pose.position = Point(x=float(points_m[0][0]), y=float(points_m[0][1]), z=float(points_m[0][2]))
        else:
            marker.points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in np.asarray(points_m)]
        return marker

    def _T_world_model(self) -> np.ndarray:
        """world_frame ← the planner's model world."""
        return np.linalg.inv(self._T_model_world)

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
