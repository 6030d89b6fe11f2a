"""Behaviour-cloning demonstrations: scripted-oracle episodes with observations along the way.

The oracle's primitives run in a World that renders an RGB-D frame every ``frames_every`` trace
samples (15 fps clock), so every frame has the proprioception of its trace sample and a label:
the next CHUNK_STEPS samples of the grasp target as offsets, plus the gripper command. The FM
forecast of the target's motion at t0 is stored per episode for the forecast-conditioned variant.
Every variant trains on the same file. Seeds come from ``molmomotion_sim.seeds`` (train for
training, validation for validation; the experiment evaluates on test seeds).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from molmomotion_sim.episode import run_episode
from molmomotion_sim.recording import FirstFrameOracle, FrameRecordingWorld
from molmomotion_sim.seeds import split_seeds
from molmomotion_sim.tasks import TASKS, SceneError
from molmomotion_sim.world import Observation

from .observation import (
    FORECAST_POINTS,
    FORECAST_STEPS,
    PolicyError,
    action_chunks,
    ee_pixel_model,
    frame_inputs,
    subsample_forecast,
    yaw_from_quat,
)

log = logging.getLogger(__name__)
SCHEMA_VERSION = 2  # 2: oracle v2, grasp yaw modulo the footprint symmetry (a cube turned 90° is grasped alike)
FAMILIES = tuple(sorted(TASKS))


@dataclass(frozen=True)
class DemoConfig:
    split: str  # train | validation (test seeds are for evaluation only)
    episodes_per_family: int
    families: tuple[str, ...] = FAMILIES
    frames_every: int = 2  # trace samples between observations (2 → 7.5 Hz)
    forecast: bool = True  # store the FM forecast at t0 (variant C needs it)
    seed_start: int = 0  # skip this many seeds of the split
    forecaster: str | None = None  # the FM checkpoint whose forecasts are stored (None: the shipped fm.pt)

    def key(self) -> str:
        fields = asdict(self)
        forecaster = fields.pop("forecaster")
        if forecaster is not None:  # what, not where: the file's bytes (recordings of fm.pt keep their keys)
            fields["forecaster_sha256"] = hashlib.sha256(Path(forecaster).read_bytes()).hexdigest()
        text = json.dumps({**fields, "schema": SCHEMA_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class Demos:
    """Frames (M) from episodes (E). Positions in the world frame (m), images at the encoder's size."""

    rgb: np.ndarray  # (M, 3, 60, 80) uint8
    xyz_cam_m: np.ndarray  # (M, 3, 60, 80) float16, camera frame, NaN = no return
    episode: np.ndarray  # (M,) int32 index into the episode arrays
    trace_index: np.ndarray  # (M,) int32 sample of the 15 fps trace the frame was taken at
    ee_pos_world_m: np.ndarray  # (M, 3) float32 grasp target
    ee_yaw_rad: np.ndarray  # (M,) float32
    gripper_width_m: np.ndarray  # (M,) float32
    gripper_closed: np.ndarray  # (M,) bool, the command in force
    ee_uv_model: np.ndarray  # (M, 2) float32 grasp target projected into the encoder's input
    action_pos_m: np.ndarray  # (M, C, 3) float32 offsets of the next C samples
    action_yaw_rad: np.ndarray  # (M, C) float32
    action_gripper_closed: np.ndarray  # (M, C) bool
    seed: np.ndarray  # (E,) int64
    family: np.ndarray  # (E,) int32 index into ``families``
    instruction: np.ndarray  # (E,) int32 index into ``instructions``
    T_world_cam: np.ndarray  # (E, 4, 4) float32
    success: np.ndarray  # (E,) bool oracle outcome
    forecast_world_m: np.ndarray  # (E, P, F, 3) float32 FM best hypothesis at t0 (zeros if none)
    forecast_points_t0_world_m: np.ndarray  # (E, P, 3) float32
    forecast_valid: np.ndarray  # (E,) bool
    families: list[str] = field(default_factory=list)
    instructions: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.episode)

    @property
    def num_episodes(self) -> int:
        return len(self.seed)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {k: v for k, v in self.__dict__.items() if isinstance(v, np.ndarray)}
        meta = {"schema_version": SCHEMA_VERSION, "families": self.families, "instructions": self.instructions,
                "config": self.config}
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, meta=np.array(json.dumps(meta)), **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Demos":
        path = Path(path)
        if not path.is_file():
            raise PolicyError(f"no demonstrations at {path}")
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("schema_version") != SCHEMA_VERSION:
                raise PolicyError(f"{path} has demo schema {meta.get('schema_version')}, expected {SCHEMA_VERSION}")
            arrays = {k: data[k] for k in data.files if k != "meta"}
        return cls(**arrays, families=meta["families"], instructions=meta["instructions"], config=meta["config"])



def record_demos(config: DemoConfig, progress: bool = True) -> Demos:
    """Run the oracle on ``episodes_per_family`` seeds of ``config.split`` per family, in this process."""
    if config.split not in ("train", "validation"):
        raise PolicyError(f"demonstrations come from the train or validation split, not {config.split!r}")
    if config.frames_every < 1:
        raise PolicyError(f"frames_every must be >= 1, got {config.frames_every}")
    unknown = set(config.families) - set(TASKS)
    if unknown:
        raise PolicyError(f"unknown families {sorted(unknown)}; choose from {', '.join(FAMILIES)}")
    seeds = split_seeds(config.split, config.episodes_per_family, config.seed_start)
    pipeline = None
    if config.forecast:
        from molmomotion_ros.forecasting.pipeline import ForecastPipeline

        pipeline = ForecastPipeline("fm", device="cpu", num_samples=8, seed=0, checkpoint=config.forecaster)
    jobs = [(family, seed) for family in config.families for seed in seeds]
    frames: dict[str, list] = {}
    episodes: dict[str, list] = {}
    instructions: list[str] = []
    world = FrameRecordingWorld()
    tasks = {family: TASKS[family](world) for family in config.families}
    bar = _progress(len(jobs), f"demos {config.split}", progress)
    try:
        for family, seed in jobs:
            task = tasks[family]
            agent = FirstFrameOracle(world, config.frames_every)
            try:
                result = run_episode(task, seed, agent)
            except SceneError as err:
                log.warning("skipping %s seed %d: %s", family, seed, err)
                bar.update(1)
                continue
            if task.instruction not in instructions:
                instructions.append(task.instruction)
            _add_episode(frames, episodes, world, agent, task, family, seed, result.success, pipeline,
                         config, instructions.index(task.instruction))
            world.frames = None
            bar.update(1)
    finally:
        bar.close()
        world.close()
    if not episodes:
        raise PolicyError("no demonstration could be recorded")
    stacked = {k: np.stack(v) if np.ndim(v[0]) else np.array(v) for k, v in {**frames, **episodes}.items()}
    return Demos(**stacked, families=list(config.families), instructions=instructions,
                 config=json.loads(json.dumps({**asdict(config), "key": config.key()})))


def _add_episode(frames, episodes, world, agent, task, family, seed, success, pipeline, config, instruction_id):
    trace = list(world.trace)
    ee = np.stack([s.ee_pose for s in trace])  # (T, 7)
    ee_pos, ee_yaw = ee[:, :3], yaw_from_quat(ee[:, 3:])
    closed = np.array([s.gripper_closed_cmd for s in trace])
    width = np.array([s.gripper_width_m for s in trace], np.float32)
    index = np.array([i for i, _ in world.frames if i < len(trace)], np.int32)
    pos, yaw, grip = action_chunks(ee_pos, ee_yaw, closed, index)
    camera = agent.t0["observation"].camera
    episode_id = len(episodes.get("seed", []))
    for j, (i, obs) in enumerate(f for f in world.frames if f[0] < len(trace)):
        rgb, xyz = frame_inputs(obs.rgb, obs.depth_m, camera.K)
        row = {
            "rgb": rgb, "xyz_cam_m": xyz.astype(np.float16), "episode": np.int32(episode_id),
            "trace_index": np.int32(i), "ee_pos_world_m": ee_pos[i].astype(np.float32),
            "ee_yaw_rad": np.float32(ee_yaw[i]), "gripper_width_m": width[i], "gripper_closed": bool(closed[i]),
            "ee_uv_model": ee_pixel_model(ee_pos[i], camera), "action_pos_m": pos[j], "action_yaw_rad": yaw[j],
            "action_gripper_closed": grip[j],
        }
        for k, v in row.items():
            frames.setdefault(k, []).append(v)
    forecast = np.zeros((FORECAST_POINTS, FORECAST_STEPS, 3), np.float32)
    points_t0 = np.zeros((FORECAST_POINTS, 3), np.float32)
    valid = False
    if pipeline is not None:
        forecast, points_t0, valid = forecast_at_t0(pipeline, agent.t0["observation"], task.instruction)
    row = {
        "seed": np.int64(seed), "family": np.int32(config.families.index(family)),
        "instruction": np.int32(instruction_id), "T_world_cam": camera.T_world_cam.astype(np.float32),
        "success": bool(success), "forecast_world_m": forecast, "forecast_points_t0_world_m": points_t0,
        "forecast_valid": valid,
    }
    for k, v in row.items():
        episodes.setdefault(k, []).append(v)


def forecast_at_t0(pipeline, observation: Observation, instruction: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """FM best hypothesis (P, F, 3) subsampled to F=8, the query points at t0 (P, 3), and whether it worked."""
    from molmomotion_ros.forecasting.grounding import GroundingError
    from molmomotion_ros.forecasting.types import ForecastInputError

    try:
        result = pipeline.run(observation.rgb, observation.depth_m, observation.camera, instruction)
    except (GroundingError, ForecastInputError) as err:
        log.info("no forecast: %s", err)
        return (np.zeros((FORECAST_POINTS, FORECAST_STEPS, 3), np.float32),
                np.zeros((FORECAST_POINTS, 3), np.float32), False)
    return subsample_forecast(result.forecast.best_world_m), result.points_world_t0_m.astype(np.float32), True


def load_or_record(config: DemoConfig, cache_dir: str | Path = "data/policies/demos", progress: bool = True) -> Demos:
    """The cached demonstrations of ``config`` (recorded once; the file name carries the config's hash).

    A config without forecasts reuses the cached recording of the same episodes with forecasts when there
    is one (same seeds, frames and labels; the forecast arrays go unused)."""
    def cached(cfg: DemoConfig) -> Path:
        return Path(cache_dir) / f"{cfg.split}-{cfg.episodes_per_family}pf-{cfg.key()}.npz"

    path = cached(config)
    if path.is_file():
        return Demos.load(path)
    with_forecast = cached(replace(config, forecast=True))
    if not config.forecast and with_forecast.is_file():
        return Demos.load(with_forecast)
    demos = record_demos(config, progress=progress)
    demos.save(path)
    log.info("recorded %d frames from %d episodes to %s", len(demos), demos.num_episodes, path)
    return demos


def _progress(total: int, label: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="ep", disable=not enabled, dynamic_ncols=True)
