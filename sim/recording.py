"""Recording one oracle episode as a forecasting sample: the scene at t0 (the first trace sample, before
the arm moves), P query points on the visible target surface, their ground-truth future 3D trajectories
(rigid object pose × the points' offsets in the object's frame) at 15 fps ("dense") and time-strided over
the whole motion ("strided"), the scene's geometry and the oracle's end-effector/gripper trace.

:mod:`molmomotion_sim.dataset` runs recorders in worker processes and writes their records in the
core's shard format (:mod:`molmomotion_ros.motion_data`). Layout, frames and units: ``docs/dataset.md``.
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from molmomotion_ros.camera import PinholeCamera
from molmomotion_ros.geometry import farthest_point_pixels, points_along_poses, quat_to_matrix
from molmomotion_ros.motion_data import DatasetError

from .episode import run_episode
from .tasks import TASKS
from .tasks.base import OracleAgent, SceneError, Task, TaskOptions
from .world import PHYSICS_HZ, TRACE_HZ, Observation, SceneObject, World

MOTION_TOL_M = 0.002  # a query point moving less than this (from its final position) is at rest


# --- configuration ------------------------------------------------------------------------------
@dataclass(frozen=True)
class GenerationConfig:
    """Everything that shapes the arrays; its sha256 is the manifest's ``config_hash``."""

    history: int  # H frames at t0 - (H-1)/15 ... t0
    horizon: int  # F future steps
    points_per_episode: int  # P
    frames_every: int  # 0 = no rollout frames; N = an RGB-D frame at every N-th trace sample
    episodes_per_shard: int
    camera: dict  # the base camera (PinholeCamera.to_dict); tasks may jitter it per episode
    task_options: dict  # TaskOptions fields
    trace_hz: int = TRACE_HZ
    motion_tol_m: float = MOTION_TOL_M

    def to_dict(self) -> dict:
        d = asdict(self)
        d["image_size"] = [self.camera["width"], self.camera["height"]]
        return d

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def _tupled(value):
    """Lists (as JSON gives them) back to the tuples TaskOptions holds."""
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


def options_from_dict(d: dict) -> TaskOptions:
    return TaskOptions(**{k: _tupled(v) for k, v in d.items()})


# --- query points -------------------------------------------------------------------------------
def sample_query_pixels(mask: np.ndarray, depth_m: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` pixels (u, v) on ``mask`` with finite depth, spread by farthest-point sampling.

    The mask is eroded by one pixel first when at least ``count`` pixels survive, so points avoid
    the object's silhouette (where depth mixes object and background). The first point is drawn
    from ``rng``. With fewer candidate pixels than ``count``, pixels repeat. Returns (count, 2) int64,
    or raises DatasetError if no pixel qualifies.
    """
    valid = mask.astype(bool) & np.isfinite(depth_m)
    if not valid.any():
        raise DatasetError("the target shows no pixel with valid depth")
    return farthest_point_pixels(valid, count, rng)


# --- geometry helpers ---------------------------------------------------------------------------
def motion_end_index(points_world_m: np.ndarray, tol_m: float = MOTION_TOL_M) -> int:
    """First trace index after which no point (P, T, 3) strays more than ``tol_m`` from its final position."""
    disp = np.linalg.norm(points_world_m - points_world_m[:, -1:], axis=-1).max(axis=0)  # (T,)
    moving = np.nonzero(disp > tol_m)[0]
    return int(moving[-1]) + 1 if len(moving) else 0


# --- recording ----------------------------------------------------------------------------------
class FrameRecordingWorld(World):
    """A World that can render an RGB-D frame at every N-th trace sample while it steps."""

    frames_every = 0
    frames: list[tuple[int, Observation]] | None = None  # (trace index, frame); None = off

    def step(self, n: int = 1) -> None:
        if self.frames is None or not self.frames_every:
            super().step(n)
            return
        for _ in range(n):
            before = len(self.trace)
            super().step(1)
            index = len(self.trace) - 1
            if len(self.trace) > before and index % self.frames_every == 0:
                self.frames.append((index, self.render()))


class FirstFrameOracle:
    """The task's oracle, plus a snapshot of the scene at t0 and a log of its actions (the dataset's and the
    policies' demonstrations record with it).

    ``run_episode`` calls ``reset`` right after ``task.reset``: the world is stepped (at most one
    trace period, scene at rest) until the trace's first sample is taken, so t0 = trace[0] exactly.
    """

    name = OracleAgent.name
    model_id = OracleAgent.model_id
    needs_observation = False

    def __init__(self, world: FrameRecordingWorld, frames_every: int):
        self._world = world
        self._frames_every = frames_every
        self.actions: list = []
        self.t0: dict[str, Any] = {}

    def reset(self, task: Task) -> None:
        world = self._world
        world.frames = None
        world.trace.clear()
        for _ in range(PHYSICS_HZ // TRACE_HZ):
            world.step()
            if world.trace:
                break
        observation = world.render()
        goal = getattr(task, "goal_center_m", None)
        place = task.place_target
        self.t0 = {
            "observation": observation,
            "goal_center_m": None if goal is None else np.asarray(goal, float).copy(),
            "place_pose": None if place is None else np.concatenate(world.object_pose(place)),
        }
        self.actions = []
        if self._frames_every:
            world.frames_every = self._frames_every
            world.frames = [(0, observation)]
        self._inner = task.oracle()

    def act(self, observation, instruction: str):
        action = self._inner.act(observation, instruction)
        if action is not None:
            self.actions.append(action)
        return action


class EpisodeRecorder:
    """Runs oracle episodes in one reused World and turns each into a record (arrays + metadata)."""

    def __init__(self, config: GenerationConfig):
        self.config = config
        camera = PinholeCamera(**{**config.camera, "T_world_cam": np.asarray(config.camera["T_world_cam"])})
        self.world = FrameRecordingWorld(camera=camera)
        options = options_from_dict(config.task_options)
        self.tasks = {family: cls(self.world, options) for family, cls in TASKS.items()}

    def close(self) -> None:
        self.world.close()

    def record(self, family: str, seed: int, split: str) -> dict:
        """One episode as {"arrays": {...}, "meta": {...}}; {"skipped": reason} if it cannot be cut."""
        cfg = self.config
        task = self.tasks[family]
        agent = FirstFrameOracle(self.world, cfg.frames_every)
        try:
            result = run_episode(task, seed, agent)
        except SceneError as err:
            return {"family": family, "seed": seed, "skipped": str(err)}
        world = self.world
        trace = list(world.trace)
        obs: Observation = agent.t0["observation"]
        target = task.target
        if not trace or abs(trace[0].time_s - obs.time_s) > 1e-9:
            return {"family": family, "seed": seed, "skipped": "trace does not start at t0"}
        seg = obs.segmentation
        mask = seg == target.body_id
        rng = np.random.default_rng([seed, zlib.crc32(family.encode())])
        try:
            uv = sample_query_pixels(mask, obs.depth_m, cfg.points_per_episode, rng)  # (P, 2)
        except DatasetError as err:
            return {"family": family, "seed": seed, "skipped": str(err)}
        cam = obs.camera
        points_cam = cam.deproject(uv.astype(float), obs.depth_m[uv[:, 1], uv[:, 0]])  # (P, 3)
        points_world = cam.cam_to_world(points_cam)

        target_poses = np.stack([s.object_poses[target.body_id] for s in trace])  # (T, 7)
        R0 = quat_to_matrix(target_poses[0, 3:])
        points_local = (points_world - target_poses[0, :3]) @ R0  # (P, 3) = R0ᵀ (x - p0)
        track_world = points_along_poses(target_poses, points_local)  # (P, T, 3)
        T = len(trace)
        F = cfg.horizon
        steps = np.arange(F + 1)
        end = motion_end_index(track_world, cfg.motion_tol_m)
        stride = max(1, math.ceil(end / F))
        dense_idx, strided_idx = np.minimum(steps, T - 1), np.minimum(steps * stride, T - 1)

        others = [o for o in world.objects.values() if o.body_id != target.body_id]
        H = cfg.history
        goal = agent.t0["goal_center_m"]
        goal_world = np.full(3, np.nan) if goal is None else goal
        place = task.place_target
        arrays = {
            "rgb": np.repeat(obs.rgb[None], H, axis=0),  # (H, h, w, 3) uint8
            "depth_m": np.repeat(obs.depth_m[None], H, axis=0),  # (H, h, w) float32
            "segmentation": seg.astype(np.int16),  # (h, w)
            "target_mask": mask,  # (h, w) bool
            "K": cam.K,
            "T_world_cam": cam.T_world_cam,
            "points_uv": uv.astype(np.float32),  # (P, 2)
            "points_cam_m": points_cam.astype(np.float32),  # (P, 3)
            "points_world_m": points_world.astype(np.float32),
            "points_local_m": points_local.astype(np.float32),
            "points_history_cam_m": np.repeat(points_cam[None], H, axis=0).astype(np.float32),  # (H, P, 3)
            "future_dense_world_m": track_world[:, dense_idx].astype(np.float32),  # (P, F+1, 3)
            "future_dense_cam_m": cam.world_to_cam(track_world[:, dense_idx]).astype(np.float32),
            "future_dense_valid": steps <= T - 1,  # (F+1,)
            "future_strided_world_m": track_world[:, strided_idx].astype(np.float32),
            "future_strided_cam_m": cam.world_to_cam(track_world[:, strided_idx]).astype(np.float32),
            "future_strided_valid": steps * stride <= T - 1,
            "future_stride": np.int32(stride),
            "motion_end_index": np.int32(end),
            "target_body_id": np.int32(target.body_id),
            "target_local_center_m": np.asarray(target.local_center_m, np.float32),
            "target_half_extents_m": np.asarray(target.half_extents_m, np.float32),
            "place_target_body_id": np.int32(-1 if place is None else place.body_id),
            "place_target_pose": (np.full(7, np.nan) if place is None else agent.t0["place_pose"]).astype(np.float32),
            "goal_center_world_m": goal_world.astype(np.float32),
            "goal_center_cam_m": cam.world_to_cam(goal_world).astype(np.float32),
            "other_body_ids": np.array([o.body_id for o in others], np.int32),  # (O,)
            "other_poses_t0": np.array([trace[0].object_poses[o.body_id] for o in others], np.float32).reshape(-1, 7),
            "other_poses_final": np.array([trace[-1].object_poses[o.body_id] for o in others],
                                          np.float32).reshape(-1, 7),
            "success": np.bool_(result.success),
            "seed": np.int64(seed),
            "trace_length": np.int32(T),
            "trace_time_s": np.array([s.time_s - trace[0].time_s for s in trace], np.float32),  # (T,)
            "ee_pose": np.stack([s.ee_pose for s in trace]).astype(np.float32),  # (T, 7)
            "gripper_width_m": np.array([s.gripper_width_m for s in trace], np.float32),
            "gripper_closed_cmd": np.array([s.gripper_closed_cmd for s in trace], bool),
            "joint_positions_rad": np.stack([s.joint_positions_rad for s in trace]).astype(np.float32),  # (T, 9)
            "target_pose": target_poses.astype(np.float32),  # (T, 7)
        }
        if cfg.frames_every:
            frames = world.frames or []
            arrays["frames_rgb"] = np.stack([f.rgb for _, f in frames])  # (K, h, w, 3)
            arrays["frames_depth_m"] = np.stack([f.depth_m for _, f in frames])
            arrays["frames_trace_index"] = np.array([i for i, _ in frames], np.int32)
            world.frames = None
        meta = {
            "family": family, "seed": int(seed), "split": split, "instruction": task.instruction,
            "phrase_fields": task.phrase_fields(),  # lets eval-forecast re-phrase the episode with another set
            "success": bool(result.success), "failure_reason": result.failure_reason, "steps": result.steps,
            "target": _describe(target),
            "place_target": None if place is None else _describe(place),
            "others": [_describe(o) for o in others],
            "actions": [_action_to_dict(a) for a in agent.actions],
        }
        return {"family": family, "seed": seed, "arrays": arrays, "meta": meta}


def _describe(obj: SceneObject) -> dict:
    return {"body_id": obj.body_id, "name": obj.name, "colour": obj.colour, "kind": obj.kind,
            "is_container": obj.is_container}


def _action_to_dict(action) -> dict:
    d = {"type": type(action).__name__}
    for f in fields(action):
        value = getattr(action, f.name)
        d[f.name] = np.asarray(value, float).tolist() if np.ndim(value) else float(value)
    return d
