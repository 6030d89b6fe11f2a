"""The drivers of a real Franka cell, emulated on the simulated Panda: what the fake_franka node runs.

Pure Python and numpy (the node converts messages to and from these types), stepped by the simulation
thread once per physics step:

- :class:`TrajectoryControllerEmulation` is ros2_control's joint_trajectory_controller (ros2_controllers,
  Jazzy branch) with the parameters franka_ros2 gives ``fr3_arm_controller``: goal validation
  (:func:`validate_trajectory`), spline sampling from the state at arrival, the per-joint path ("state")
  and goal tolerances with their special values (:func:`goal_tolerances`), ``goal_time`` and the stopped
  velocity, the first-sample check, hold-on-abort, hold-the-last-point on success, and preemption of the
  active goal by a new one. Result codes are FollowJointTrajectory.Result's.
- :class:`FrankaHandEmulation` is franka_gripper's ``~/gripper_action`` (control_msgs/GripperCommand):
  ``command.position`` is the opening of *one* finger (the commanded width is twice it); opening runs
  libfranka's ``move``, closing its ``grasp`` with ``max_effort`` as the force and ±5 mm epsilons; the
  reported position is the *width* of the hand; ``stalled`` is never set.
- :func:`robot_transforms` gives the FR3's TF tree (franka_description names) from the simulated arm.

Where the fake refuses more than the real cell (a first point the arm cannot reach in its time, a
position beyond a joint limit: a real FR3 stops there with a reflex error), the reason says so. Like the
Jazzy controller, it never sends INVALID_JOINTS or OLD_HEADER_TIMESTAMP: a goal with unknown joints or one
that ends in the past is *rejected* in the goal callback (the client gets no result); INVALID_GOAL ends a
goal preempted by a new one (or cut off by a reset, as by the controller's deactivation).

Sources read for the semantics (public repositories, branch and commit):
ros-controls/ros2_controllers jazzy ed360c9 (joint_trajectory_controller.cpp, tolerances.hpp, the parameter
file; gripper_controllers for comparison), frankarobotics/franka_ros2 jazzy 29cb85a (franka_bringup
franka.launch.py, controllers.yaml, franka_gripper gripper_action_server.cpp and its config),
frankarobotics/franka_description main 566ba44 (fr3 kinematics, hand and TCP offsets, the ``base`` root),
IntelRealSense/realsense-ros ros2-master 1cbd81b, 4.55.1 (topic names, QoS defaults, TF frames),
ros/joint_state_publisher ros2 fb29caa and ros/robot_state_publisher rolling e0f77e6 (joint_states merging,
/tf publishing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from molmomotion_ros.robot import ROBOT_BASE_M

# control_msgs/action/FollowJointTrajectory Result.error_code (checked against control_msgs by the ROS tests).
SUCCESSFUL = 0
INVALID_GOAL = -1
INVALID_JOINTS = -2
OLD_HEADER_TIMESTAMP = -3
PATH_TOLERANCE_VIOLATED = -4
GOAL_TOLERANCE_VIOLATED = -5

ERASE_TOLERANCE = -1.0  # control_msgs/JointTolerance: -1 removes a tolerance, 0 keeps the default
FR3_HAND_TCP_M = 0.1034  # franka_description: fr3_hand -> fr3_hand_tcp along z
HAND_MAX_WIDTH_M = 0.08  # Franka Hand
HAND_MAX_FORCE_N = 70.0  # Franka Hand, continuous grasping force
HAND_SAME_WIDTH_M = 1e-4  # franka_gripper: a command this close to the current width succeeds at once
HAND_STOPPED_M_S = 1e-3  # the fingers count as stopped below this width rate...
HAND_STOPPED_FOR_S = 0.05  # ...for this long
HAND_TIMEOUT_MARGIN_S = 2.0  # a move or grasp ends after distance / speed plus this, stopped or not


# --- tolerances ----------------------------------------------------------------------------------
class ToleranceError(ValueError):
    """A negative tolerance other than -1 (joint_trajectory_controller then keeps its defaults)."""


@dataclass(frozen=True)
class StateTolerance:
    """Per-joint bounds on |desired - actual|; 0 means not checked."""

    position: float = 0.0
    velocity: float = 0.0
    acceleration: float = 0.0

    def holds(self, position_error: float, velocity_error: float, acceleration_error: float = 0.0) -> bool:
        return not ((self.position > 0 and abs(position_error) > self.position)
                    or (self.velocity > 0 and abs(velocity_error) > self.velocity)
                    or (self.acceleration > 0 and abs(acceleration_error) > self.acceleration))


@dataclass(frozen=True)
class SegmentTolerances:
    """The tolerances a trajectory runs under: along the path, at the goal, and the extra time to reach it."""

    path: tuple[StateTolerance, ...]
    goal: tuple[StateTolerance, ...]
    goal_time_s: float = 0.0

    @classmethod
    def from_constraints(cls, dof: int, trajectory: float = 0.0, goal: float = 0.0,
                         stopped_velocity: float = 0.01, goal_time_s: float = 0.0) -> "SegmentTolerances":
        """joint_trajectory_controller's ``constraints`` parameters (the same value for every joint)."""
        return cls(path=(StateTolerance(position=trajectory),) * dof,
                   goal=(StateTolerance(position=goal, velocity=stopped_velocity),) * dof,
                   goal_time_s=goal_time_s)


@dataclass(frozen=True)
class ToleranceRequest:
    """A control_msgs/JointTolerance of a goal, as data."""

    name: str
    position: float = 0.0
    velocity: float = 0.0
    acceleration: float = 0.0


def resolve_tolerance(default: float, requested: float) -> float:
    """A goal's tolerance value over the default: > 0 replaces it, 0 keeps it, -1 erases it (0 = unchecked)."""
    if requested > 0:
        return requested
    if abs(requested - ERASE_TOLERANCE) < np.finfo(np.float32).eps:
        return 0.0
    if requested < 0:
        raise ToleranceError(f"illegal tolerance {requested}")
    return default


def goal_tolerances(defaults: SegmentTolerances, joints: Sequence[str], path: Sequence[ToleranceRequest],
                    goal: Sequence[ToleranceRequest], goal_time_s: float) -> tuple[SegmentTolerances, str | None]:
    """The tolerances of a goal: its path_tolerance, goal_tolerance and goal_time_tolerance resolved over the
    defaults. As in joint_trajectory_controller, one bad entry (an unknown joint, an illegal value) makes the
    whole goal run under the defaults; the second value says why (else None)."""
    try:
        resolved_time = resolve_tolerance(defaults.goal_time_s, goal_time_s)
    except ToleranceError:
        return defaults, f"illegal goal_time_tolerance {goal_time_s}: using the default tolerances"
    lists = {"path_tolerance": list(defaults.path), "goal_tolerance": list(defaults.goal)}
    for field_name, requests in (("path_tolerance", path), ("goal_tolerance", goal)):
        current = lists[field_name]
        for request in requests:
            if request.name not in joints:
                return defaults, (f"joint '{request.name}' specified in goal.{field_name} does not exist: "
                                  "using the default tolerances")
            i = list(joints).index(request.name)
            base = current[i]
            try:
                current[i] = StateTolerance(resolve_tolerance(base.position, request.position),
                                            resolve_tolerance(base.velocity, request.velocity),
                                            resolve_tolerance(base.acceleration, request.acceleration))
            except ToleranceError:
                return defaults, (f"joint '{request.name}' in goal.{field_name} has an illegal tolerance: "
                                  "using the default tolerances")
    return SegmentTolerances(tuple(lists["path_tolerance"]), tuple(lists["goal_tolerance"]), resolved_time), None


# --- trajectories --------------------------------------------------------------------------------
class GoalRejected(ValueError):
    """A trajectory the controller refuses (the goal is rejected; a topic message is dropped)."""


@dataclass(frozen=True)
class TrajectoryPoint:
    """A trajectory_msgs/JointTrajectoryPoint as data (empty tuples for absent fields)."""

    time_s: float
    positions: tuple[float, ...]
    velocities: tuple[float, ...] = ()
    accelerations: tuple[float, ...] = ()
    effort: tuple[float, ...] = ()


@dataclass(frozen=True)
class JointTrajectoryCommand:
    """A validated trajectory in the controller's joint order."""

    times_s: np.ndarray  # (N,) time_from_start, strictly increasing
    positions: np.ndarray  # (N, J)
    velocities: tuple[np.ndarray | None, ...]  # per point: (J,) or None
    accelerations: tuple[np.ndarray | None, ...]
    start_s: float | None = None  # controller time time_from_start counts from; None = on arrival

    @property
    def end_s(self) -> float | None:
        return None if self.start_s is None else self.start_s + float(self.times_s[-1])


def validate_trajectory(joint_names: Sequence[str], points: Sequence[TrajectoryPoint], joints: Sequence[str], *,
                        start_s: float | None = None, now_s: float = 0.0, current_rad: np.ndarray | None = None,
                        start_tolerance_rad: float = 0.0, velocity_limits_rad_s: np.ndarray | None = None,
                        lower_rad: np.ndarray | None = None, upper_rad: np.ndarray | None = None
                        ) -> JointTrajectoryCommand:
    """joint_trajectory_controller's checks, in its order (partial goals and a non-zero final velocity are
    not allowed, its defaults), then the fake's own: finite values, limits, and a first point the arm can
    reach from ``current_rad`` in its time_from_start at ``velocity_limits_rad_s`` (``start_tolerance_rad``
    of slack). ``start_s`` is the header stamp in controller time (None when the stamp is zero).

    Returns the trajectory in the order of ``joints``; raises GoalRejected with the reason.
    """
    joints, names, dof = list(joints), list(joint_names), len(joints)
    if len(names) != dof:
        raise GoalRejected(f"joints on incoming trajectory don't match the controller joints: got {names}, "
                           f"expected all of {joints} (partial joint goals are not allowed)")
    if not points:
        raise GoalRejected("empty trajectory received")
    for name in names:
        if name not in joints:
            raise GoalRejected(f"incoming joint {name} doesn't match the controller's joints {joints}")
    if len(set(names)) != len(names):
        raise GoalRejected(f"joint names repeat in {names}")
    last_velocities = points[-1].velocities
    for name, velocity in zip(names, last_velocities, strict=False):
        if abs(velocity) > np.finfo(np.float32).eps:
            raise GoalRejected(f"velocity of the last trajectory point of joint {name} is not zero: {velocity}")
    if start_s is not None and start_s + points[-1].time_s < now_s:
        raise GoalRejected(f"received trajectory with non-zero start time ({start_s:.3f} s) that ends in the past "
                           f"({start_s + points[-1].time_s:.3f} s < now {now_s:.3f} s)")
    for i, point in enumerate(points):
        if i > 0 and point.time_s <= points[i - 1].time_s:
            raise GoalRejected(f"time between points {i - 1} and {i} is not strictly increasing, it is "
                               f"{points[i - 1].time_s} and {point.time_s} respectively")
        for field_name, allow_empty in (("positions", False), ("velocities", True), ("accelerations", True)):
            values = getattr(point, field_name)
            if not (allow_empty and len(values) == 0) and len(values) != len(names):
                raise GoalRejected(f"mismatch between joint_names size ({len(names)}) and {field_name} "
                                   f"({len(values)}) at point #{i}")
    # The fake's own checks (a real FR3 stops with a reflex error where these fail).
    order = [names.index(j) for j in joints]
    times = np.array([p.time_s for p in points], dtype=float)
    positions = np.array([p.positions for p in points], dtype=float)[:, order]  # (N, J)
    velocities = tuple(np.asarray(p.velocities, dtype=float)[order] if p.velocities else None for p in points)
    accelerations = tuple(np.asarray(p.accelerations, dtype=float)[order] if p.accelerations else None
                          for p in points)
    if times[0] < 0 or not np.all(np.isfinite(times)):
        raise GoalRejected(f"time_from_start of the first point is {times[0]} s: it must be >= 0")
    for what, values in (("positions", [positions]), ("velocities", velocities), ("accelerations", accelerations)):
        if not all(v is None or np.all(np.isfinite(v)) for v in values):
            raise GoalRejected(f"trajectory {what} contain NaN or infinite values")
    for bound, label, beyond in ((lower_rad, "lower", np.less), (upper_rad, "upper", np.greater)):
        if bound is None:
            continue
        outside = beyond(positions, np.asarray(bound, dtype=float))
        if np.any(outside):
            i, j = np.argwhere(outside)[0]
            raise GoalRejected(f"point {i} {joints[j]} = {positions[i, j]:.4f} rad is beyond its {label} limit "
                               f"{float(np.asarray(bound)[j]):.4f} rad (the arm would stop with a reflex error)")
    if current_rad is not None and velocity_limits_rad_s is not None:
        lead_s = times[0] if start_s is None else max(0.0, start_s + times[0] - now_s)
        jump = np.abs(positions[0] - np.asarray(current_rad, dtype=float))
        reachable = start_tolerance_rad + np.asarray(velocity_limits_rad_s, dtype=float) * lead_s
        if np.any(jump > reachable):
            j = int(np.argmax(jump - reachable))
            raise GoalRejected(f"the first point is {jump[j]:.3f} rad from the current position of {joints[j]}, "
                               f"more than it can move in its time_from_start of {lead_s:.3f} s "
                               f"(start tolerance {start_tolerance_rad} rad): the trajectory must start where "
                               "the arm is")
    return JointTrajectoryCommand(times, positions, velocities, accelerations, start_s)


@dataclass(frozen=True)
class Sample:
    positions: np.ndarray  # (J,)
    velocities: np.ndarray  # (J,)
    accelerations: np.ndarray  # (J,)
    before_last_point: bool
    segment_start_s: float  # when the point that starts the current segment is (was) due


def _interpolate(ta: float, pa, va, aa, tb: float, pb, vb, ab, t: float) -> tuple[np.ndarray, ...]:
    """joint_trajectory_controller's spline between two states: quintic when both carry velocities and
    accelerations, cubic when both carry velocities, else linear."""
    dt = tb - ta
    s = min(max(t - ta, 0.0), dt)
    if dt <= 0:
        return pb, (vb if vb is not None else np.zeros_like(pb)), (ab if ab is not None else np.zeros_like(pb))
    if va is not None and vb is not None and aa is not None and ab is not None:
        c0, c1, c2 = pa, va, aa / 2
        c3 = (20 * (pb - pa) - (8 * vb + 12 * va) * dt - (3 * aa - ab) * dt**2) / (2 * dt**3)
        c4 = (30 * (pa - pb) + (14 * vb + 16 * va) * dt + (3 * aa - 2 * ab) * dt**2) / (2 * dt**4)
        c5 = (12 * (pb - pa) - (6 * vb + 6 * va) * dt - (aa - ab) * dt**2) / (2 * dt**5)
        pos = c0 + s * (c1 + s * (c2 + s * (c3 + s * (c4 + s * c5))))
        vel = c1 + s * (2 * c2 + s * (3 * c3 + s * (4 * c4 + s * 5 * c5)))
        acc = 2 * c2 + s * (6 * c3 + s * (12 * c4 + s * 20 * c5))
        return pos, vel, acc
    if va is not None and vb is not None:
        c2 = (3 * (pb - pa) - (2 * va + vb) * dt) / dt**2
        c3 = (2 * (pa - pb) + (va + vb) * dt) / dt**3
        pos = pa + s * (va + s * (c2 + s * c3))
        vel = va + s * (2 * c2 + s * 3 * c3)
        acc = 2 * c2 + 6 * c3 * s
        return pos, vel, acc
    slope = (pb - pa) / dt
    return pa + slope * s, slope, np.zeros_like(pa)


class _ActiveTrajectory:
    """A trajectory picked up at ``received_s`` from the arm's state then (joint_trajectory_controller's
    "point before the trajectory")."""

    def __init__(self, command: JointTrajectoryCommand, received_s: float, q: np.ndarray, qd: np.ndarray):
        self.command = command
        self.start_s = received_s if command.start_s is None else command.start_s
        self.received_s = received_s
        self.q_before, self.qd_before = np.asarray(q, dtype=float), np.asarray(qd, dtype=float)
        self.times_abs = self.start_s + command.times_s

    def sample(self, t: float) -> Sample:
        c, times = self.command, self.times_abs
        if t < times[0]:
            if times[0] > self.received_s:
                p, v, a = _interpolate(self.received_s, self.q_before, self.qd_before, None,
                                       times[0], c.positions[0], c.velocities[0], c.accelerations[0], t)
            else:
                p, v, a = self._point(0)
            return Sample(p, v, a, True, float(times[0]))
        if t >= times[-1]:
            p, v, a = self._point(len(times) - 1)
            return Sample(p, v, a, False, float(times[-1]))
        i = int(np.searchsorted(times, t, side="right")) - 1
        p, v, a = _interpolate(times[i], c.positions[i], c.velocities[i], c.accelerations[i],
                               times[i + 1], c.positions[i + 1], c.velocities[i + 1], c.accelerations[i + 1], t)
        return Sample(p, v, a, True, float(times[i]))

    def _point(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = self.command
        zeros = np.zeros_like(c.positions[i])
        return (c.positions[i], c.velocities[i] if c.velocities[i] is not None else zeros,
                c.accelerations[i] if c.accelerations[i] is not None else zeros)


@dataclass(frozen=True)
class GoalEnd:
    """How an action goal ended: ``goal`` is the token the caller gave, ``succeeded`` the terminal state."""

    goal: Any
    succeeded: bool
    code: int
    message: str


@dataclass(frozen=True)
class Feedback:
    """The last control cycle of ``goal``, as FollowJointTrajectory feedback reports it."""

    goal: Any
    time_s: float
    desired: Sample
    actual_positions: np.ndarray
    actual_velocities: np.ndarray
    time_from_start_s: float


@dataclass
class TrajectoryControllerEmulation:
    """joint_trajectory_controller's update loop. Call :meth:`update` every control cycle with the arm's
    state; it returns the position set-point for the cycle and the goals that ended in it."""

    joints: tuple[str, ...]
    defaults: SegmentTolerances
    period_s: float
    active_goal: Any = None
    feedback: Feedback | None = None  # of the active goal, refreshed every cycle
    _trajectory: _ActiveTrajectory | None = None
    _pending: JointTrajectoryCommand | None = None
    _holding: bool = True
    _hold_rad: np.ndarray | None = None
    _first_sample: bool = False
    _tolerances: SegmentTolerances | None = None
    _ended: list[GoalEnd] = field(default_factory=list)

    @property
    def is_holding(self) -> bool:
        return self._holding and self._pending is None

    def command(self, trajectory: JointTrajectoryCommand, goal: Any = None,
                tolerances: SegmentTolerances | None = None) -> None:
        """A new trajectory (from an action goal, or the topic when ``goal`` is None) replaces the current one
        at the next cycle. A new goal preempts the active one, which is aborted with INVALID_GOAL."""
        if goal is not None:
            if self.active_goal is not None:
                self._end(False, INVALID_GOAL, "Current goal preempted by new incoming action.")
            self.active_goal, self._tolerances, self.feedback = goal, tolerances or self.defaults, None
        self._pending = trajectory

    def cancel(self, goal: Any, q: np.ndarray) -> bool:
        """Cancel ``goal`` if it is the active one: the arm holds where it is. True when it was active."""
        if goal is None or goal is not self.active_goal:
            return False
        self.active_goal, self.feedback = None, None
        self.hold(q)
        return True

    def abort_active(self, code: int, message: str) -> None:
        """End the active goal (e.g. the controller is switched off or the episode reset under it)."""
        if self.active_goal is not None:
            self._end(False, code, message)

    def hold(self, q: np.ndarray) -> None:
        """Hold ``q`` from now on (no tolerance checks while holding)."""
        self._pending, self._trajectory = None, None
        self._holding, self._hold_rad = True, np.array(q, dtype=float)

    def update(self, now_s: float, q: np.ndarray, qd: np.ndarray) -> tuple[np.ndarray, list[GoalEnd]]:
        q, qd = np.asarray(q, dtype=float), np.asarray(qd, dtype=float)
        if self._hold_rad is None:
            self._hold_rad = q.copy()  # activation: hold the current position
        if self._pending is not None:
            self._trajectory = _ActiveTrajectory(self._pending, now_s, q, qd)
            self._pending, self._holding, self._first_sample = None, False, True
        if self._holding or self._trajectory is None:
            return self._hold_rad, self._pop_ended()

        trajectory = self._trajectory
        tolerances = self._tolerances if self.active_goal is not None else self.defaults
        desired = trajectory.sample(now_s)
        position_error, velocity_error = desired.positions - q, desired.velocities - qd
        time_difference = now_s - desired.segment_start_s
        path_violated = outside_goal = False
        within_goal_time = True
        for j in range(len(self.joints)):
            if (desired.before_last_point or self._first_sample) and not tolerances.path[j].holds(
                    position_error[j], velocity_error[j]):
                path_violated = True
            if not desired.before_last_point and not tolerances.goal[j].holds(position_error[j], velocity_error[j]):
                outside_goal = True
                if tolerances.goal_time_s > 0 and time_difference > tolerances.goal_time_s:
                    within_goal_time = False
        self._first_sample = False
        setpoint = trajectory.sample(now_s + self.period_s).positions

        if self.active_goal is not None:
            self.feedback = Feedback(self.active_goal, now_s, desired, q, qd, now_s - trajectory.start_s)
            if path_violated:
                self._end(False, PATH_TOLERANCE_VIOLATED, "Aborted due to path tolerance violation")
                self.hold(q)
            elif not desired.before_last_point:
                if not outside_goal:
                    self._end(True, SUCCESSFUL, "Goal successfully reached!")
                    self.hold(desired.positions)  # joint_trajectory_controller holds the last point
                elif not within_goal_time:
                    self._end(False, GOAL_TOLERANCE_VIOLATED,
                              f"Aborted due to goal_time_tolerance exceeding by {time_difference:.6f} seconds")
                    self.hold(q)
        elif path_violated or (not desired.before_last_point and not within_goal_time):
            self.hold(q)
        return (self._hold_rad if self._holding else setpoint), self._pop_ended()

    def _end(self, succeeded: bool, code: int, message: str) -> None:
        self._ended.append(GoalEnd(self.active_goal, succeeded, code, message))
        self.active_goal, self.feedback = None, None

    def _pop_ended(self) -> list[GoalEnd]:
        ended, self._ended = self._ended, []
        return ended


# --- the hand -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HandEnd:
    """How a GripperCommand goal ended (franka_gripper's result: the width, reached_goal, never stalled)."""

    goal: Any
    reached_goal: bool
    width_m: float


@dataclass
class FrankaHandEmulation:
    """franka_gripper's GripperCommand execution on two position-controlled fingers. :meth:`update` each
    physics step with the measured width; it returns the per-finger set-point and force."""

    speed_m_s: float = 0.1  # franka_gripper default_speed (width per second)
    epsilon_inner_m: float = 0.005
    epsilon_outer_m: float = 0.005
    max_width_m: float = HAND_MAX_WIDTH_M
    move_force_n: float = 40.0  # per finger while moving (the simulated fingers' motors)
    default_grasp_force_n: float = 40.0  # when a goal's max_effort is 0
    active_goal: Any = None
    width_setpoint_m: float | None = None
    force_n: float = 40.0
    _target_m: float = 0.0
    grasping: bool = False  # the last command closed the hand (it keeps squeezing after the grasp ended)
    _started_s: float = 0.0
    _stopped_since_s: float | None = None
    _ended: list[HandEnd] = field(default_factory=list)

    def out_of_range(self, position_m: float) -> bool:
        width = 2 * position_m
        return not math.isfinite(width) or width > self.max_width_m or width < 0

    def start(self, goal: Any, position_m: float, max_effort: float, now_s: float, width_m: float) -> None:
        """Begin moving to the width 2 * ``position_m`` (``move`` when opening, ``grasp`` when closing). A goal
        still running is ended unreached (the hand runs one command at a time)."""
        if self.active_goal is not None:
            self._end(False, width_m)
        self.active_goal, self._target_m, self._started_s = goal, 2 * position_m, now_s
        self.grasping = self._target_m < width_m
        self.force_n = (min(max_effort, HAND_MAX_FORCE_N) if max_effort > 0 else self.default_grasp_force_n) \
            if self.grasping else self.move_force_n
        self.width_setpoint_m = width_m  # the ramp starts where the fingers are (not where a grasp aimed)
        self._stopped_since_s = None

    def cancel(self, goal: Any, width_m: float) -> bool:
        """Cancel ``goal`` if it is the running one: the fingers stop where they are. True when it was running."""
        if goal is None or goal is not self.active_goal:
            return False
        self.active_goal, self.width_setpoint_m, self.force_n, self.grasping = None, width_m, self.move_force_n, False
        return True

    def stop(self, width_m: float) -> None:
        """franka_gripper's ``~/stop``: the fingers stop where they are; a running goal ends unreached."""
        if self.active_goal is not None:
            self._end(False, width_m)
        self.width_setpoint_m, self.force_n, self.grasping = width_m, self.move_force_n, False

    def reset(self, width_m: float) -> None:
        if self.active_goal is not None:
            self._end(False, width_m)
        self.width_setpoint_m, self.force_n, self.grasping = width_m, self.move_force_n, False

    def update(self, now_s: float, width_m: float, width_rate_m_s: float, period_s: float
               ) -> tuple[float, float, list[HandEnd]]:
        if self.width_setpoint_m is None:
            self.width_setpoint_m = width_m
        if self.active_goal is not None:
            step = self.speed_m_s * period_s
            self.width_setpoint_m += float(np.clip(self._target_m - self.width_setpoint_m, -step, step))
            at_target = abs(self.width_setpoint_m - self._target_m) < 1e-12
            if at_target and abs(width_rate_m_s) < HAND_STOPPED_M_S:
                self._stopped_since_s = now_s if self._stopped_since_s is None else self._stopped_since_s
            else:
                self._stopped_since_s = None
            stopped = self._stopped_since_s is not None and now_s - self._stopped_since_s >= HAND_STOPPED_FOR_S
            timeout_s = abs(self._target_m - width_m) / self.speed_m_s + HAND_TIMEOUT_MARGIN_S
            if stopped or now_s - self._started_s > timeout_s:
                if self.grasping:  # libfranka grasp: the object is held if the width is within the epsilons
                    reached = self._target_m - self.epsilon_inner_m < width_m < self._target_m + self.epsilon_outer_m
                else:  # libfranka move: the fingers got there
                    reached = abs(width_m - self._target_m) <= self.epsilon_outer_m
                self._end(reached, width_m)
        return self.width_setpoint_m / 2, self.force_n, self._pop_ended()

    def _end(self, reached: bool, width_m: float) -> None:
        self._ended.append(HandEnd(self.active_goal, bool(reached), float(width_m)))
        self.active_goal = None

    def _pop_ended(self) -> list[HandEnd]:
        ended, self._ended = self._ended, []
        return ended


# --- frames ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrankaNames:
    """The names franka_description and franka_ros2 give an arm with prefix ``robot`` (fr3, fp3, fer)."""

    robot: str = "fr3"

    @property
    def arm_joints(self) -> tuple[str, ...]:
        return tuple(f"{self.robot}_joint{i}" for i in range(1, 8))

    @property
    def finger_joints(self) -> tuple[str, ...]:
        return (f"{self.robot}_finger_joint1", f"{self.robot}_finger_joint2")

    @property
    def root(self) -> str:
        return "base"  # franka_description's root link, fixed to <robot>_link0

    @property
    def base(self) -> str:
        return f"{self.robot}_link0"

    @property
    def tcp(self) -> str:
        return f"{self.robot}_hand_tcp"

    def link(self, name: str) -> str:
        return f"{self.robot}_{name}"


# PyBullet panda.urdf link index → franka_description link name (without the prefix); -1 is the base.
_PANDA_LINKS = {-1: "link0", 0: "link1", 1: "link2", 2: "link3", 3: "link4", 4: "link5", 5: "link6", 6: "link7",
                7: "link8", 8: "hand", 9: "leftfinger", 10: "rightfinger"}
_PARENT = {0: -1, 1: 0, 2: 1, 3: 2, 4: 3, 5: 4, 6: 5, 7: 6, 8: 7, 9: 8, 10: 8}
_FIXED = (7, 8)  # panda_joint8 (link7 → link8) and panda_hand_joint (link8 → hand)


def _matrix(position, quaternion_xyzw) -> np.ndarray:
    x, y, z, w = quaternion_xyzw
    T = np.eye(4)
    T[:3, :3] = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                          [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                          [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    T[:3, 3] = position
    return T


def base_in_world() -> np.ndarray:
    """Where the simulated arm's link0 stands in the simulator's world (the world frame is never published)."""
    T = np.eye(4)
    T[:3, 3] = ROBOT_BASE_M
    return T


def robot_transforms(world, names: FrankaNames, static: bool) -> list[tuple[str, str, np.ndarray]]:
    """(parent, child, T_parent_child) of the arm's TF tree as robot_state_publisher publishes it for
    franka_description: the fixed joints when ``static`` (base → link0, link7 → link8 → hand → hand_tcp), else
    the moving ones (link0 → … → link7, hand → left/right finger), from the simulated arm's current state."""
    indices = list(range(11))
    states = world.client.getLinkStates(world.robot_id, indices, computeForwardKinematics=True)
    T_world = {-1: base_in_world()}
    for i, state in zip(indices, states, strict=True):
        T_world[i] = _matrix(state[4], state[5])  # the URDF link frame
    out = []
    if static:
        out.append((names.root, names.base, np.eye(4)))
    for child, parent in _PARENT.items():
        if (child in _FIXED) != static:
            continue
        T = np.linalg.inv(T_world[parent]) @ T_world[child]
        out.append((names.link(_PANDA_LINKS[parent]), names.link(_PANDA_LINKS[child]), T))
    if static:
        tcp = np.eye(4)
        tcp[2, 3] = FR3_HAND_TCP_M
        out.append((names.link("hand"), names.tcp, tcp))
    return out


def optical_rotation() -> np.ndarray:
    """camera_<stream>_frame → camera_<stream>_optical_frame (REP-103 body axes → x right, y down, z forward),
    as realsense2_camera publishes it (roll -90°, yaw -90°)."""
    T = np.eye(4)
    T[:3, :3] = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    return T


def camera_transforms(camera_name: str, color_offset_m: Sequence[float]) -> list[tuple[str, str, np.ndarray]]:
    """realsense2_camera's static frames of the colour and depth streams (``<name>_link`` is the depth
    module's origin; the colour sensor sits ``color_offset_m`` from it)."""
    color = np.eye(4)
    color[:3, 3] = color_offset_m
    c = camera_name
    return [(f"{c}_link", f"{c}_color_frame", color),
            (f"{c}_color_frame", f"{c}_color_optical_frame", optical_rotation()),
            (f"{c}_link", f"{c}_depth_frame", np.eye(4)),
            (f"{c}_depth_frame", f"{c}_depth_optical_frame", optical_rotation())]
