"""sim_node: the PyBullet world behind the topics and services of a real arm's driver.

Downstream nodes (forecaster, manipulation) cannot tell it from a Panda with an RGB-D camera: it
publishes camera images, camera_info, the camera pose, joint_states and /clock, and executes
``arm_controller/joint_trajectory`` the way ros2_control's joint_trajectory_controller does (a new
trajectory replaces the active one, timed from its arrival, an empty one holds the current
position). Episodes are reset through ``~/reset`` from the (suite, family, seed) parameters and
judged through ``~/success``.

A reset publishes, in this order: ``sim/episode`` (the episode's JSON; it opens the episode, and a recorder that
splits by episode starts the episode's bag with it), ``sim/ground_truth`` with ``publish_ground_truth`` (the target's
pose trace under the oracle, computed before anything is published), ``camera/pose`` and ``instruction``, all
latched; the ground truth and the camera pose are stamped with the reset's simulated time.

Threads: the World (one PyBullet client, not thread-safe) is touched only by the simulation
thread. rclpy callbacks validate and convert in the executor thread and hand the world a closure
through a queue, which the simulation thread runs between two physics steps; services wait for
their closure's result. All stamps are simulated time, which never goes backwards across resets.
"""

from __future__ import annotations

import collections
import json
import math
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64, String
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, MultiDOFJointTrajectory

from molmomotion_sim.control import JointTrajectoryFollower, TrajectoryError
from molmomotion_sim.ground_truth import GroundTruthOracle
from molmomotion_sim.seeds import SeedRangeError, split_of
from molmomotion_sim.suites import SuiteError, load_suite
from molmomotion_sim.tasks import TASKS, SceneError, Task
from molmomotion_sim.world import ARM_JOINTS, FINGER_JOINTS, PHYSICS_HZ, World

from ..conversions.diagnostics import diagnostic_array
from ..conversions.errors import ConversionError
from ..conversions.ground_truth import ground_truth_to_msg
from ..conversions.images import camera_info_msg, depth_to_msg, rgb_to_msg
from ..conversions.joints import joint_state_msg, msg_to_trajectory, time_msg
from ..conversions.poses import pose_stamped
from ..node_specs.sim import SIM_NODE
from ..planning.limits import JointLimits
from ..robot import ARM_JOINT_NAMES, FINGER_JOINT_NAMES, GRIPPER_OPEN_M
from .params import declare_parameters
from .runtime import run_node

JOINT_NAMES = ARM_JOINT_NAMES + FINGER_JOINT_NAMES
GRIPPER_CLOSED_BELOW_M = GRIPPER_OPEN_M - 1e-6  # a commanded opening below fully open closes with force
SERVICE_TIMEOUT_S = 60.0  # a reset builds a scene and settles it: well under a second
MAX_LAG_S = 0.25  # wall time the simulation may fall behind before it stops trying to catch up
WARN_HOLD_S = 5.0  # wall time a rejected command keeps the commands status at WARN
RATE_WINDOW_S = 2.0  # wall-time window of the achieved-rate estimates

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


@dataclass
class _Schedule:
    """The next simulated time something is due, at a fixed simulated-time period."""

    period_s: float
    next_s: float = 0.0

    def due(self, now_s: float) -> bool:
        if now_s + 1e-9 < self.next_s:
            return False
        self.next_s += self.period_s
        if self.next_s <= now_s:  # behind (a reset jumped the clock): restart from now
            self.next_s = now_s + self.period_s
        return True


class _RateMeter:
    """Events per second over the last RATE_WINDOW_S of wall time, in wall and in simulated time."""

    def __init__(self):
        self._events: deque[tuple[float, float]] = deque()  # (wall s, sim s), used by the simulation thread only

    def tick(self, wall_s: float, sim_s: float) -> None:
        self._events.append((wall_s, sim_s))
        while self._events[0][0] < wall_s - RATE_WINDOW_S:
            self._events.popleft()

    def rates_hz(self, wall_now_s: float) -> tuple[float, float]:
        """(per wall second, per simulated second); 0 when fewer than two events are recent."""
        events = [e for e in self._events if e[0] >= wall_now_s - RATE_WINDOW_S]
        if len(events) < 2:
            return 0.0, 0.0
        wall, sim = events[-1][0] - events[0][0], events[-1][1] - events[0][1]
        n = len(events) - 1
        return (n / wall if wall > 0 else 0.0), (n / sim if sim > 0 else 0.0)


class ResetError(ValueError):
    """An episode that cannot be built: unknown suite or family, a seed outside the suite's split, no scene."""


@lru_cache(maxsize=8)
def _suite_options(suite: str) -> tuple[str, dict]:
    """(split, family → TaskOptions) of a suite; cached, since a reset per episode re-reads it."""
    loaded = load_suite(suite)
    return loaded.split, {f.family: f.options for f in loaded.families}


class SimNode(Node):
    """A plain node, not a managed one: it *is* the simulated robot and camera (their driver), loads no model
    and builds its world in a fraction of a second; a real cell's drivers (ros2_control, the camera) are not
    managed by this package either. The episode runner waits for its services."""

    def __init__(self, **kwargs):
        super().__init__("sim_node", **kwargs)
        self._params = declare_parameters(self, SIM_NODE, on_change=self._on_parameter)
        self._world = World()
        self._limits = JointLimits.from_yaml()
        self._task: Task | None = None
        self._episode: dict | None = None
        self._commands: queue.SimpleQueue = queue.SimpleQueue()  # closures run by the simulation thread
        self._stop = threading.Event()
        self._paused = False
        self._follower: JointTrajectoryFollower | None = None
        self._follower_start_s = 0.0  # world (episode) time the active trajectory started at
        self._clock_base_s = 0.0  # simulated time before the current episode's world clock started
        self._last_rejection: tuple[float, str] | None = None  # (wall s, reason)
        self._diagnostics_due = threading.Event()  # set by a refusal: publish before the next step
        self._camera_meter, self._step_meter = _RateMeter(), _RateMeter()
        self._rendered_frames = 0
        # Messages sent on the high-rate topics, logged at exit: what a recording of this node must hold.
        self._published: collections.Counter[str] = collections.Counter()
        self._render_ms_mean = 0.0  # exponential mean of one render's wall time
        self._oracle: GroundTruthOracle | None = None  # its own PyBullet world, made at the first ground truth
        self._ground_truth_status = ("OK", "off (publish_ground_truth is false)")  # (level, message)

        self._color_pub = self.create_publisher(Image, "camera/color/image_raw", qos_profile_sensor_data)
        self._depth_pub = self.create_publisher(Image, "camera/depth/image_raw", qos_profile_sensor_data)
        self._info_pub = self.create_publisher(CameraInfo, "camera/color/camera_info", qos_profile_sensor_data)
        self._pose_pub = self.create_publisher(PoseStamped, "camera/pose", LATCHED)
        self._joint_pub = self.create_publisher(JointState, "joint_states", 10)
        self._clock_pub = self.create_publisher(Clock, "/clock", 10)
        self._instruction_pub = self.create_publisher(String, "instruction", LATCHED)
        self._episode_pub = self.create_publisher(String, "sim/episode", LATCHED)
        # Only while publish_ground_truth is on (or was): without it the topic does not exist in the graph.
        self._ground_truth_pub = None
        if self._params["publish_ground_truth"]:
            self._ground_truth_pub = self.create_publisher(MultiDOFJointTrajectory, "sim/ground_truth", LATCHED)
            self._ground_truth_status = ("OK", "on: computed at each reset (no reset yet)")
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(JointTrajectory, "arm_controller/joint_trajectory", self._on_trajectory, 10)
        self.create_subscription(Float64, "gripper/command", self._on_gripper, 10)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_service(Trigger, "~/success", self._on_success)
        self.create_service(SetBool, "~/pause", self._on_pause)

        self._schedules = {
            "camera": _Schedule(1.0 / self._params["camera_rate_hz"]),
            "joints": _Schedule(1.0 / self._params["joint_state_rate_hz"]),
            "clock": _Schedule(1.0 / self._params["clock_rate_hz"]),
        }
        if self._params["reset_on_start"]:
            self._commands.put(self._reset_on_start)
        self._thread = threading.Thread(target=self._run, name="simulation", daemon=True)
        self._thread.start()

    # --- parameters -------------------------------------------------------------------------
    def _on_parameter(self, name: str, value) -> None:
        """Runtime changes: rates take effect at their next tick, the rest at the next reset."""
        if name == "publish_ground_truth" and value and self._ground_truth_pub is None:
            self._ground_truth_pub = self.create_publisher(MultiDOFJointTrajectory, "sim/ground_truth", LATCHED)
        self._params[name] = value
        rate_of = {"camera_rate_hz": "camera", "joint_state_rate_hz": "joints", "clock_rate_hz": "clock"}
        if name in rate_of:
            self._schedules[rate_of[name]].period_s = 1.0 / float(value)

    # --- callbacks (executor thread): validate, then hand the world a closure ----------------
    def _on_trajectory(self, msg: JointTrajectory) -> None:
        if not msg.points:
            self._commands.put(self._hold_current)
            return
        try:
            arrays = msg_to_trajectory(msg, ARM_JOINT_NAMES, self._limits.position_lower_rad,
                                       self._limits.position_upper_rad)
        except ConversionError as err:
            self._reject("arm_controller/joint_trajectory", str(err))
            return
        self._commands.put(lambda: self._start_trajectory(arrays.times_s, arrays.positions_rad))

    def _on_gripper(self, msg: Float64) -> None:
        opening_m = float(msg.data)
        if not (math.isfinite(opening_m) and 0.0 <= opening_m <= GRIPPER_OPEN_M):
            self._reject("gripper/command", f"opening {opening_m!r} m is outside [0, {GRIPPER_OPEN_M}] m per finger")
            return
        self._commands.put(lambda: self._world.command_gripper(closed=opening_m < GRIPPER_CLOSED_BELOW_M,
                                                               opening_m=opening_m))

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
            self.get_logger().error(report["reason"])
        response.success, response.message = report["success"], json.dumps(report)
        return response

    def _on_pause(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        self._paused = bool(request.data)
        response.success, response.message = True, "paused" if self._paused else "running"
        return response

    def _in_simulation(self, fn):
        """Run ``fn`` on the simulation thread between two steps; return its result (or raise its error)."""
        future: Future = Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except Exception as err:  # handed back to the caller, which decides what it means
                future.set_exception(err)

        self._commands.put(run)
        return future.result(timeout=SERVICE_TIMEOUT_S)

    def _reject(self, topic: str, reason: str) -> None:
        """A refused command: one warning, a WARN diagnostic now, nothing executed."""
        self.get_logger().warning(f"{topic}: refused, nothing executed: {reason}")
        self._last_rejection = (time.monotonic(), f"{topic}: {reason}")
        self._diagnostics_due.set()

    # --- world commands (simulation thread) --------------------------------------------------
    def _reset(self, suite: str, family: str, seed: int) -> dict:
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
        self._clock_base_s = self._sim_time_s()
        self._follower, self._task, self._episode = None, None, None  # a failed reset leaves no task to judge
        task = TASKS[family](self._world, options[family])
        try:
            task.reset(seed)
        except SceneError as err:
            raise ResetError(str(err)) from None
        self._task = task
        self._episode = {"suite": suite, "family": family, "seed": seed, "instruction": task.instruction}
        stamp = time_msg(self._sim_time_s())
        ground_truth = self._ground_truth(family, seed, options[family], stamp)
        # sim/episode first: everything published after it belongs to this episode (a recorder splitting by
        # episode orders messages by their publish time, so the episode's ground truth and instruction open its
        # bag, and the previous bag ends before them).
        self._episode_pub.publish(String(data=json.dumps(self._episode)))
        if ground_truth is not None:
            self._ground_truth_pub.publish(ground_truth)
        self._pose_pub.publish(pose_stamped(self._world.camera.T_world_cam, stamp, self._params["world_frame"]))
        self._instruction_pub.publish(String(data=task.instruction))
        self.get_logger().info(f"episode {self._episode} at sim time {self._sim_time_s():.3f} s")
        return self._episode

    def _ground_truth(self, family: str, seed: int, options, stamp) -> MultiDOFJointTrajectory | None:
        """The episode's sim/ground_truth message (None when off, or with a warning and a WARN diagnostic when it
        cannot be computed: the episode runs without it). The oracle runs in its own world; ours is untouched."""
        if not self._params["publish_ground_truth"] or self._ground_truth_pub is None:
            self._ground_truth_status = ("OK", "off (publish_ground_truth is false)")
            return None
        started = time.perf_counter()
        try:
            if self._oracle is None:
                self._oracle = GroundTruthOracle()
            truth = self._oracle.trace(family, seed, options)
            msg = ground_truth_to_msg(truth.times_s, truth.target_poses, stamp, self._params["world_frame"])
        except Exception as err:  # noqa: BLE001 (any failure of the oracle leaves the episode running)
            reason = f"no ground truth for {family} seed {seed}: {type(err).__name__}: {err}"
            self.get_logger().warning(reason)
            self._ground_truth_status = ("WARN", reason)
            self._diagnostics_due.set()
            return None
        self._ground_truth_status = (
            "OK", f"{family} seed {seed}: {truth.target_name}, {len(truth.times_s)} samples "
            f"({truth.times_s[-1]:.2f} s), oracle {'succeeded' if truth.oracle_success else 'failed'}, computed in "
            f"{time.perf_counter() - started:.2f} s")
        return msg

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

    def _start_trajectory(self, times_s: np.ndarray, positions_rad: np.ndarray) -> None:
        if times_s[0] > 0:  # like joint_trajectory_controller: start from where the arm is now
            times_s = np.r_[0.0, times_s]
            positions_rad = np.vstack([self._world.joint_positions()[:7], positions_rad])
        try:
            self._follower = JointTrajectoryFollower(times_s, positions_rad)
        except TrajectoryError as err:  # msg_to_trajectory checked the same; kept for safety
            self._reject("arm_controller/joint_trajectory", str(err))
            return
        self._follower_start_s = self._world.time_s

    def _hold_current(self) -> None:
        self._follower = None
        self._world.hold_arm(self._world.joint_positions()[:7])

    # --- simulation thread ------------------------------------------------------------------
    def _sim_time_s(self) -> float:
        return self._clock_base_s + self._world.time_s

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as err:
            if self.context.ok():  # after ctrl-c the context goes first and publishing fails: not an error
                self.get_logger().fatal(f"simulation thread stopped: {type(err).__name__}: {err}")
                raise

    def _loop(self) -> None:
        wall_anchor, sim_anchor, rtf = time.monotonic(), self._sim_time_s(), self._params["real_time_factor"]
        next_diagnostics = time.monotonic()
        while not self._stop.is_set():
            before_s = self._sim_time_s()
            self._drain_commands()
            if self._sim_time_s() != before_s:  # a reset settled its scene: that time is not waited for
                wall_anchor, sim_anchor = time.monotonic(), self._sim_time_s()
            now = time.monotonic()
            if now >= next_diagnostics or self._diagnostics_due.is_set():
                self._diagnostics_due.clear()
                self._publish_diagnostics(self._sim_time_s())
                next_diagnostics = now + self._params["diagnostics_period_s"]
            if self._paused:
                time.sleep(0.01)
                wall_anchor, sim_anchor = time.monotonic(), self._sim_time_s()
                continue
            self._step()
            self._publish_due()
            if self._params["real_time_factor"] != rtf:
                wall_anchor, sim_anchor, rtf = time.monotonic(), self._sim_time_s(), self._params["real_time_factor"]
            if rtf > 0:
                delay_s = wall_anchor + (self._sim_time_s() - sim_anchor) / rtf - time.monotonic()
                if delay_s > 0:
                    time.sleep(delay_s)
                elif delay_s < -MAX_LAG_S:  # rendering or the machine is too slow: run late, don't burst
                    wall_anchor, sim_anchor = time.monotonic(), self._sim_time_s()

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
        world = self._world
        if self._follower is not None:
            t_s = world.time_s - self._follower_start_s + 1.0 / PHYSICS_HZ  # set-point for the end of this step
            world.hold_arm(self._follower.target(t_s))
            if t_s >= self._follower.duration_s:
                world.hold_arm(self._follower.final_rad)
                self._follower = None
        world.step()
        self._step_meter.tick(time.monotonic(), self._sim_time_s())

    def _publish_due(self) -> None:
        now_s = self._sim_time_s()
        stamp = time_msg(now_s)
        if self._schedules["clock"].due(now_s):
            self._clock_pub.publish(Clock(clock=stamp))
            self._published["/clock"] += 1
        if self._schedules["joints"].due(now_s):
            states = self._world.client.getJointStates(self._world.robot_id, ARM_JOINTS + FINGER_JOINTS)
            self._joint_pub.publish(joint_state_msg(JOINT_NAMES, [s[0] for s in states], stamp,
                                                    velocities_rad_s=[s[1] for s in states]))
            self._published["joint_states"] += 1
        if self._schedules["camera"].due(now_s):
            self._publish_camera(stamp, now_s)

    def _publish_camera(self, stamp, now_s: float) -> None:
        """camera_info and pose every tick; images only while someone listens (rendering costs ~20 ms)."""
        camera = self._world.camera
        self._info_pub.publish(camera_info_msg(camera, stamp, camera.frame_id))
        self._pose_pub.publish(pose_stamped(camera.T_world_cam, stamp, self._params["world_frame"]))
        self._published["camera/color/camera_info"] += 1
        self._published["camera/pose"] += 1
        if self._color_pub.get_subscription_count() == 0 and self._depth_pub.get_subscription_count() == 0:
            return
        render_start = time.perf_counter()
        observation = self._world.render()
        render_ms = (time.perf_counter() - render_start) * 1e3
        self._render_ms_mean = render_ms if self._rendered_frames == 0 else 0.9 * self._render_ms_mean + 0.1 * render_ms
        self._color_pub.publish(rgb_to_msg(observation.rgb, stamp, camera.frame_id))
        self._depth_pub.publish(depth_to_msg(observation.depth_m, stamp, camera.frame_id,
                                             self._params["depth_encoding"]))
        self._rendered_frames += 1
        self._published["camera/color/image_raw"] += 1
        self._published["camera/depth/image_raw"] += 1
        self._camera_meter.tick(time.monotonic(), now_s)

    def _publish_diagnostics(self, now_s: float) -> None:
        wall_now = time.monotonic()
        camera_wall_hz, camera_sim_hz = self._camera_meter.rates_hz(wall_now)
        steps_wall_hz, _ = self._step_meter.rates_hz(wall_now)
        stamp = time_msg(now_s)
        episode = self._episode or {}
        simulation = diagnostic_array(
            self.get_name(), "simulation", "OK", "paused" if self._paused else "running", stamp, {
                "camera_rate_hz_sim_time": f"{camera_sim_hz:.2f}",
                "camera_rate_hz_wall_time": f"{camera_wall_hz:.2f}",
                "camera_rate_hz_target": self._params["camera_rate_hz"],
                "real_time_factor_achieved": f"{steps_wall_hz / PHYSICS_HZ:.3f}",
                "real_time_factor_target": self._params["real_time_factor"],
                "rendered_frames": self._rendered_frames,
                "render_ms_mean": f"{self._render_ms_mean:.1f}",
                "sim_time_s": f"{now_s:.3f}",
                "episode_time_s": f"{self._world.time_s:.3f}",
                "episode": json.dumps(episode),
                "trajectory_active": self._follower is not None,
            }, hardware_id="pybullet")
        rejection = self._last_rejection
        if rejection is not None and wall_now - rejection[0] < WARN_HOLD_S:
            commands = diagnostic_array(self.get_name(), "commands", "WARN", f"refused {rejection[1]}", stamp,
                                        hardware_id="pybullet")
        else:
            commands = diagnostic_array(self.get_name(), "commands", "OK", "commands accepted", stamp,
                                        hardware_id="pybullet")
        level, message = self._ground_truth_status
        ground_truth = diagnostic_array(self.get_name(), "ground_truth", level, message, stamp, hardware_id="pybullet")
        simulation.status.extend(commands.status)
        simulation.status.extend(ground_truth.status)
        self._diag_pub.publish(simulation)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        self.get_logger().info(f"published messages: {json.dumps(dict(sorted(self._published.items())))}")
        self._world.close()
        if self._oracle is not None:
            self._oracle.close()


def main(args=None) -> None:
    run_node(SIM_NODE.name, SimNode, args)


if __name__ == "__main__":
    main()
