"""From a forecast to arm motions: grasp on the target, carry along the forecast, place or push.

The forecast says *what* should happen to the object (8 query points over F steps); this module
decides *how* the arm makes it happen, with nothing but perception and the planner:

1. ``perceive_target``: the grounded target region of the depth image → the object's top face
   (centre, top height, principal axes, half extents) in the world frame.
2. ``skill_from_forecast``: the forecast's rigid fit → a pick-and-place (the object is lifted) or a
   push (it slides on the table): grasp pose, the carry path (each forecast step's object pose
   composed with the grasp: MoveIt-style Cartesian path), the place pose or the push line.
3. ``SkillPlanner.plan``: the motion sequence — planned (OMPL) free motions, Cartesian approach,
   carry and retreat segments, gripper commands — each time-parameterised and checked by the
   planner, against a collision checker that sees the perceived scene without the target.

Everything is in the world frame, metres and radians; no simulator state is read here, so the
harness agent and the manipulation node run exactly this code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..robot import GRIPPER_OPEN_M, HOME_JOINTS_RAD
from .planner import MotionPlanner, PlanResult
from .timing import TimedTrajectory

APPROACH_HEIGHT_M = 0.10  # above grasp and release points
GRASP_DEPTH_M = 0.022  # the finger pads close this far below the object's top
MIN_GRASP_HEIGHT_M = 0.012  # above the table
RELEASE_CLEARANCE_M = 0.012  # gap left under the object at release
LIFT_THRESHOLD_M = 0.03  # a forecast that raises the object more than this is a pick-and-place
MIN_MOTION_M = 0.02  # a forecast that moves the object less than this asks for nothing
PUSHER_HEIGHT_M = 0.015  # grasp-target height above the table while pushing
PUSHER_GAP_M = 0.035  # start this far behind the object's near face
PUSH_FINGER_OPENING_M = 0.005  # per finger while pushing
# May touch the scene in contact segments (descend, carry, lower, push), as MoveIt's allowed collision
# matrix lets the gripper touch the object it grasps; the arm's other links stay checked.
CONTACT_LINKS = ("panda_leftfinger", "panda_rightfinger", "panda_hand")


class SkillError(RuntimeError):
    """No motion could be derived or planned; the message says which step failed and why."""


@dataclass(frozen=True)
class PerceivedTarget:
    """The target object as the camera sees it (world frame)."""

    top_center_m: np.ndarray  # (3,) centre of the top face
    top_z_m: float
    major_axis: np.ndarray  # (2,) unit xy direction of the longer horizontal side
    half_extents_m: np.ndarray  # (2,) along the major and the minor axis
    points_world_m: np.ndarray  # (N, 3) the target's visible surface


def down_pose(position_m, yaw_rad: float) -> np.ndarray:
    """Grasp-target pose pointing down (the harness's convention: roll pi about x, then yaw): its
    fingers close along (sin yaw, -cos yaw)."""
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    T = np.eye(4)
    T[:3, :3] = np.array([[c, s, 0.0], [s, -c, 0.0], [0.0, 0.0, -1.0]])
    T[:3, 3] = position_m
    return T


def yaw_of(T: np.ndarray) -> float:
    """The yaw of a pointing-down pose made by :func:`down_pose`."""
    return float(np.arctan2(T[1, 0], T[0, 0]))


def wrap_half_turn(yaw_rad: float) -> float:
    """A parallel gripper is symmetric under a half turn: the equivalent yaw in [-pi/2, pi/2)."""
    return float((yaw_rad + np.pi / 2) % np.pi - np.pi / 2)


def perceive_target(points_world_m: np.ndarray, table_z_m: float) -> PerceivedTarget:
    """The top face of the target from its visible surface points (N, 3), e.g. the grounded mask's
    depth. The top face (points within 1 cm of the highest decile) gives the centre and, by PCA, the
    axes: the side faces seen obliquely would pull the centre towards the camera."""
    pts = np.asarray(points_world_m, dtype=float)
    pts = pts[np.all(np.isfinite(pts), 1) & (pts[:, 2] > table_z_m + 0.003)]
    if len(pts) < 3:
        raise SkillError(f"the target region has {len(pts)} points above the table; cannot find its top face")
    top_z = float(np.percentile(pts[:, 2], 90))
    top = pts[pts[:, 2] > top_z - 0.01]
    center_xy = 0.5 * (top[:, :2].min(0) + top[:, :2].max(0)) if len(top) < 3 else top[:, :2].mean(0)
    xy = top[:, :2] - center_xy
    if len(top) >= 3:
        _, _, vt = np.linalg.svd(xy, full_matrices=False)
        major = vt[0]
    else:
        major = np.array([1.0, 0.0])
    minor = np.array([-major[1], major[0]])
    half = np.array([np.ptp(xy @ major), np.ptp(xy @ minor)]) / 2 if len(top) >= 2 else np.array([0.02, 0.02])
    return PerceivedTarget(np.array([*center_xy, top_z]), top_z, major, half, pts)


@dataclass(frozen=True)
class Skill:
    """What the arm should do, derived from one forecast hypothesis."""

    kind: str  # "pick_place" | "push"
    grasp_pose: np.ndarray | None = None  # (4, 4) grasp target at the grasp (pick_place)
    carry_poses: np.ndarray | None = None  # (M, 4, 4) grasp target along the forecast after the grasp
    place_pose: np.ndarray | None = None  # (4, 4) grasp target at release
    push_start_m: np.ndarray | None = None  # (3,)
    push_end_m: np.ndarray | None = None  # (3,)
    displacement_m: np.ndarray = field(default_factory=lambda: np.zeros(3))  # of the object's centroid


def skill_from_forecast(target: PerceivedTarget, points_t0_m: np.ndarray, tracks_m: np.ndarray,
                        motions: np.ndarray, table_z_m: float) -> Skill:
    """Grasp and goal from the forecast: ``tracks_m`` (P, F, 3) of the t0 points (P, 3), and the
    per-step rigid motions (F, 4, 4) fitted to them (``molmomotion_ros.geometry.object_motion_from_tracks``)."""
    start = np.nanmean(points_t0_m, 0)
    centroids = np.nanmean(tracks_m, 0)  # (F, 3)
    displacement = centroids[-1] - start
    lift = float(np.max(centroids[:, 2]) - start[2])
    if np.linalg.norm(displacement[:2]) < MIN_MOTION_M and lift < LIFT_THRESHOLD_M:
        raise SkillError(f"the forecast moves the target only {np.linalg.norm(displacement) * 100:.1f} cm: "
                         "nothing to do")
    if lift >= LIFT_THRESHOLD_M:
        grasp_z = max(target.top_z_m - GRASP_DEPTH_M, table_z_m + MIN_GRASP_HEIGHT_M)
        minor = np.array([-target.major_axis[1], target.major_axis[0]])
        yaw = wrap_half_turn(float(np.arctan2(minor[0], -minor[1])))  # fingers close across the short side
        grasp = down_pose([*target.top_center_m[:2], grasp_z], yaw)
        carry = []
        for M in motions:
            # Keep the gripper pointing down: only the fitted yaw of each step is applied.
            d_yaw = float(np.arctan2(M[1, 0], M[0, 0]))
            R_yaw = np.array([[np.cos(d_yaw), -np.sin(d_yaw), 0], [np.sin(d_yaw), np.cos(d_yaw), 0], [0, 0, 1]])
            position = R_yaw @ (grasp[:3, 3] - start) + start + (M[:3, :3] @ start + M[:3, 3] - start)
            carry.append(down_pose(position, yaw + d_yaw))
        carry = np.array(carry)
        place = carry[-1].copy()
        place[2, 3] += RELEASE_CLEARANCE_M
        return Skill("pick_place", grasp_pose=grasp, carry_poses=carry, place_pose=place, displacement_m=displacement)
    direction = displacement[:2] / np.linalg.norm(displacement[:2])
    half_along = float(np.abs([direction @ target.major_axis,
                               direction @ np.array([-target.major_axis[1], target.major_axis[0]])])
                       @ target.half_extents_m)
    center = target.top_center_m[:2]
    start_xy = center - direction * (half_along + PUSHER_GAP_M)
    end_xy = center + displacement[:2] - direction * half_along
    z = table_z_m + PUSHER_HEIGHT_M
    return Skill("push", push_start_m=np.array([*start_xy, z]), push_end_m=np.array([*end_xy, z]),
                 displacement_m=displacement)


@dataclass(frozen=True)
class MotionStep:
    """One step of a plan: a timed arm trajectory or a gripper command (per-finger opening, metres)."""

    label: str
    trajectory: TimedTrajectory | None = None
    gripper_opening_m: float | None = None
    gripper_closed: bool = False


@dataclass
class SkillPlan:
    steps: list[MotionStep]
    planning_time_s: float
    carry_follows_forecast: bool = False  # the carry went along the forecast (else: lift, move, lower)
    notes: list[str] = field(default_factory=list)


class SkillPlanner:
    """Plans the motion sequence of a :class:`Skill` with a :class:`MotionPlanner`.

    The planner's checker must describe the scene without the target (it is touched on purpose).
    Free motions are planned at ``free_scaling`` of the velocity limits; contact and carry
    segments at ``contact_scaling`` (slow enough not to shake a held object loose). Every segment's
    acceleration and jerk limits are scaled by ``acceleration_scaling`` (0: by its velocity scaling).
    """

    def __init__(self, planner: MotionPlanner, free_scaling: float = 0.5, contact_scaling: float = 0.2,
                 acceleration_scaling: float = 0.0):
        self.planner = planner
        self.free_scaling = free_scaling
        self.contact_scaling = contact_scaling
        self.acceleration_scaling = acceleration_scaling

    def _scaling(self, velocity_scaling: float) -> dict:
        return {"velocity_scaling": velocity_scaling, "acceleration_scaling": self.acceleration_scaling or None}

    def plan(self, q_start: np.ndarray, skill: Skill) -> SkillPlan:
        q = np.asarray(q_start, dtype=float)
        steps: list[MotionStep] = []
        plan = SkillPlan(steps, 0.0)

        def add(label: str, result: PlanResult) -> np.ndarray:
            plan.planning_time_s += result.planning_time_s
            if not result.success:
                raise SkillError(f"{label}: {result.reason}")
            steps.append(MotionStep(label, result.trajectory))
            return result.trajectory.positions_rad[-1].copy()

        def cartesian(label: str, q_from, poses, scaling):
            # Grasping, carrying, pushing and releasing touch the scene with the fingers on purpose.
            allowing = getattr(self.planner.checker, "allowing", None)
            if allowing is None:
                result = self.planner.plan_cartesian(q_from, poses, **self._scaling(scaling))
            else:
                with allowing(CONTACT_LINKS):
                    result = self.planner.plan_cartesian(q_from, poses, **self._scaling(scaling))
            plan.planning_time_s += result.plan.planning_time_s
            return result

        def above(T: np.ndarray, height: float) -> np.ndarray:
            T = T.copy()
            T[2, 3] += height
            return T

        def approach_and_descend(T_contact: np.ndarray, scaling: float) -> np.ndarray:
            """Free motion to above ``T_contact``, then straight down. The arm configuration above
            decides whether the straight descent works (joint limits, wrist posture), so a few IK
            solutions there are tried, nearest first."""
            T_above = above(T_contact, APPROACH_HEIGHT_M)
            cfg = self.planner.config
            candidates = self.planner.kinematics.ik_solutions(
                T_above, seeds=[q], position_tol_m=cfg.ik_position_tolerance_m,
                rotation_tol_rad=cfg.ik_rotation_tolerance_rad, n_random_seeds=cfg.ik_random_seeds,
                max_solutions=3, accept=self.planner.checker.is_valid)
            failures = []
            for q_above in [c for c in candidates if self.planner.checker.is_valid(c)][:3]:
                descend = cartesian("descend", q_above, T_contact[None], scaling)
                if not descend.success:
                    failures.append(f"descend: {descend.plan.reason}")
                    continue
                approach = self.planner.plan_to_joints(q, q_above, **self._scaling(self.free_scaling))
                plan.planning_time_s += approach.planning_time_s
                if not approach.success:
                    failures.append(f"approach: {approach.reason}")
                    continue
                steps.append(MotionStep("approach", approach.trajectory))
                steps.append(MotionStep("descend", descend.plan.trajectory))
                return descend.plan.trajectory.positions_rad[-1].copy()
            if not candidates:
                raise SkillError(f"approach: no IK solution above the contact point {np.round(T_contact[:3, 3], 3)} m")
            raise SkillError("; ".join(failures) or "approach: every IK solution above the contact is in collision")

        if skill.kind == "pick_place":
            steps.append(MotionStep("open gripper", gripper_opening_m=GRIPPER_OPEN_M))
            q = approach_and_descend(skill.grasp_pose, self.contact_scaling)
            steps.append(MotionStep("close gripper", gripper_opening_m=0.0, gripper_closed=True))
            # Carry along the forecast: drop the steps before the object starts moving and points
            # closer than 5 mm (the forecast's jitter), and end above the place before lowering.
            carry = [T for T in skill.carry_poses if np.linalg.norm(T[:3, 3] - skill.grasp_pose[:3, 3]) > 0.01]
            kept: list[np.ndarray] = []
            for T in carry:
                if not kept or np.linalg.norm(T[:3, 3] - kept[-1][:3, 3]) > 0.005:
                    kept.append(T)
            carry_z = max(skill.grasp_pose[2, 3], skill.place_pose[2, 3]) + APPROACH_HEIGHT_M
            followed = None
            if len(kept) >= 2 and max(T[2, 3] for T in kept) > skill.grasp_pose[2, 3] + 0.03:
                poses = np.array(kept[:-1] + [skill.place_pose])
                followed = cartesian("carry", q, poses, self.contact_scaling)
            if followed is not None and followed.success:
                q = add("carry along the forecast", followed.plan)
                plan.carry_follows_forecast = True
            else:
                if followed is not None:
                    plan.notes.append(f"forecast carry refused ({followed.plan.reason}); lifting instead")
                lift = skill.grasp_pose.copy()
                lift[2, 3] = carry_z
                q = add("lift", cartesian("lift", q, lift[None], self.contact_scaling).plan)
                over = skill.place_pose.copy()
                over[2, 3] = carry_z
                q = add("carry", cartesian("carry", q, over[None], self.contact_scaling).plan)
                q = add("lower", cartesian("lower", q, skill.place_pose[None], self.contact_scaling).plan)
            steps.append(MotionStep("release", gripper_opening_m=GRIPPER_OPEN_M))
            q = add("retreat", cartesian("retreat", q, above(skill.place_pose, APPROACH_HEIGHT_M)[None],
                                         self.contact_scaling).plan)
        else:
            direction = skill.push_end_m[:2] - skill.push_start_m[:2]
            yaw = float(np.arctan2(direction[1], direction[0]))  # fingers side by side across the push line
            start, end = down_pose(skill.push_start_m, yaw), down_pose(skill.push_end_m, yaw)
            steps.append(MotionStep("pusher fingers", gripper_opening_m=PUSH_FINGER_OPENING_M, gripper_closed=True))
            q = approach_and_descend(start, self.contact_scaling)
            q = add("push", cartesian("push", q, end[None], self.contact_scaling * 0.75).plan)
            back = end.copy()  # leave the object's face before lifting, or friction drags it up
            back[:2, 3] -= direction / (np.linalg.norm(direction) + 1e-9) * 0.02
            q = add("back off", cartesian("back off", q, back[None], self.contact_scaling).plan)
            q = add("retreat", cartesian("retreat", q, above(back, APPROACH_HEIGHT_M)[None],
                                         self.contact_scaling).plan)
            steps.append(MotionStep("open gripper", gripper_opening_m=GRIPPER_OPEN_M))
        add("home", self.planner.plan_to_joints(q, np.asarray(HOME_JOINTS_RAD),
                                                **self._scaling(self.free_scaling)))
        return plan


@dataclass(frozen=True)
class SequenceSamples:
    """A plan's steps laid end to end on one time axis (a preview of the whole sequence)."""

    times_s: np.ndarray  # (N,) strictly increasing, from 0
    positions_rad: np.ndarray  # (N, 7)
    gripper_events: list[tuple[float, str, float]]  # (time s, step label, per-finger opening m)


def sequence_samples(steps: list[MotionStep], q_start: np.ndarray, gripper_settle_s: float,
                     stride_s: float = 0.05) -> SequenceSamples:
    """The arm's positions over the whole plan: each trajectory's samples (about every ``stride_s``, always its
    last) after the previous step's end; a gripper step holds the arm for ``gripper_settle_s``, as execution does."""
    times, positions, events = [0.0], [np.asarray(q_start, dtype=float)], []
    for step in steps:
        t_end, q_end = times[-1], positions[-1]
        if step.trajectory is None:
            events.append((t_end, step.label, float(step.gripper_opening_m)))
            if gripper_settle_s > 0:
                times.append(t_end + gripper_settle_s)
                positions.append(q_end)
            continue
        trajectory = step.trajectory
        every = max(1, int(round(stride_s / max(np.min(np.diff(trajectory.times_s)), 1e-9))))
        keep = np.unique(np.r_[np.arange(1, len(trajectory.times_s), every), len(trajectory.times_s) - 1])
        keep = keep[trajectory.times_s[keep] > 0]
        times.extend(t_end + trajectory.times_s[keep])
        positions.extend(trajectory.positions_rad[keep])
    return SequenceSamples(np.array(times), np.array(positions), events)
