"""The motion dataset: oracle rollouts cut into MolmoMotion-style forecasting samples.

Each episode records the scene at t0 (the first trace sample, before the arm moves), P query points
on the visible target surface, their ground-truth future 3D trajectories (rigid object pose × the
points' offsets in the object's frame) at 15 fps ("dense") and time-strided over the whole motion
("strided"), the scene's geometry and the oracle's end-effector/gripper trace. Episodes are written
in compressed shards with a manifest; :class:`MotionDataset` reads them back as torch tensors.
Layout, frames and units: ``docs/dataset.md``.

Generation runs one :class:`World` per worker process (spawn) and never imports torch there;
``MotionDataset`` is built on first access (module ``__getattr__``) for the same reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
import time
import zlib
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
from tqdm import tqdm

from molmomotion_ros.camera import PinholeCamera
from molmomotion_ros.paths import config_path
from molmomotion_ros.pixels import erode, farthest_point_pixels  # noqa: F401  (erode: re-exported)

from .agents import OracleAgent
from .episode import run_episode
from .seeds import SPLITS, split_seeds
from .tasks import TASKS
from .tasks.base import SceneError, Task, TaskOptions
from .world import PHYSICS_HZ, TRACE_HZ, Observation, SceneObject, World

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MAX_HISTORY = 3
EPISODES_PER_SHARD = 64
MOTION_TOL_M = 0.002  # a query point moving less than this (from its final position) is at rest
MANIFEST = "manifest.json"
SHARD_STEM = "shard-{:05d}"


class DatasetError(ValueError):
    """Bad generation arguments, an unusable output directory, or a missing/incompatible dataset."""


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


def _task_options(options: TaskOptions | dict | None) -> TaskOptions:
    if options is None:
        return TaskOptions()
    if isinstance(options, TaskOptions):
        return options
    if isinstance(options, dict):
        known = {f.name for f in fields(TaskOptions)}
        unknown = set(options) - known
        if unknown:
            raise DatasetError(f"unknown task options {sorted(unknown)}; known: {sorted(known)}")
        return _options_from_dict(options)
    raise DatasetError(f"options must be a TaskOptions or a dict, got {type(options).__name__}")


def _tupled(value):
    """Lists (as JSON gives them) back to the tuples TaskOptions holds."""
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


def _options_from_dict(d: dict) -> TaskOptions:
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
def quat_to_matrix(quat_xyzw: np.ndarray) -> np.ndarray:
    """Quaternions (..., 4) xyzw → rotation matrices (..., 3, 3)."""
    q = np.asarray(quat_xyzw, dtype=float)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = np.moveaxis(q, -1, 0)
    return np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ], axis=-1).reshape(q.shape[:-1] + (3, 3))


def points_along_poses(poses: np.ndarray, local_m: np.ndarray) -> np.ndarray:
    """World positions (P, T, 3) of body-frame points ``local_m`` (P, 3) under poses (T, 7)."""
    R = quat_to_matrix(poses[:, 3:])  # (T, 3, 3)
    return np.einsum("tij,pj->pti", R, local_m) + poses[None, :, :3]


def motion_end_index(points_world_m: np.ndarray, tol_m: float = MOTION_TOL_M) -> int:
    """First trace index after which no point (P, T, 3) strays more than ``tol_m`` from its final position."""
    disp = np.linalg.norm(points_world_m - points_world_m[:, -1:], axis=-1).max(axis=0)  # (T,)
    moving = np.nonzero(disp > tol_m)[0]
    return int(moving[-1]) + 1 if len(moving) else 0


def _pad_edge(arrays: list[np.ndarray], length: int) -> np.ndarray:
    """Stack arrays of shape (T_i, ...) to (N, length, ...), repeating each one's last row."""
    return np.stack([np.concatenate([a, np.repeat(a[-1:], length - len(a), axis=0)]) for a in arrays])


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


class _T0Oracle:
    """The task's oracle, plus a snapshot of the scene at t0 and a log of its actions.

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
        options = _options_from_dict(config.task_options)
        self.tasks = {family: cls(self.world, options) for family, cls in TASKS.items()}

    def close(self) -> None:
        self.world.close()

    def record(self, family: str, seed: int, split: str) -> dict:
        """One episode as {"arrays": {...}, "meta": {...}}; {"skipped": reason} if it cannot be cut."""
        cfg = self.config
        task = self.tasks[family]
        agent = _T0Oracle(self.world, cfg.frames_every)
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


# --- worker processes ---------------------------------------------------------------------------
_WORKER: EpisodeRecorder | None = None


def _init_worker(config: GenerationConfig) -> None:
    global _WORKER
    _WORKER = EpisodeRecorder(config)


def _run_job(job: tuple[str, int, str]) -> dict:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER.record(*job)


def _records(jobs: list[tuple[str, int, str]], config: GenerationConfig, workers: int) -> Iterator[dict]:
    """Records in the order of ``jobs`` (whatever the worker count)."""
    if workers == 1:
        recorder = EpisodeRecorder(config)
        try:
            for job in jobs:
                yield recorder.record(*job)
        finally:
            recorder.close()
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(config,)) as pool:
        yield from pool.imap(_run_job, jobs, chunksize=1)


# --- shards -------------------------------------------------------------------------------------
def write_shard(out_dir: Path, index: int, records: list[dict]) -> dict:
    """Stack the records' arrays into ``shard-NNNNN.npz`` and their metadata into ``shard-NNNNN.json``.

    Per-episode arrays whose first axis varies (trace T, others O, frames K) are padded to the
    shard's longest by repeating the last row (others/frames: NaN/zeros/-1, see docs) and come with
    a length: ``trace_length``, ``num_others``, ``num_frames``.
    """
    stem = SHARD_STEM.format(index)
    arrays: dict[str, np.ndarray] = {}
    keys = records[0]["arrays"].keys()
    for key in keys:
        items = [r["arrays"][key] for r in records]
        if key in _TRACE_KEYS:
            arrays[key] = _pad_edge(items, max(len(a) for a in items))
        elif key in _RAGGED_FILL:
            longest = max(len(a) for a in items)
            fill = _RAGGED_FILL[key]
            arrays[key] = np.stack([
                np.concatenate([a, np.full((longest - len(a),) + a.shape[1:], fill, a.dtype)]) for a in items
            ])
        else:
            arrays[key] = np.stack(items)
    arrays["num_others"] = np.array([len(r["arrays"]["other_body_ids"]) for r in records], np.int32)
    if "frames_trace_index" in keys:
        arrays["num_frames"] = np.array([len(r["arrays"]["frames_trace_index"]) for r in records], np.int32)
    tmp = out_dir / f".{stem}.npz.tmp"
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    os.replace(tmp, out_dir / f"{stem}.npz")
    meta = {"schema_version": SCHEMA_VERSION, "episodes": [r["meta"] for r in records]}
    (out_dir / f"{stem}.json").write_text(json.dumps(meta, indent=1))
    return {"npz": f"{stem}.npz", "json": f"{stem}.json", "episodes": len(records),
            "bytes": (out_dir / f"{stem}.npz").stat().st_size + (out_dir / f"{stem}.json").stat().st_size}


_TRACE_KEYS = {"trace_time_s", "ee_pose", "gripper_width_m", "gripper_closed_cmd", "joint_positions_rad",
               "target_pose"}
_RAGGED_FILL = {"other_body_ids": -1, "other_poses_t0": np.nan, "other_poses_final": np.nan,
                "frames_rgb": 0, "frames_depth_m": np.nan, "frames_trace_index": -1}


def read_shard(root: str | Path, npz_name: str) -> tuple[dict[str, np.ndarray], list[dict]]:
    """All arrays of one shard (decompressed) and its per-episode metadata."""
    root = Path(root)
    npz_path, json_path = root / npz_name, root / npz_name.replace(".npz", ".json")
    try:
        with np.load(npz_path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(json_path.read_text())
    except (OSError, ValueError) as err:
        raise DatasetError(f"cannot read shard {npz_path.name} in {root}: {err}") from None
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise DatasetError(f"shard {json_path.name} has schema {meta.get('schema_version')}, expected {SCHEMA_VERSION}")
    return arrays, meta["episodes"]


# --- generation ---------------------------------------------------------------------------------
def generate_dataset(
    split: str,
    episodes_per_family: int,
    out_dir: str | Path,
    families: list[str] | None = None,
    history: int = 1,
    horizon: int = 32,
    workers: int | None = None,
    progress: bool = True,
    options: TaskOptions | dict | None = None,
    overwrite: bool = False,
    points_per_episode: int = 8,
    frames_every: int = 0,
    seed_start: int = 0,
    episodes_per_shard: int = EPISODES_PER_SHARD,
) -> dict:
    """Record ``episodes_per_family`` oracle episodes per family into ``out_dir``; return the manifest.

    Seeds are the first ``episodes_per_family`` of ``split`` after ``seed_start`` (the same seeds
    for every family). Output is identical whatever ``workers`` is (default: every core).
    """
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if not 1 <= history <= MAX_HISTORY:
        raise DatasetError(f"history must be 1..{MAX_HISTORY} frames, got {history}")
    if horizon < 1:
        raise DatasetError(f"horizon must be at least 1 step, got {horizon}")
    if points_per_episode < 1:
        raise DatasetError(f"points_per_episode must be at least 1, got {points_per_episode}")
    if frames_every < 0:
        raise DatasetError(f"frames_every must be 0 (off) or positive, got {frames_every}")
    if episodes_per_shard < 1:
        raise DatasetError(f"episodes_per_shard must be at least 1, got {episodes_per_shard}")
    if workers is not None and workers < 1:
        raise DatasetError(f"workers must be at least 1, got {workers}")
    families = sorted(families or TASKS)
    unknown = [f for f in families if f not in TASKS]
    if unknown:
        raise DatasetError(f"unknown task families {unknown}; choose from {', '.join(sorted(TASKS))}")
    try:
        seeds = split_seeds(split, episodes_per_family, seed_start)
    except ValueError as err:
        raise DatasetError(str(err)) from None
    config = GenerationConfig(
        history=history, horizon=horizon, points_per_episode=points_per_episode, frames_every=frames_every,
        episodes_per_shard=episodes_per_shard,
        camera=PinholeCamera.from_yaml(config_path("camera.yaml")).to_dict(),
        task_options=_jsonable(asdict(_task_options(options))),
    )
    config_hash = config.sha256()
    out = _prepare_out_dir(Path(out_dir), config_hash, overwrite)

    jobs = [(family, seed, split) for family in families for seed in seeds]  # sorted by (family, seed)
    workers = min(workers or _available_cores(), len(jobs))
    start = time.perf_counter()
    shards, buffer, skipped = [], [], []
    counts = {f: {"episodes": 0, "successes": 0} for f in families}
    with tqdm(total=len(jobs), desc=f"generate {split}", unit="ep", disable=not progress) as bar:
        for record in _records(jobs, config, workers):
            bar.update()
            if "skipped" in record:
                skipped.append({"family": record["family"], "seed": record["seed"], "reason": record["skipped"]})
                continue
            counts[record["family"]]["episodes"] += 1
            counts[record["family"]]["successes"] += int(record["meta"]["success"])
            buffer.append(record)
            if len(buffer) == episodes_per_shard:
                shards.append(write_shard(out, len(shards), buffer))
                buffer = []
        if buffer:
            shards.append(write_shard(out, len(shards), buffer))
    elapsed = time.perf_counter() - start
    episodes = sum(c["episodes"] for c in counts.values())
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "split": split,
        "families": families,
        "episodes": episodes,
        "successes": sum(c["successes"] for c in counts.values()),
        "counts": counts,
        "seeds": {f: seeds for f in families},
        "skipped": skipped,
        "config": config.to_dict(),
        "config_hash": config_hash,
        "shards": shards,
        "bytes": sum(s["bytes"] for s in shards),
        "code_version": code_version(),
        "workers": workers,
        "wall_time_s": round(elapsed, 3),
        "episodes_per_s": round(len(jobs) / elapsed, 3),  # attempted episodes, skipped ones included
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    logger.info("wrote %d episodes (%d skipped) in %d shards to %s at %.2f episodes/s", episodes, len(skipped),
                len(shards), out, len(jobs) / elapsed)
    return manifest


def _jsonable(value):
    """Tuples become lists, as they come back from JSON (so the hash and the stored config agree)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _prepare_out_dir(out: Path, config_hash: str, overwrite: bool) -> Path:
    """Create ``out``; refuse a foreign or differently configured dataset there unless ``overwrite``."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise DatasetError(f"cannot write to output directory {out}: {err.strerror or err}") from None
    ours = [out / MANIFEST, *out.glob("shard-*.npz"), *out.glob("shard-*.json"), *out.glob(".shard-*.tmp")]
    if any(out.iterdir()) and not overwrite:
        manifest = out / MANIFEST
        if not manifest.is_file():
            raise DatasetError(f"{out} is not empty and holds no {MANIFEST}; use an empty directory or overwrite=True")
        try:
            old_hash = json.loads(manifest.read_text()).get("config_hash")
        except (OSError, ValueError):
            old_hash = None
        if old_hash != config_hash:
            raise DatasetError(f"{out} holds a dataset with another config (hash {str(old_hash)[:12]}, "
                               f"now {config_hash[:12]}); use another directory or overwrite=True")
    for path in ours:  # only our own files: a manifest first, so a crash never leaves a stale one
        path.unlink(missing_ok=True)
    return out


def code_version() -> dict:
    """The package version and a sha256 over the simulator's sources and config (what shapes the data)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("molmomotion_ros")
    except PackageNotFoundError:
        package = "unknown"
    digest = hashlib.sha256()
    sim_dir = Path(__file__).resolve().parent
    files = sorted(sim_dir.rglob("*.py")) + [config_path("camera.yaml"), config_path("vocabulary.yaml")]
    for path in files:
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return {"package": package, "sources_sha256": digest.hexdigest()}


# --- loading ------------------------------------------------------------------------------------
def load_manifest(root: str | Path) -> dict:
    """The manifest of the dataset at ``root``; DatasetError if missing, unreadable or incompatible."""
    root = Path(root)
    path = root / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"no {MANIFEST} in {root} (not a dataset, or generation did not finish)") from None
    except (OSError, ValueError) as err:
        raise DatasetError(f"cannot read {path}: {err}") from None
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise DatasetError(f"{path} has schema version {manifest.get('schema_version')}, "
                           f"this code reads {SCHEMA_VERSION}")
    names = [name for shard in manifest.get("shards", []) for name in (shard["npz"], shard["json"])]
    missing = [name for name in names if not (root / name).is_file()]
    if missing:
        raise DatasetError(f"dataset {root} lacks {len(missing)} shard file(s), e.g. {missing[0]}")
    return manifest


FUTURES = ("dense", "strided")


class _MotionDatasetImpl:
    """Map-style dataset over a generated directory (see :class:`MotionDataset`)."""

    def __init__(self, root: str | Path, future: str = "dense", only_success: bool = True,
                 max_cached_shards: int = 8):
        if future not in FUTURES:
            raise DatasetError(f"future must be one of {FUTURES}, got {future!r}")
        self.root = Path(root)
        self.future = future
        self.manifest = load_manifest(self.root)
        self.config = self.manifest["config"]
        self.max_cached_shards = max(1, max_cached_shards)
        self._cache: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self.index: list[tuple[int, int]] = []  # (shard, row)
        self.meta: list[dict] = []
        for shard_no, shard in enumerate(self.manifest["shards"]):
            try:
                episodes = json.loads((self.root / shard["json"]).read_text())["episodes"]
            except (OSError, ValueError, KeyError) as err:
                raise DatasetError(f"cannot read {shard['json']} in {self.root}: {err}") from None
            for row, meta in enumerate(episodes):
                if meta["success"] or not only_success:
                    self.index.append((shard_no, row))
                    self.meta.append(meta)

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()  # DataLoader workers (spawn) start with an empty shard cache
        state["_cache"] = OrderedDict()
        return state

    def _shard(self, shard_no: int) -> dict[str, np.ndarray]:
        if shard_no in self._cache:
            self._cache.move_to_end(shard_no)
        else:
            self._cache[shard_no], _ = read_shard(self.root, self.manifest["shards"][shard_no]["npz"])
            while len(self._cache) > self.max_cached_shards:
                self._cache.popitem(last=False)
        return self._cache[shard_no]

    def episode(self, i: int) -> dict[str, Any]:
        """Every stored array of episode ``i`` (numpy, padding trimmed) plus its metadata under "meta"."""
        shard_no, row = self.index[i]
        arrays = self._shard(shard_no)
        out = {k: v[row] for k, v in arrays.items()}
        trace_length, num_others = int(out["trace_length"]), int(out["num_others"])
        for key in _TRACE_KEYS:
            out[key] = out[key][:trace_length]
        for key in ("other_body_ids", "other_poses_t0", "other_poses_final"):
            out[key] = out[key][:num_others]
        if "num_frames" in out:
            for key in ("frames_rgb", "frames_depth_m", "frames_trace_index"):
                out[key] = out[key][: int(out["num_frames"])]
        out["meta"] = self.meta[i]
        return out

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        def t(array: np.ndarray) -> torch.Tensor:  # a copy: items never alias the shard cache
            return torch.from_numpy(np.array(array, copy=True))

        ep = self.episode(i)
        f = self.future
        stride = 1 if f == "dense" else int(ep["future_stride"])
        steps = np.arange(1, self.config["horizon"] + 1)
        return {
            "rgb": t(ep["rgb"].transpose(0, 3, 1, 2)),  # (H, 3, h, w) uint8
            "depth": t(ep["depth_m"]),  # (H, h, w) float32 metres, NaN = no return
            "target_mask": t(ep["target_mask"]),  # (h, w) bool, at t0
            "points_2d": t(ep["points_uv"]),  # (P, 2) float32 pixels (u right, v down) at t0
            "points_3d_cam": t(ep["points_cam_m"]),  # (P, 3) camera frame at t0
            "points_3d_history_cam": t(ep["points_history_cam_m"]),  # (H, P, 3)
            "future_cam": t(ep[f"future_{f}_cam_m"][:, 1:]),  # (P, F, 3) camera frame at t0, steps 1..F
            "future_world": t(ep[f"future_{f}_world_m"][:, 1:]),  # (P, F, 3) world frame
            "future_valid": t(ep[f"future_{f}_valid"][1:]),  # (F,) bool, False = padded past the episode
            "future_time_s": t((steps * stride / self.config["trace_hz"]).astype(np.float32)),  # (F,) after t0
            "stride": torch.tensor(stride),  # trace samples per future step (1 = 15 fps)
            "K": t(ep["K"].astype(np.float32)),  # (3, 3)
            "T_world_cam": t(ep["T_world_cam"].astype(np.float32)),  # (4, 4)
            "goal_center_cam": t(ep["goal_center_cam_m"]),  # (3,) NaN when the task has no goal point
            "goal_center_world": t(ep["goal_center_world_m"]),  # (3,)
            "success": torch.tensor(bool(ep["success"])),
            "seed": int(ep["seed"]),
            "family": ep["meta"]["family"],
            "instruction": ep["meta"]["instruction"],
        }


def _make_motion_dataset() -> type:
    from torch.utils.data import Dataset

    return type("MotionDataset", (_MotionDatasetImpl, Dataset), {
        "__module__": __name__,
        "__doc__": """A torch Dataset of forecasting samples from a generated directory.

    ``future`` picks the dense (15 fps, F steps after t0) or strided (F steps of ``stride`` samples
    covering the whole motion) trajectories; ``only_success`` drops episodes the oracle failed.
    Items are dicts of tensors (layouts in ``__getitem__`` and docs/dataset.md) plus the
    instruction, family and seed. ``episode(i)`` gives every stored array as numpy.
    """,
    })


def __getattr__(name: str):
    # MotionDataset subclasses torch's Dataset; building it lazily keeps torch out of generation workers.
    if name == "MotionDataset":
        cls = _make_motion_dataset()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    from torch.utils.data import Dataset

    class MotionDataset(_MotionDatasetImpl, Dataset): ...
