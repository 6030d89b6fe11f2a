"""Joint-space motion planning for the Panda: to a joint goal or to a grasp-target pose goal.

One interface, :class:`MotionPlanner`, with two backends chosen by ``config/planner.yaml``:

* ``ompl``: OMPL's geometric planners (RRTConnect by default) in the 7-D joint space, states checked
  by a :class:`~molmomotion_ros.planning.collision.CollisionChecker` (the PyBullet scene in simulation);
* ``moveit_py``: MoveIt 2's ``MoveItPy`` planning component (imported only when selected).

Whatever the backend, the planner owns the safety checks: the start must be valid, the goal inside
the joint limits and the workspace bounds, reachable (IK) and collision-free; a straight joint-space
line is tried first; the path found is time-parameterised (TOPP-RA, ``timing.py``) and every sample
of the trajectory is checked against the joint limits and the collision checker before it is
returned. A refusal says why in ``PlanResult.reason`` (and ``PlanResult.status``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Protocol

import numpy as np
import yaml

from molmomotion_ros.paths import config_path

from ..robot import TABLE_TOP_Z_M, WORKSPACE_X_M, WORKSPACE_Y_M
from .collision import CollisionChecker, PyBulletSceneChecker, joint_limit_reason
from .kinematics import PandaKinematics
from .limits import JointLimits
from .timing import TimedTrajectory, TimingError, time_parameterize

log = logging.getLogger(__name__)

BACKENDS = ("ompl", "moveit_py")
OMPL_PLANNERS = ("RRTConnect", "RRTstar", "PRM", "BITstar")


class PlannerConfigError(ValueError):
    """``config/planner.yaml`` (or a PlannerConfig) is malformed."""


class PlannerUnavailableError(RuntimeError):
    """The configured backend (or planner id) is not installed."""


@dataclass(frozen=True)
class WorkspaceBounds:
    """An axis-aligned box in the world frame (metres) that pose goals must lie in. ``base_m``: where it was given
    relative to the robot base (:meth:`from_base_box`), the base's position in the world; messages then state the
    box and positions in the robot base frame, as the user gave them."""

    x_m: tuple[float, float]
    y_m: tuple[float, float]
    z_m: tuple[float, float]
    base_m: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        for name in ("x_m", "y_m", "z_m"):
            lo, hi = (float(v) for v in getattr(self, name))
            if not lo < hi:
                raise PlannerConfigError(f"workspace {name} must be [low, high] with low < high")
            object.__setattr__(self, name, (lo, hi))
        if self.base_m is not None:
            object.__setattr__(self, "base_m", tuple(float(v) for v in self.base_m))

    @classmethod
    def from_base_box(cls, box_m, base_m) -> "WorkspaceBounds":
        """[xmin, xmax, ymin, ymax, zmin, zmax] in the robot base frame → the box in the planner's world, whose
        robot base sits at ``base_m`` (3,) unrotated (config/robot.yaml)."""
        box = [float(v) for v in box_m]
        if len(box) != 6 or not np.all(np.isfinite(box)):
            raise PlannerConfigError(f"a workspace box needs 6 finite numbers [xmin, xmax, ymin, ymax, zmin, zmax], "
                                     f"got {box}")
        bx, by, bz = (float(v) for v in base_m)
        return cls((box[0] + bx, box[1] + bx), (box[2] + by, box[3] + by), (box[4] + bz, box[5] + bz), (bx, by, bz))

    def contains(self, position_m) -> bool:
        return all(lo <= float(v) <= hi for v, (lo, hi) in zip(position_m, (self.x_m, self.y_m, self.z_m),
                                                                strict=True))

    def describe(self) -> str:
        offset = np.repeat(self.base_m or (0.0, 0.0, 0.0), 2)
        bounds = np.array([*self.x_m, *self.y_m, *self.z_m]) - offset
        frame = "" if self.base_m is None else " in the robot base frame"
        return "x [{:.2f}, {:.2f}] y [{:.2f}, {:.2f}] z [{:.2f}, {:.2f}] m".format(*bounds) + frame

    def describe_point(self, position_m) -> str:
        """A position (world) as :meth:`describe` states the box (in the base frame when given there)."""
        return _fmt(np.asarray(position_m, dtype=float) - np.asarray(self.base_m or (0.0, 0.0, 0.0)))


# The cell's object workspace (config/robot.yaml) grown by 10 cm, from the table top to 60 cm above it.
DEFAULT_WORKSPACE = WorkspaceBounds((WORKSPACE_X_M[0] - 0.1, WORKSPACE_X_M[1] + 0.1),
                                    (WORKSPACE_Y_M[0] - 0.1, WORKSPACE_Y_M[1] + 0.1),
                                    (TABLE_TOP_Z_M, TABLE_TOP_Z_M + 0.6))


@dataclass(frozen=True)
class PlannerConfig:
    backend: str = "ompl"  # "ompl" | "moveit_py"
    planner_id: str = "RRTConnect"  # an OMPL geometric planner (OMPL_PLANNERS)
    planning_time_s: float = 1.0  # budget of one OMPL solve
    simplify: bool = True
    simplify_time_s: float = 0.05  # budget of the path simplification
    collision_resolution_rad: float = 0.02  # states on a segment are checked at most this far apart (per joint)
    trajectory_check_slack_m: float = 0.002  # margin given up by the final check of the timed trajectory
    velocity_scaling: float | None = None  # (0, 1]; None: robot.yaml's
    acceleration_scaling: float | None = None  # (0, 1]; None: as velocity_scaling
    workspace: WorkspaceBounds = DEFAULT_WORKSPACE
    ik_random_seeds: int = 16  # random restarts after the start configuration (and its wrist turns)
    ik_max_solutions: int = 3  # stop the IK search after this many distinct collision-free solutions
    ik_position_tolerance_m: float = 0.001
    ik_rotation_tolerance_rad: float = 0.01
    scene_margin_m: float = 0.005  # clearance kept from scene bodies (default checker)
    self_margin_m: float = 0.002  # clearance kept between links (default checker)
    moveit_node_name: str = "molmomotion_moveit_py"
    moveit_planning_group: str = "panda_arm"
    moveit_pipeline: str = "ompl"
    moveit_planner_id: str = "RRTConnectkConfigDefault"
    moveit_config: str = ""  # MoveItPy's parameter YAML (robot description, pipelines, controllers)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise PlannerConfigError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.backend == "ompl" and self.planner_id not in OMPL_PLANNERS:
            raise PlannerConfigError(f"planner_id must be one of {OMPL_PLANNERS}, got {self.planner_id!r}")
        for name in ("planning_time_s", "collision_resolution_rad", "ik_position_tolerance_m",
                     "ik_rotation_tolerance_rad"):
            if not getattr(self, name) > 0:
                raise PlannerConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if min(self.simplify_time_s, self.scene_margin_m, self.self_margin_m, self.trajectory_check_slack_m) < 0:
            raise PlannerConfigError("simplify_time_s, the collision margins and the slack must not be negative")
        if self.ik_random_seeds < 0 or self.ik_max_solutions < 1:
            raise PlannerConfigError("ik_random_seeds must be >= 0 and ik_max_solutions >= 1")
        for name in ("velocity_scaling", "acceleration_scaling"):
            value = getattr(self, name)
            if value is not None and not 0 < value <= 1:
                raise PlannerConfigError(f"{name} must lie in (0, 1] (or be null), got {value}")

    @classmethod
    def from_yaml(cls, path: str | Path | None = None, **overrides) -> "PlannerConfig":
        """Read ``config/planner.yaml`` (or ``path``); keyword arguments override single fields."""
        path = Path(path) if path else config_path("planner.yaml")
        try:
            raw = yaml.safe_load(path.read_text())["planner"]
            ik, collision, moveit = raw.pop("ik", {}), raw.pop("collision", {}), raw.pop("moveit_py", {})
            workspace = raw.pop("workspace", None)
            fields = dict(raw)
            fields.update({f"ik_{k}": v for k, v in ik.items()})
            fields.update(collision)
            fields.update({f"moveit_{k}": v for k, v in moveit.items()})
            if workspace is not None:
                fields["workspace"] = WorkspaceBounds(tuple(workspace["x_m"]), tuple(workspace["y_m"]),
                                                      tuple(workspace["z_m"]))
            fields.update(overrides)
            return cls(**fields)
        except (OSError, KeyError, TypeError, AttributeError, yaml.YAMLError) as err:
            raise PlannerConfigError(f"cannot read the planner configuration from {path}: {err}") from None


class PlanStatus(Enum):
    SUCCESS = "success"
    INVALID_START = "invalid_start"
    GOAL_OUTSIDE_LIMITS = "goal_outside_limits"
    GOAL_OUTSIDE_WORKSPACE = "goal_outside_workspace"
    GOAL_UNREACHABLE = "goal_unreachable"
    GOAL_IN_COLLISION = "goal_in_collision"
    NO_PATH = "no_path"
    TIMING_FAILED = "timing_failed"  # the path cannot be timed within the limits
    TRAJECTORY_INVALID = "trajectory_invalid"  # the timed trajectory failed the final limit/collision check


@dataclass(frozen=True)
class PlanResult:
    status: PlanStatus
    reason: str  # "" on success; otherwise a sentence for a person
    path_rad: np.ndarray = field(default_factory=lambda: np.zeros((0, 7)))  # (M, 7) waypoints, start first
    trajectory: TimedTrajectory | None = None
    planning_time_s: float = 0.0
    goal_rad: np.ndarray | None = None  # (7,) the joint goal (the IK solution for a pose goal)
    straight_line: bool = False  # the straight joint-space line was collision-free (no sampling planner run)

    @property
    def success(self) -> bool:
        return self.status is PlanStatus.SUCCESS


@dataclass(frozen=True)
class CartesianResult:
    """A Cartesian plan: ``plan`` as for the other goals, ``fraction`` of the waypoint path achieved."""

    plan: PlanResult
    fraction: float

    @property
    def success(self) -> bool:
        return self.plan.success and self.fraction >= 1.0 - 1e-9


class PathBackend(Protocol):
    label: str  # for messages, e.g. "ompl (RRTConnect)"

    def solve(self, q_start: np.ndarray, q_goals: list[np.ndarray], time_s: float) -> np.ndarray | None:
        """A collision-free path (M, 7) from ``q_start`` to one of ``q_goals``, or None."""


class OmplBackend:
    """OMPL geometric planning in the joint space, states validated by ``checker``."""

    def __init__(self, config: PlannerConfig, limits: JointLimits, checker: CollisionChecker):
        from ompl import base as ob
        from ompl import geometric as og
        from ompl import util as ou

        ou.setLogLevel(ou.LOG_WARN)
        if not hasattr(og, config.planner_id):
            raise PlannerUnavailableError(f"this OMPL build has no geometric planner {config.planner_id!r}")
        self._ob, self._og = ob, og
        self.label = f"ompl ({config.planner_id})"
        self.config = config
        self.checker = checker
        self.dof = len(limits.joint_names)
        self.space = ob.RealVectorStateSpace(self.dof)
        bounds = ob.RealVectorBounds(self.dof)
        for i in range(self.dof):
            bounds.setLow(i, float(limits.position_lower_rad[i]))
            bounds.setHigh(i, float(limits.position_upper_rad[i]))
        self.space.setBounds(bounds)
        self.space.setup()

    def _state(self, q: np.ndarray):
        state = self.space.allocState()
        for i in range(self.dof):
            state[i] = float(q[i])
        return state

    def solve(self, q_start: np.ndarray, q_goals: list[np.ndarray], time_s: float) -> np.ndarray | None:
        ob, og = self._ob, self._og
        dof, checker = self.dof, self.checker
        setup = og.SimpleSetup(self.space)
        setup.setStateValidityChecker(lambda s: checker.is_valid(np.fromiter((s[i] for i in range(dof)), float, dof)))
        si = setup.getSpaceInformation()
        # Motions are checked every collision_resolution_rad of joint-space (L2) distance.
        si.setStateValidityCheckingResolution(self.config.collision_resolution_rad / self.space.getMaximumExtent())
        setup.setStartState(self._state(q_start))
        if len(q_goals) == 1:
            setup.setGoalState(self._state(q_goals[0]))
        else:
            goals = ob.GoalStates(si)
            for q in q_goals:
                goals.addState(self._state(q))
            setup.setGoal(goals)
        setup.setPlanner(getattr(og, self.config.planner_id)(si))
        setup.setup()  # after start and goal: the other order crashes OMPL 2.0.1's bindings
        setup.solve(time_s)
        if not setup.haveExactSolutionPath():
            return None
        path = setup.getSolutionPath()
        if self.config.simplify and self.config.simplify_time_s > 0:
            simplifier = og.PathSimplifier(si)
            simplifier.reduceVertices(path)
            simplifier.simplify(path, self.config.simplify_time_s, False)
        return np.array([[path.getState(j)[i] for i in range(dof)] for j in range(path.getStateCount())])


class MoveItPyBackend:
    """A thin adapter to MoveIt 2's Python API (``moveit_py``). UNTESTED here: moveit_py is not
    installable from PyPI, so this code has never run in this project's CI.

    MoveIt plans against its own planning scene (its planning scene monitor) with its own pipeline
    configuration (``moveit_pipeline`` / ``moveit_planner_id``); the joint path it returns is then
    re-checked, time-parameterised and validated by :class:`MotionPlanner` like any other. The
    ``MoveItPy`` instance initialises rclcpp itself; the node that uses this backend owns rclpy.
    """

    def __init__(self, config: PlannerConfig, limits: JointLimits):
        problems = []
        try:
            from moveit.core.robot_state import RobotState
            from moveit.planning import MoveItPy, PlanRequestParameters
        except ImportError as err:
            problems.append(f"MoveIt 2's Python bindings are not importable ({err}): on a ROS 2 install run "
                            "`sudo apt install ros-$ROS_DISTRO-moveit-py` (Jazzy: ros-jazzy-moveit-py) and source "
                            "/opt/ros/$ROS_DISTRO/setup.bash; the pip venv cannot hold them")
        if not config.moveit_config:
            problems.append("no MoveItPy configuration: pass its YAML as the node parameter moveit_config "
                            "(launch argument moveit_config:=/path/moveit_py.yaml) or moveit_py.config in planner.yaml")
        elif not Path(config.moveit_config).is_file():
            problems.append(f"the MoveItPy configuration {config.moveit_config} does not exist")
        if problems:
            raise PlannerUnavailableError("the moveit_py planner backend cannot start: " + "; ".join(problems)
                                          + " (or plan without MoveIt: planner_backend:=ompl)")
        self.label = f"moveit_py ({config.moveit_pipeline}/{config.moveit_planner_id})"
        self.config = config
        self.joint_names = limits.joint_names
        self._RobotState, self._PlanRequestParameters = RobotState, PlanRequestParameters
        self._moveit = MoveItPy(node_name=config.moveit_node_name, launch_params_filepaths=[config.moveit_config])
        self._component = self._moveit.get_planning_component(config.moveit_planning_group)

    def _robot_state(self, q: np.ndarray):
        state = self._RobotState(self._moveit.get_robot_model())
        state.set_joint_group_positions(self.config.moveit_planning_group, np.asarray(q, dtype=float))
        state.update()
        return state

    def solve(self, q_start: np.ndarray, q_goals: list[np.ndarray], time_s: float) -> np.ndarray | None:
        self._component.set_start_state(robot_state=self._robot_state(q_start))
        self._component.set_goal_state(robot_state=self._robot_state(q_goals[0]))
        params = self._PlanRequestParameters(self._moveit, "plan_request_params")
        params.planning_pipeline = self.config.moveit_pipeline
        params.planner_id = self.config.moveit_planner_id
        params.planning_time = float(time_s)
        result = self._component.plan(single_plan_parameters=params)
        if not result:
            return None
        message = result.trajectory.get_robot_trajectory_msg().joint_trajectory
        order = [list(message.joint_names).index(name) for name in self.joint_names]
        return np.array([[point.positions[i] for i in order] for point in message.points], dtype=float)


def make_backend(config: PlannerConfig, limits: JointLimits, checker: CollisionChecker) -> PathBackend:
    if config.backend == "ompl":
        return OmplBackend(config, limits, checker)
    return MoveItPyBackend(config, limits)


class MotionPlanner:
    """Plans collision-free, limit-respecting trajectories to joint or pose goals.

    ``config``: default ``config/planner.yaml``; ``limits``: default ``config/robot.yaml`` (scaled by
    the config's velocity/acceleration scaling when set); ``checker``: default a
    :class:`PyBulletSceneChecker` with the harness table only; ``kinematics``: default
    :class:`PandaKinematics` within ``limits``. One call at a time: the checker and the kinematics
    hold state (a PyBullet client, pinocchio data), so a node must serialise planning requests.
    """

    def __init__(self, config: PlannerConfig | None = None, limits: JointLimits | None = None,
                 checker: CollisionChecker | None = None, kinematics: PandaKinematics | None = None):
        self.config = config or PlannerConfig.from_yaml()
        limits = limits or JointLimits.from_yaml()
        if self.config.velocity_scaling is not None:
            limits = limits.scaled(self.config.velocity_scaling, self.config.acceleration_scaling)
        self.limits = limits
        self.checker = checker or PyBulletSceneChecker(limits=limits, scene_margin_m=self.config.scene_margin_m,
                                                       self_margin_m=self.config.self_margin_m)
        self.kinematics = kinematics or PandaKinematics(limits=limits)
        self.backend = make_backend(self.config, limits, self.checker)

    # --- public API ---------------------------------------------------------------------------
    def plan_to_joints(self, q_start, q_goal, velocity_scaling: float | None = None,
                       acceleration_scaling: float | None = None) -> PlanResult:
        """A trajectory from ``q_start`` to ``q_goal`` (both (7,) rad). The scalings (fractions of robot.yaml's
        limits) override the config's for this trajectory; acceleration None = as the velocity scaling."""
        t0 = time.perf_counter()
        q_start, q_goal = np.asarray(q_start, dtype=float), np.asarray(q_goal, dtype=float)
        refusal = self._check_start(q_start)
        if refusal is None:
            problem = joint_limit_reason(q_goal, self.limits)
            if problem:
                refusal = (PlanStatus.GOAL_OUTSIDE_LIMITS, f"the joint goal is outside the joint limits: {problem}")
        if refusal is None:
            position = self.kinematics.fk(q_goal)[:3, 3]
            if not self.config.workspace.contains(position):
                refusal = (PlanStatus.GOAL_OUTSIDE_WORKSPACE, self._outside_workspace(position, "joint goal's"))
        if refusal is None:
            problem = self.checker.reason(q_goal)
            if problem:
                refusal = (PlanStatus.GOAL_IN_COLLISION, f"the joint goal is in collision: {problem}")
        if refusal is not None:
            return self._refuse(*refusal, t0)
        return self._connect(q_start, [q_goal], t0, self._scaled(velocity_scaling, acceleration_scaling))

    def plan_to_pose(self, q_start, T_goal, velocity_scaling: float | None = None,
                     acceleration_scaling: float | None = None) -> PlanResult:
        """A trajectory from ``q_start`` (7,) that brings the grasp target to ``T_goal`` (4x4, world)."""
        t0 = time.perf_counter()
        q_start, T_goal = np.asarray(q_start, dtype=float), np.asarray(T_goal, dtype=float)
        refusal = self._check_start(q_start)
        if refusal is not None:
            return self._refuse(*refusal, t0)
        if T_goal.shape != (4, 4) or not np.all(np.isfinite(T_goal)):
            return self._refuse(PlanStatus.GOAL_UNREACHABLE, f"the goal pose must be a finite 4x4 matrix, got "
                                f"shape {T_goal.shape}", t0)
        position = T_goal[:3, 3]
        if not self.config.workspace.contains(position):
            return self._refuse(PlanStatus.GOAL_OUTSIDE_WORKSPACE, self._outside_workspace(position, "goal"), t0)
        cfg = self.config
        for n_random_seeds in (cfg.ik_random_seeds, 4 * cfg.ik_random_seeds):  # more restarts if all collide
            solutions = self.kinematics.ik_solutions(
                T_goal, seeds=[q_start], position_tol_m=cfg.ik_position_tolerance_m,
                rotation_tol_rad=cfg.ik_rotation_tolerance_rad, n_random_seeds=n_random_seeds,
                max_solutions=cfg.ik_max_solutions, accept=self.checker.is_valid)
            if not solutions or any(self.checker.is_valid(q) for q in solutions):
                break
        if not solutions:
            reach = float(np.linalg.norm(position - self.kinematics.base_pose[:3, 3]))
            return self._refuse(PlanStatus.GOAL_UNREACHABLE,
                                f"the goal pose at {_fmt(position)} m is unreachable: no IK solution within the joint "
                                f"limits from the start configuration and {n_random_seeds} random seeds "
                                f"({reach:.2f} m from the robot base)", t0)
        problems = [self.checker.reason(q) for q in solutions]
        valid = [q for q, problem in zip(solutions, problems, strict=True) if problem is None]
        if not valid:
            return self._refuse(PlanStatus.GOAL_IN_COLLISION,
                                f"the goal pose at {_fmt(position)} m is in collision for all {len(solutions)} IK "
                                f"solutions found: {problems[0]}", t0)
        return self._connect(q_start, valid, t0, self._scaled(velocity_scaling, acceleration_scaling))

    def plan_cartesian(self, q_start, poses_world, max_step_m: float = 0.01, max_step_rad: float = 0.1,
                       jump_threshold_rad: float = 0.25, velocity_scaling: float | None = None,
                       require_complete: bool = True, acceleration_scaling: float | None = None) -> CartesianResult:
        """A joint path that moves the grasp target through ``poses_world`` (N, 4, 4) in straight lines.

        Like MoveIt's ``compute_cartesian_path``: the segments between waypoints (start pose first) are
        interpolated every ``max_step_m`` / ``max_step_rad``, each solved by IK seeded with the last
        solution; the path stops at the first pose with no IK solution, a joint jump above
        ``jump_threshold_rad`` or a collision (including along the joint segment), and ``fraction``
        says how much of the path was achieved. The achieved path is timed (and checked) when
        complete, or always with ``require_complete=False``.
        """
        t0 = time.perf_counter()
        q_start = np.asarray(q_start, dtype=float)
        poses = np.asarray(poses_world, dtype=float).reshape(-1, 4, 4)
        refusal = self._check_start(q_start)
        if refusal is not None:
            return CartesianResult(self._refuse(*refusal, t0), 0.0)
        if not np.all(np.isfinite(poses)):
            return CartesianResult(self._refuse(PlanStatus.GOAL_UNREACHABLE, "the waypoints contain NaN", t0), 0.0)
        targets = _interpolate_poses(np.concatenate([self.kinematics.fk(q_start)[None], poses]), max_step_m,
                                     max_step_rad)
        path, reason, status = [q_start], "", PlanStatus.SUCCESS
        cfg = self.config
        for T in targets[1:]:
            if not cfg.workspace.contains(T[:3, 3]):
                status, reason = PlanStatus.GOAL_OUTSIDE_WORKSPACE, self._outside_workspace(T[:3, 3], "waypoint")
                break
            solutions = self.kinematics.ik_solutions(T, seeds=[path[-1]], position_tol_m=cfg.ik_position_tolerance_m,
                                                     rotation_tol_rad=cfg.ik_rotation_tolerance_rad,
                                                     n_random_seeds=0, max_solutions=1)
            if not solutions:
                status, reason = PlanStatus.GOAL_UNREACHABLE, f"no IK solution at {_fmt(T[:3, 3])} m"
                break
            q = solutions[0]
            if np.max(np.abs(q - path[-1])) > jump_threshold_rad:
                status, reason = PlanStatus.NO_PATH, f"a joint jump of {np.max(np.abs(q - path[-1])):.2f} rad at " \
                    f"{_fmt(T[:3, 3])} m"
                break
            if not self.segment_valid(path[-1], q):
                problem = self.checker.reason(q) or "the joint segment there collides"
                status, reason = PlanStatus.GOAL_IN_COLLISION, f"collision at {_fmt(T[:3, 3])} m: {problem}"
                break
            path.append(q)
        fraction = (len(path) - 1) / max(1, len(targets) - 1)
        path_rad = np.array(path)
        if status is not PlanStatus.SUCCESS and (require_complete or len(path) < 2):
            result = self._refuse(status, f"the Cartesian path stops at {fraction:.0%}: {reason}", t0)
            return CartesianResult(replace(result, path_rad=path_rad), fraction)
        limits = self._scaled(velocity_scaling, acceleration_scaling)
        try:
            trajectory = time_parameterize(path_rad, limits)
        except TimingError as err:
            return CartesianResult(self._refuse(PlanStatus.TIMING_FAILED, f"the Cartesian path cannot be timed: "
                                                f"{err}", t0), fraction)
        problem = self._trajectory_problem(trajectory, limits)
        if problem:
            return CartesianResult(self._refuse(PlanStatus.TRAJECTORY_INVALID, problem, t0), fraction)
        return CartesianResult(PlanResult(PlanStatus.SUCCESS, reason, path_rad, trajectory, time.perf_counter() - t0,
                                          path_rad[-1].copy()), fraction)

    # --- internals ----------------------------------------------------------------------------
    def _check_start(self, q_start: np.ndarray) -> tuple[PlanStatus, str] | None:
        problem = self.checker.reason(q_start)
        return None if problem is None else (PlanStatus.INVALID_START, f"the start state is invalid: {problem}")

    def _outside_workspace(self, position: np.ndarray, what: str) -> str:
        workspace = self.config.workspace
        return (f"the {what} grasp-target position {workspace.describe_point(position)} m lies outside the "
                f"workspace bounds ({workspace.describe()})")

    def _scaled(self, velocity_scaling: float | None, acceleration_scaling: float | None) -> JointLimits:
        """The limits one trajectory is timed under (None, None: the planner's own)."""
        if velocity_scaling is None and acceleration_scaling is None:
            return self.limits
        return self.limits.scaled(velocity_scaling or self.limits.velocity_scaling, acceleration_scaling)

    def _refuse(self, status: PlanStatus, reason: str, t0: float, goal_rad=None) -> PlanResult:
        log.info("plan refused (%s): %s", status.value, reason)
        return PlanResult(status, reason, planning_time_s=time.perf_counter() - t0, goal_rad=goal_rad)

    def segment_valid(self, q_a: np.ndarray, q_b: np.ndarray) -> bool:
        """Whether every state on the straight joint-space segment is valid (checked at the
        configured resolution, midpoints first so a blocked segment fails fast)."""
        n = max(1, int(np.ceil(np.max(np.abs(q_b - q_a)) / self.config.collision_resolution_rad)))
        return all(self.checker.is_valid(q_a + (q_b - q_a) * (i / n)) for i in _bisection_order(n))

    def _connect(self, q_start: np.ndarray, q_goals: list[np.ndarray], t0: float, limits: JointLimits) -> PlanResult:
        path, straight = None, False
        for q_goal in q_goals[:2]:  # the nearest IK solutions: a straight line there is the natural motion
            if self.segment_valid(q_start, q_goal):
                path, straight = np.array([q_start, q_goal]), True
                break
        if path is None:
            budget = self.config.planning_time_s
            path = self.backend.solve(q_start, q_goals, budget)
            if path is None:
                return self._refuse(PlanStatus.NO_PATH, f"{self.backend.label} found no collision-free path within "
                                    f"{budget:.2f} s", t0)
            goal = min(q_goals, key=lambda q: float(np.max(np.abs(q - path[-1]))))
            if np.max(np.abs(path[0] - q_start)) > 1e-3 or np.max(np.abs(path[-1] - goal)) > 1e-3:
                return self._refuse(PlanStatus.NO_PATH, f"{self.backend.label} returned a path that does not join "
                                    "the start to the goal", t0)
            path[0], path[-1] = q_start, goal  # exact endpoints (the backend may round them)
        try:
            trajectory = time_parameterize(path, limits)
        except TimingError as err:
            return self._refuse(PlanStatus.TIMING_FAILED, f"the path cannot be timed within the limits: {err}", t0,
                                path[-1])
        problem = self._trajectory_problem(trajectory, limits)
        if problem:
            return self._refuse(PlanStatus.TRAJECTORY_INVALID, problem, t0, path[-1])
        return PlanResult(PlanStatus.SUCCESS, "", path, trajectory, time.perf_counter() - t0, path[-1].copy(),
                          straight)

    def _trajectory_problem(self, trajectory: TimedTrajectory, limits: JointLimits) -> str | None:
        """Why the timed trajectory may not be returned (a limit broken, a sample in collision), or None."""
        violations = trajectory.violations(limits)
        if violations:
            return f"the timed trajectory breaks limits: {', '.join(violations)}"
        positions = trajectory.positions_rad
        # Check samples no more than the collision resolution apart, and always the last one.
        step = np.max(np.abs(np.diff(positions, axis=0)), axis=1) if len(positions) > 1 else np.zeros(0)
        travelled = np.r_[0.0, np.cumsum(step)]
        marks = np.unique(np.r_[np.searchsorted(travelled, np.arange(0.0, travelled[-1],
                                                                      self.config.collision_resolution_rad)),
                                len(positions) - 1])
        for i in marks:
            problem = self.checker.reason(positions[i], slack_m=self.config.trajectory_check_slack_m)
            if problem:
                return f"the timed trajectory collides at t = {trajectory.times_s[i]:.2f} s: {problem}"
        return None

    def with_config(self, **changes) -> "MotionPlanner":
        """A planner sharing this one's checker and kinematics with some config fields changed."""
        return MotionPlanner(replace(self.config, **changes), self.limits, self.checker, self.kinematics)


def _interpolate_poses(poses: np.ndarray, max_step_m: float, max_step_rad: float) -> np.ndarray:
    """Poses (N, 4, 4) with straight-line positions and slerped rotations inserted between neighbours."""
    from scipy.spatial.transform import Rotation, Slerp

    out = [poses[0]]
    for a, b in zip(poses[:-1], poses[1:], strict=True):
        rotations = Rotation.from_matrix(np.stack([a[:3, :3], b[:3, :3]]))
        angle = float((rotations[0].inv() * rotations[1]).magnitude())
        n = max(1, int(np.ceil(max(np.linalg.norm(b[:3, 3] - a[:3, 3]) / max_step_m, angle / max_step_rad))))
        slerp = Slerp([0.0, 1.0], rotations)
        for i in range(1, n + 1):
            T = np.eye(4)
            T[:3, :3] = slerp([i / n]).as_matrix()[0]
            T[:3, 3] = a[:3, 3] + (b[:3, 3] - a[:3, 3]) * (i / n)
            out.append(T)
    return np.array(out)


def _bisection_order(n: int) -> list[int]:
    """1..n with the end first, then midpoints of ever finer halvings (coarse-to-fine coverage)."""
    order, seen = [n], {0, n}
    intervals = [(0, n)]
    while intervals:
        nxt = []
        for lo, hi in intervals:
            if hi - lo > 1:
                mid = (lo + hi) // 2
                if mid not in seen:
                    seen.add(mid)
                    order.append(mid)
                nxt += [(lo, mid), (mid, hi)]
        intervals = nxt
    return order


def _fmt(position) -> str:
    return "({:.3f}, {:.3f}, {:.3f})".format(*np.asarray(position, dtype=float))
