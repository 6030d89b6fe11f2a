"""One forecast + one depth frame + the arm's joints → a planned motion sequence.

The pure core behind both the harness's planner agent and the ROS manipulation node (which feeds it
from topics): it segments the target around the forecast's t0 points, builds the obstacle cloud
from the rest of the depth image, turns the forecast into a skill (``skills.skill_from_forecast``)
and plans it (``skills.SkillPlanner``). World frame, metres, radians.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..camera import PinholeCamera
from ..geometry import dilate, grow_region, object_motion_from_tracks
from .collision import PointCloudChecker
from .kinematics import PandaKinematics
from .planner import MotionPlanner, PlannerConfig
from .skills import Skill, SkillError, SkillPlan, SkillPlanner, perceive_target, skill_from_forecast

REGION_STEP_M = 0.01  # neighbouring pixels of one object are at most this far apart in 3D
ABOVE_TABLE_M = 0.004  # pixels lower than this above the table are table, not object


def consensus_tracks(hypotheses_m: np.ndarray, inlier_m: float = 0.05) -> np.ndarray:
    """One plan from K hypotheses (K, P, F, 3): the mean of those whose end centroid lies within
    ``inlier_m`` of the median end (FM samples scatter around the mode; averaging them cuts the end
    error while a stray mode is left out)."""
    hyps = np.asarray(hypotheses_m, dtype=float)
    if hyps.ndim == 3:
        return hyps
    if len(hyps) == 1:
        return hyps[0]
    ends = hyps[:, :, -1].mean(1)  # (K, 3)
    keep = np.linalg.norm(ends - np.median(ends, 0), axis=1) <= inlier_m
    if not keep.any():
        return hyps[0]
    return hyps[keep].mean(0)


def target_region(xyz_world_m: np.ndarray, camera: PinholeCamera, points_t0_world_m: np.ndarray,
                  table_z_m: float) -> np.ndarray:
    """The target's pixels (h, w) bool: the depth-continuous regions above the table that contain the
    t0 query points' pixels (the forecast says which object moves; the depth says where it ends)."""
    h, w = xyz_world_m.shape[:2]
    allowed = np.isfinite(xyz_world_m).all(-1) & (xyz_world_m[..., 2] > table_z_m + ABOVE_TABLE_M)
    uv, z = camera.project(camera.world_to_cam(np.asarray(points_t0_world_m, dtype=float)))
    mask = np.zeros((h, w), dtype=bool)
    for (u, v), ok in zip(np.round(np.nan_to_num(uv, nan=-1)).astype(int), z > 0, strict=True):
        if ok and 0 <= u < w and 0 <= v < h and allowed[v, u] and not mask[v, u]:
            mask |= grow_region((v, u), allowed, xyz_world_m, REGION_STEP_M)
    if mask.sum() > 0.25 * allowed.sum() and allowed.sum() > 200:
        raise SkillError("the region around the forecast's start points spans most of the scene; "
                         "the target cannot be told apart")
    return mask


@dataclass(frozen=True)
class ManipulationPlan:
    skill: Skill
    plan: SkillPlan
    target_mask: np.ndarray  # (h, w) pixels treated as the target (not obstacles)


class ForecastManipulator:
    """Plans the arm's motions for one forecast. Not thread-safe (one planner, one checker)."""

    def __init__(self, planner_config: PlannerConfig | None = None, kinematics: PandaKinematics | None = None,
                 free_scaling: float = 0.5, contact_scaling: float = 0.2, acceleration_scaling: float = 0.0):
        self.kinematics = kinematics or PandaKinematics()
        self.checker = PointCloudChecker(self.kinematics)
        self.planner = MotionPlanner(planner_config, checker=self.checker, kinematics=self.kinematics)
        self.skills = SkillPlanner(self.planner, free_scaling, contact_scaling, acceleration_scaling)
        self.table_z_m = float(self.kinematics.base_pose[2, 3])

    def plan(self, depth_m: np.ndarray, camera: PinholeCamera, q_arm_rad: np.ndarray,
             points_t0_world_m: np.ndarray, hypotheses_world_m: np.ndarray,
             target_mask: np.ndarray | None = None) -> ManipulationPlan:
        """``depth_m`` (h, w) metres at the forecast's t0 (NaN or 0 = no return), ``camera`` with its
        pose, ``q_arm_rad`` (7,), the t0 points (P, 3) and the K hypotheses (K, P, F, 3) or one (P, F, 3).
        ``target_mask`` overrides the segmentation (e.g. a simulator's ground truth). Raises SkillError."""
        depth = np.where(np.asarray(depth_m, dtype=float) > 0, depth_m, np.nan)
        xyz = camera.depth_to_points_cam(depth) @ camera.T_world_cam[:3, :3].T + camera.T_world_cam[:3, 3]
        points_t0 = np.asarray(points_t0_world_m, dtype=float)
        tracks = consensus_tracks(hypotheses_world_m)
        mask = target_region(xyz, camera, points_t0, self.table_z_m) if target_mask is None else target_mask
        if mask.sum() < 3:
            raise SkillError("no depth pixels of the target around the forecast's start points")
        motions, _ = object_motion_from_tracks(points_t0, tracks)
        target = perceive_target(xyz[mask], self.table_z_m)
        skill = skill_from_forecast(target, points_t0, tracks, motions, self.table_z_m)
        obstacles = xyz[~dilate(mask, 2)]
        self.checker.set_points(obstacles.reshape(-1, 3), q_robot=np.asarray(q_arm_rad, dtype=float))
        return ManipulationPlan(skill, self.skills.plan(q_arm_rad, skill), mask)
