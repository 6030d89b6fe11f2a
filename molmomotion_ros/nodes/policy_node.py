"""policy_node: a thin ROS 2 adapter over a learned closed-loop policy
(:class:`molmomotion_policies.controller.PolicyController`). (The forecast-driven planner is
``manipulation_node``.)

Subscribes (relative names, remappable):
  * ``instruction`` (std_msgs/String, reliable; transient-local and volatile publishers alike): each starts an
    episode of the policy,
    which observes ``camera/color/image_raw`` (rgb8/bgr8) with the depth and camera_info of the same stamp,
    predicts a chunk of grasp-target set-points at 15 fps, executes it through IK and observes again, until
    it goes idle after a release or its sample budget is spent. A new instruction replaces the running
    episode. With ``instruction_parser`` (default) it is read by :mod:`molmomotion_ros.language` first, as
    forecaster_node reads it: a refused one ends "failed" on ``manipulation/status`` with the reason (the
    running episode goes on), an accepted one conditions the policy in its template phrasing.
  * ``forecast/hypotheses`` (trajectory_msgs/MultiDOFJointTrajectory): a forecast-conditioned policy (C)
    reads the forecast of the episode's first frame (the episode then starts from that frame); without one
    within ``frame_timeout_s`` it acts without a forecast, as in training.
  * ``camera/color/image_raw``, ``camera/depth/image_raw``, ``camera/color/camera_info`` (sensor-data QoS),
    ``camera/pose``, ``joint_states``: see :mod:`.arm_interface`.

Publishes ``arm_controller/joint_trajectory`` (each chunk of 15 fps set-points through IK, a zero-order
hold), ``gripper/command`` (with ``arm_interface: action``: a FollowJointTrajectory goal per chunk, waited for
to its result, and GripperCommand goals; a rejected or aborted goal ends the episode "failed" with the
controller's reason), ``manipulation/status`` (``agent`` = the policy's label, ``forecast_stamp`` =
the episode's first frame, plus "chunks", "samples", "ik_failures" and, forecast-conditioned,
"forecast_used"; ``retryable`` is false: an episode is the policy's one closed-loop attempt) and
``/diagnostics``; serves ``~/stop`` (the controller holds the current position; the episode ends). See
:mod:`.arm_interface`.

The episodes run on one worker thread, so callbacks only convert and store. With ``use_sim_time`` the
waits follow the simulator's /clock.

A managed node (:mod:`.lifecycle`): configure checks the parameters, loads the policy checkpoint (a bad one
leaves the node unconfigured with the reason) and creates the command and status publishers; activate
subscribes, serves ``~/stop``, starts the worker and publishes the "idle" status; deactivate stops the arm as
``~/stop`` does (the hold is sent; an episode under way ends with the "stopped" status) and stops the worker;
cleanup releases the policy. An instruction taken before a deactivation does not start a new episode when the
re-activated subscription is sent it once more (transient-local).
"""

from __future__ import annotations

import threading
import time

import numpy as np
from rclpy.time import Time
from std_msgs.msg import String
from trajectory_msgs.msg import MultiDOFJointTrajectory

from .. import conversions
from ..conversions.joints import trajectory_msg
from ..language import Refusal, default_fallback, instruction_for_model
from ..node_specs.policy import POLICY_NODE
from ..robot import GRIPPER_OPEN_M
from ..streams import NS, LatestMailbox, stamp_ns
from .arm_interface import LATCHED, POLL_S, ArmFailure, ArmObservations, StatusReporter, Stopped, make_arm_commands
from .lifecycle import ManagedNode, TakenMessages
from .runtime import StartupError, run_node

SAMPLE_S = 1.0 / 15.0  # the policies' action rate (15 fps, as the demonstrations)


class Superseded(Exception):
    """A new instruction arrived while the policy ran an episode."""


class PolicyNode(ManagedNode):
    def __init__(self) -> None:
        super().__init__(POLICY_NODE)
        self._policy = self._kinematics = self._report = self._arm = self._observed = None
        self._lock = threading.Lock()
        # The next instruction: (text, node-clock ns on arrival, the newest colour stamp held then, whether it was
        # published before this node became active).
        self._mailbox: LatestMailbox | None = None
        self._worker: threading.Thread | None = None
        self._forecast_msg: MultiDOFJointTrajectory | None = None  # latest, for a forecast-conditioned policy
        self._preempt = threading.Event()
        self._episode_stamp = None  # the stamp of the running episode's first frame
        self._used_forecast_ns = -1  # forecast-conditioned: the stamp of the last forecast used
        self._episode_running = False
        self._active_since_ns = 0  # wall clock (ns since the epoch) of the last activation
        self._taken = TakenMessages()

    # --- lifecycle ------------------------------------------------------------------------------------
    def configure(self) -> None:
        self._policy, label = self._load_policy()
        if self._params["instruction_parser"]:
            default_fallback()  # the policy has loaded the sentence encoder: ~1 s now, not at an instruction
        self._report = StatusReporter(self, label)
        self._arm = make_arm_commands(self, self._params, on_stop=self._drop_pending)

    def activate(self) -> None:
        self._report.relay_forecaster()
        self._active_since_ns = time.time_ns()
        self._forecast_msg = None
        p = self._params
        self._observed = ArmObservations(self, p["frame_buffer_s"], self._report.diag, color=True,
                                         arm_joint_names=p["arm_joint_names"],
                                         finger_joint_names=p["finger_joint_names"],
                                         gripper_joint_states=p["gripper_joint_states"],
                                         finger_fallback=lambda arm=self._arm: arm.finger_opening_m)
        self.while_active(self.create_subscription(MultiDOFJointTrajectory, "forecast/hypotheses", self._on_forecast,
                                                   LATCHED))
        self.subscribe_instructions(self._on_instruction)
        self.while_active(self._arm.stop_service())
        self._mailbox = LatestMailbox()
        self._worker = threading.Thread(target=self._work, args=(self._mailbox,), name="policy", daemon=True)
        self._worker.start()
        self._report.status("idle")
        self.get_logger().info(f"ready: policy {self._report.agent}")

    def deactivate(self) -> None:
        """Stop the arm (the hold goes out) and the worker (an episode under way ends with "stopped")."""
        if self._arm is not None:
            self._arm.stop("stopped: the node was deactivated")
        if self._mailbox is not None:
            self._mailbox.close()
            self._worker.join(timeout=5.0)
            self._mailbox = self._worker = None
        self._observed = None

    def cleanup(self) -> None:
        if self._arm is not None:
            self._arm.close()
        self._policy = self._kinematics = self._report = self._arm = None

    def _load_policy(self):
        try:
            import torch

            from molmomotion_policies.controller import PolicyController
            from molmomotion_policies.observation import PolicyError
        except ImportError as err:
            raise StartupError(f"policy_node needs molmomotion_policies and torch: {err}") from None
        from ..planning.kinematics import PandaKinematics

        torch.set_num_threads(1)  # one chunk per 4 samples (267 ms): one thread keeps up and leaves a core free
        checkpoint = self._params["policy_checkpoint"]
        try:
            policy, meta = PolicyController.from_checkpoint(checkpoint)
        except (PolicyError, OSError, RuntimeError, KeyError) as err:
            raise StartupError(f"policy_node cannot load policy {checkpoint!r}: {err}") from None
        self._kinematics = PandaKinematics()
        return policy, f"policy-{policy.policy.cfg.variant} ({checkpoint}, step {meta.get('step', '?')})"

    # --- callbacks: convert and store -----------------------------------------------------------
    def apply_parameter(self, name: str, value) -> None:
        if name == "frame_buffer_s" and self._observed is not None:
            self._observed.set_buffer_s(value)

    def _on_instruction(self, msg: String, info) -> None:
        if not self._taken.first_time(info):
            return  # sent again to the re-activated subscription: its episode ran already
        text = " ".join(msg.data.split())
        if not text:
            self.get_logger().warning("empty instruction ignored")
            self._report.diag("WARN", "instruction", "empty instruction ignored")
            return
        if self._params["instruction_parser"]:
            understood = instruction_for_model(text)
            if isinstance(understood, Refusal):
                self.get_logger().warning(f"instruction refused: {understood.reason}")
                self._report.diag("WARN", "instruction", understood.reason)
                self._report.status("failed", reason=understood.reason, instruction=text, source="policy_node",
                                    refusal=understood.kind)
                return
            if understood != text:
                self.get_logger().info(f"instruction {text!r} is given to the policy as {understood!r}")
            text = understood
        # The episode starts from a frame received after this: one already held may show the scene before a
        # reset, and the node's clock (from /clock) can lag the frames' stamps.
        newest_ns = self._observed.frames.newest_ns("color")
        # Published before this node was active (then delivered by transient-local durability on activation):
        # its forecast may have been made before this node could hear it.
        early = info.get("source_timestamp", 0) < self._active_since_ns
        self.get_logger().info(f"instruction: {text!r}" + (" (replaces the running episode)"
                                                           if self._episode_running else ""))
        self._arm.resume()
        self._preempt.set()  # a running episode ends; the worker takes this one next
        self._mailbox.put((text, self.get_clock().now().nanoseconds, -1 if newest_ns is None else newest_ns, early))

    def _on_forecast(self, msg: MultiDOFJointTrajectory) -> None:
        with self._lock:
            self._forecast_msg = msg  # read by a forecast-conditioned policy at the episode's start

    def _drop_pending(self) -> None:
        if self._mailbox is not None:
            self._mailbox.discard()

    # --- worker: one closed-loop episode per instruction -------------------------------------------
    def _work(self, mailbox: LatestMailbox) -> None:
        while (request := mailbox.take()) is not None:
            self._preempt.clear()
            self._run_episode(*request)

    def _run_episode(self, instruction: str, received_ns: int, held_ns: int, early: bool) -> None:
        # Until the first frame is chosen the episode is known by the instruction's arrival (node clock), so
        # that even an episode failing before it has a stamp newer than the last (the episode runner matches
        # outcomes to episodes by it).
        self._episode_stamp = Time(nanoseconds=received_ns).to_msg()
        self._episode_running = True
        try:
            self._episode(instruction, received_ns, held_ns, early)
        except Stopped:
            self._report.status("stopped", stamp=self._episode_stamp, reason=self._arm.stop_reason, retryable=False)
        except ArmFailure as err:  # the action interface: the controller refused or aborted a command
            self._fail(str(err))
        except Superseded:
            self._report.status("stopped", stamp=self._episode_stamp, reason="replaced by a new instruction",
                                retryable=False)
        except Exception as err:  # noqa: BLE001  (a node must survive a bug in one episode)
            self.get_logger().error(f"unexpected error in the policy episode: {type(err).__name__}: {err}")
            self._report.status("failed", stamp=self._episode_stamp, reason=f"{type(err).__name__}: {err}",
                                retryable=False)
        finally:
            self._episode_running = False

    def _episode(self, instruction: str, received_ns: int, held_ns: int, early: bool) -> None:
        """One closed-loop episode: ``received_ns`` is the instruction's arrival on the node clock, ``held_ns``
        the newest frame stamp held then (the first frame must be newer than both); ``early``: the instruction
        was published before this node became active."""
        from molmomotion_policies.controller import forecast_inputs, pack_forecast
        from molmomotion_policies.observation import FORECAST_POINTS, FORECAST_STEPS, PolicyError
        from molmomotion_policies.runner import Frame, NoFrame, run_policy_loop

        controller, forecast, start_ns = self._policy, None, received_ns
        if controller.needs_forecast:
            # This instruction's forecast: newer than the last one used and made at most max_frame_offset_s
            # before the instruction reached this node (the forecaster hears it about when this node does) — up
            # to frame_buffer_s before for an instruction published before this node became active (a forecaster
            # active sooner may have answered it seconds before this node could hear it). Where a lifecycle
            # manager activates the graph before the first instruction (the episode runner waits for 'active'),
            # no instruction is early.
            slack_s = self._params["frame_buffer_s" if early else "max_frame_offset_s"]
            oldest_ns = max(received_ns - int(slack_s * NS), self._used_forecast_ns + 1)

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
                self._report.diag("WARN", "forecast/hypotheses", f"acting without a forecast: {err}")
                forecast = pack_forecast(np.zeros((FORECAST_POINTS, FORECAST_STEPS, 3)),
                                         np.zeros((FORECAST_POINTS, 3)), False)
        frame = self._wait_until(lambda: self._frame(max(start_ns, held_ns + 1)))
        if frame is None:
            return self._fail(f"no colour + depth + camera_info frame after the instruction within "
                              f"{self._params['frame_timeout_s']} s")
        controller.reset(instruction, forecast)
        self._episode_stamp = frame[3]
        report = {}
        if forecast is not None:
            report["forecast_used"] = bool(forecast["forecast_valid"][0])
        used = {None: "", True: ", with its forecast", False: ", without a forecast"}[report.get("forecast_used")]
        if report.get("forecast_used"):  # how far from the instruction's arrival it was made (the slack it needed)
            used += f" (made {(start_ns - received_ns) / NS:+.3f} s from the instruction's arrival)"
        self.get_logger().info(f"episode: {instruction!r} from the frame at {stamp_ns(frame[3]) / NS:.3f} s{used}")
        self._report.status("executing", stamp=self._episode_stamp, retryable=False, chunks=0, samples=0,
                            ik_failures=0, **report)
        so_far = {}  # the loop's counts after each chunk, for a failure's status

        def count(progress, _targets) -> None:
            so_far.update(chunks=progress.chunks, samples=progress.samples, ik_failures=progress.ik_failures)

        try:
            outcome = run_policy_loop(controller, _RosRobot(self), self._kinematics, Frame(*frame[:3]), on_chunk=count)
        except NoFrame as err:
            return self._fail(f"{err} within {self._params['frame_timeout_s']} s", **so_far, **report)
        why = controller.reason or "idle after a release"
        self.get_logger().info(f"episode done after {outcome.chunks} chunks ({why})")
        self._report.status("done", stamp=self._episode_stamp, reason=controller.reason, retryable=False,
                            chunks=outcome.chunks, samples=outcome.samples, ik_failures=outcome.ik_failures, **report)
        return None

    def _frame(self, t_ns: int):
        """(rgb, depth_m, camera, stamp) of the first frame stamped at/after ``t_ns`` whose colour, depth and
        camera_info all arrived, or None."""
        if self._observed.camera_pose() is None or self._observed.joints() is None:
            return None
        for frame in self._observed.frames.complete_since(t_ns):
            rgb, depth, info = frame["color"], frame["depth"], frame["info"]
            camera = self._observed.camera(frame)
            if isinstance(camera, str):
                self._report.diag("WARN", "camera/color/camera_info", camera)
                continue
            if rgb.shape[:2] != depth.shape or (camera.height, camera.width) != depth.shape:
                self._report.diag("WARN", "camera", f"colour {rgb.shape[:2]}, depth {depth.shape} and camera_info "
                                  f"{camera.height}x{camera.width} differ; frame skipped")
                continue
            return rgb, depth, camera, info.header.stamp
        return None

    def _check_preempted(self) -> None:
        if self._preempt.is_set():
            raise Superseded

    def _wait_until(self, get):
        """Poll ``get`` until it returns something (→ it) or frame_timeout_s of wall time pass (→ None);
        ~/stop and a new instruction interrupt."""
        deadline = time.monotonic() + self._params["frame_timeout_s"]
        while time.monotonic() < deadline:
            self._arm.check()
            self._check_preempted()
            value = get()
            if value is not None:
                return value
            time.sleep(POLL_S)
        return None

    def _fail(self, reason: str, **extra) -> None:
        self.get_logger().warning(f"policy episode failed: {reason}")
        self._report.diag("WARN", "policy", reason)
        self._report.status("failed", stamp=self._episode_stamp, reason=reason, retryable=False, **extra)


class _RosRobot:
    """A :class:`molmomotion_policies.runner.PolicyRobot` over the node's topics: set-points go out as a
    zero-order-hold JointTrajectory per gripper segment and the node sleeps through them on its clock (with the
    action interface: waits for the goal's result);
    frames come from the node's frame store (the first complete one stamped after the set-points)."""

    def __init__(self, node: PolicyNode):
        self.node = node

    def joints(self):
        return self.node._observed.joints()

    def command_gripper(self, closed: bool) -> None:
        self.node._arm.send_gripper(0.0 if closed else GRIPPER_OPEN_M)

    def follow(self, joint_targets_rad) -> None:
        from molmomotion_policies.controller import hold_times

        times = hold_times(len(joint_targets_rad), SAMPLE_S, self.node._params["policy_setpoint_rise_s"])
        arm = self.node._arm
        arm.send_trajectory(trajectory_msg(times, np.repeat(joint_targets_rad, 2, axis=0), arm.arm_joint_names),
                            check=self.node._check_preempted)
        if not arm.waits_for_result:  # the action interface returned with the controller's result
            arm.sleep(float(times[-1]), check=self.node._check_preempted)

    def observe(self):
        from molmomotion_policies.runner import Frame

        now_ns = self.node.get_clock().now().nanoseconds
        frame = self.node._wait_until(lambda: self.node._frame(now_ns))
        return None if frame is None else Frame(*frame[:3])


def main(args=None) -> None:
    run_node(POLICY_NODE.name, PolicyNode, args)


if __name__ == "__main__":
    main()
