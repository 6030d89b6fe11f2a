"""The success-rate experiment: train each variant, checkpoint on a step grid, evaluate every checkpoint.

Reproduces at our scale the experiment behind MolmoMotion's "76.3% vs 56.0%" (policy backbone
initialised from the motion model vs from the base VLM). Everything lands in ``out_dir`` (a folder every
worker can reach when the run is spread over a cluster):

  demos/                        the oracle demonstrations (unless ``demo_cache`` names another folder)
  encodings/                    each encoder's features of every demonstration frame (frozen) or its trunk's
  runs/<variant>-s<seed>/       training run (step-NNNNNN.pt, state.pt, history.json, train.json)
  evals/<variant>-s<seed>-<step>.json   per-episode results of one checkpoint (harness JSON format)
  evals/<suite>-<split>-<first seed>-n<episodes>-x<execute steps>/   the same for another evaluation suite
                                (ExperimentConfig.eval_*: the protocol's validation, test and OOD suites), with
                                its own summary
  success_rate.json, success_rate.md, success_vs_steps.png, val_error.png   the summary
  runs.jsonl                    one line per invocation: what it skipped, what it ran, on which executor

The experiment is a graph of independent tasks run stage by stage through an executor
(:mod:`molmomotion_ros.execution`: local processes or a Ray cluster, the same workers for every stage):
demonstrations (recorded in shards of ``DEMO_SHARD_EPISODES`` episodes, merged into the file one recording would
write) → encodings (each frozen encoder's features of the frames in shards of ``ENCODE_SHARD_FRAMES``, merged
likewise; a fine-tuned encoder's trunk outputs per recording) → training (one task per (variant, seed), writing a
checkpoint at every step of the grid) → evaluation (the test episodes of every checkpoint, in batches over the
workers) → the table and plots. A cell is one (variant, seed, step): its checkpoint and its results JSON, each
written as soon as it is done and carrying a hash of everything that determines it (:func:`train_hash`,
:func:`cell_hash`). ``resume=True`` keeps the cells whose files carry the expected hash and runs only the
rest (a training run killed part-way continues from its ``state.pt``); every task is deterministic in its
seed, so the table is the same as an uninterrupted run's, whatever the executor, the worker count, the
batches, or a worker lost and retried. A folder holding another config is refused (only variants and steps
may change between runs in one folder: they extend the grid; an earlier step than a finished run reached is
replayed, deterministically). Test seeds are the same for every checkpoint (paired comparison); training
uses train seeds, validation validation seeds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import socket
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from molmomotion_ros.execution import Executor, LocalExecutor, WorkerTask
from molmomotion_sim.episode import EpisodeResult, run_episode
from molmomotion_sim.evaluation import summarize, write_results
from molmomotion_sim.seeds import SPLITS, SeedRangeError, seeds_from
from molmomotion_sim.tasks import TASKS

from .agent import AgentConfig
from .controller import FORECAST_FM_STEPS
from .demos import FAMILIES, DemoConfig
from .files import read_json, write_json
from .model import FINETUNE_MODES, VARIANTS, PolicyConfig, encoder_sha256
from .observation import PolicyError
from .train import LR_SCHEDULES, TrainConfig

log = logging.getLogger(__name__)
MOLMOMOTION = {"final": {"A": 0.763, "B": 0.560}, "10k": {"A": 0.51, "B": 0.19}}  # NOTES.md
GRID_SCHEMA = 1  # what the config hashes cover (a change makes every stored cell stale)
EVAL_SUITE = "main"  # whose task options the test episodes use


@dataclass(frozen=True)
class ExperimentConfig:
    variants: tuple[str, ...] = ("A", "B")
    steps: tuple[int, ...] = (1000, 2000, 5000, 10000, 20000)
    episodes_per_family: int = 10  # test episodes per family per checkpoint
    seeds: int = 1  # training seeds 0..seeds-1
    families: tuple[str, ...] = FAMILIES
    train_episodes_per_family: int = 50
    val_episodes_per_family: int = 10
    frames_every: int = 2
    batch_size: int = 64
    lr: float = 1e-3
    eval_every: int = 250
    finetune: str = "none"  # none | post_trunk (PolicyConfig.finetune)
    encoder_lr: float = 1e-4  # the post-trunk layers' learning rate when fine-tuning
    max_samples: int = 150  # per test episode (15 fps samples)
    demo_cache: str | None = None  # folder of recorded demonstrations (None: <out>/demos); where, not what
    footprint: bool = False  # PolicyConfig.footprint: the target's footprint orientation as a head input
    geometry_skip: bool = False  # PolicyConfig.geometry_skip
    lr_schedule: str = "constant"  # TrainConfig.lr_schedule
    state_noise_m: float = 0.0  # TrainConfig.state_noise_m
    state_noise_rad: float = 0.0  # TrainConfig.state_noise_rad
    # The protocol's encoders (fm_v2, base_matched) from this folder instead of the shipped fm.pt and base.pt
    # (PolicyConfig.for_variant); where, not what: every checkpoint's hash covers the encoder file's bytes.
    encoders_dir: str | None = None
    # Which episodes every checkpoint is evaluated on (not part of the folder's identity: one folder's checkpoints
    # may be evaluated on several suites; each suite other than the default writes under evals/<tag>/). The
    # protocol's validation suite (choices), its untouched test seeds and its OOD suite are all such suites.
    eval_split: str = "test"  # validation | test | ood (never train: the demonstrations' split)
    eval_seed_start: int | None = None  # a seed of eval_split (None: the split's first)
    eval_suite: str = EVAL_SUITE  # whose task options (held-out combinations, camera jitter): main | ood | a path
    execute_steps: int = 4  # AgentConfig.execute_steps: of each chunk before observing again
    forecast_fm_steps: int = FORECAST_FM_STEPS  # AgentConfig.forecast_fm_steps: C's forecast sampler

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            raise PolicyError(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
        if self.seeds < 1 or self.episodes_per_family < 1:
            raise PolicyError("seeds and episodes_per_family must be >= 1")
        if self.finetune not in FINETUNE_MODES:
            raise PolicyError(f"unknown finetune mode {self.finetune!r}; choose from {', '.join(FINETUNE_MODES)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise PolicyError(f"unknown lr_schedule {self.lr_schedule!r}; choose from {', '.join(LR_SCHEDULES)}")
        if not (self.state_noise_m >= 0 and self.state_noise_rad >= 0):  # also refuses NaN
            raise PolicyError(f"state noise must be >= 0, got {self.state_noise_m} m and {self.state_noise_rad} rad")
        bad = set(self.families) - set(TASKS)
        if bad:
            raise PolicyError(f"unknown families {sorted(bad)}")
        if self.eval_split == "train":
            raise PolicyError("eval_split train: the demonstrations come from the train split; evaluate on "
                              "validation, test or ood seeds")
        try:
            self.eval_seeds()
        except SeedRangeError as err:
            raise PolicyError(f"evaluation seeds: {err}") from None
        if self.execute_steps < 1:
            raise PolicyError(f"execute_steps must be >= 1, got {self.execute_steps}")
        from molmomotion_sim.suites import SuiteError, load_suite

        try:  # before any work: a bad name would otherwise surface only when the first test episode runs
            load_suite(self.eval_suite)
        except SuiteError as err:
            raise PolicyError(f"evaluation suite: {err}") from None
        if self.forecast_fm_steps < 1:
            raise PolicyError(f"forecast_fm_steps must be >= 1, got {self.forecast_fm_steps}")

    def to_dict(self) -> dict:
        return asdict(self)

    def eval_seeds(self) -> list[int]:
        """The evaluation seeds per family (the same for every family and every checkpoint: paired)."""
        start = SPLITS[self.eval_split].start if self.eval_seed_start is None else self.eval_seed_start
        return seeds_from(self.eval_split, start, self.episodes_per_family)

    def eval_tag(self) -> str | None:
        """The evaluation's folder under evals/ (None: the default suite, written as before, in evals/ itself); a
        forecast sampler other than the default adds ``-fm<steps>``."""
        first = self.eval_seeds()[0]
        if (self.eval_split, first, self.eval_suite, self.execute_steps, self.forecast_fm_steps) == (
                "test", SPLITS["test"].start, EVAL_SUITE, 4, FORECAST_FM_STEPS):
            return None
        suite = Path(self.eval_suite).stem
        sampler = "" if self.forecast_fm_steps == FORECAST_FM_STEPS else f"-fm{self.forecast_fm_steps}"
        return f"{suite}-{self.eval_split}-{first}-n{self.episodes_per_family}-x{self.execute_steps}{sampler}"


@dataclass
class ExperimentResult:
    summary: dict
    table: str
    files: dict[str, Path] = field(default_factory=dict)
    execution: dict = field(default_factory=dict)  # what this invocation skipped and ran, where


def _jsonable_config(cfg: ExperimentConfig) -> dict:
    return json.loads(json.dumps(cfg.to_dict()))


def _identity(config: dict) -> dict:
    """What must match for a folder to be resumed: all but the variants and the step grid (both extend a run), the
    demonstrations' folder and the encoders' folder (places, not results: the encoders' bytes are in every
    checkpoint's hash). Fields a stored config lacks (written before they existed) count as their defaults."""
    full = {**_jsonable_config(ExperimentConfig()), **config}
    evaluation = ("eval_split", "eval_seed_start", "eval_suite", "execute_steps", "forecast_fm_steps")
    return {k: v for k, v in full.items() if k not in ("variants", "steps", "demo_cache", "encoders_dir", *evaluation)}


# --- config hashes ---------------------------------------------------------------------------------
def _digest(document: Any) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()[:16]


def encoder_digest(encoder_init: str, encoders_dir: str | Path | None = None) -> str:
    """What the encoder's weights are: a hash of the checkpoint they are read from (the shipped fm, base; a protocol
    encoder fm_v2, base_matched in ``encoders_dir``), or ``scratch`` (a seeded init: the seed is in the run's
    identity)."""
    if encoder_init == "scratch":
        return "scratch"
    return f"{encoder_init}:{encoder_sha256(encoder_init, encoders_dir)[:16]}"


def train_hash(run_config: dict, encoder: str, step: int) -> str:
    """The hash of one checkpoint: its training run's identity (policy, training options, demonstrations'
    keys; :func:`molmomotion_policies.train.run_identity`), the encoder's weights and the step."""
    return _digest({"schema": GRID_SCHEMA, "run": run_config, "encoder": encoder, "step": step})


def cell_hash(checkpoint_hash: str, specs: list[tuple[str, int]], agent_cfg: AgentConfig,
              suite: str = EVAL_SUITE) -> str:
    """The hash of one cell's results: its checkpoint's hash, the test episodes, the suite and the agent (its fields
    added since cells were first hashed count only when they differ from their defaults, so older cells keep theirs)."""
    return _digest({"schema": GRID_SCHEMA, "checkpoint": checkpoint_hash, "suite": suite,
                    "episodes": [list(s) for s in specs], "agent": _hashed_agent(agent_cfg)})


AGENT_FIELDS_ADDED = {"forecast_fm_steps": FORECAST_FM_STEPS}  # AgentConfig fields newer than the cell hash: defaults


def _hashed_agent(agent_cfg: AgentConfig) -> dict:
    fields = asdict(agent_cfg)
    return {k: v for k, v in fields.items() if k not in AGENT_FIELDS_ADDED or v != AGENT_FIELDS_ADDED[k]}


# --- the tasks: each runs on whichever worker gets it, reading and writing only under the run's folders ---
class GraphWorker:
    """A worker's state across the tasks it is sent: loaded demonstrations, a PyBullet world, the last policy."""

    def __init__(self, log_level: int = logging.WARNING):
        import torch

        logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
        torch.set_num_threads(1)  # as the experiment always ran: results do not depend on the core count
        self._demos: dict[str, Any] = {}
        self._world = None
        self._agent = None
        self._agent_key: tuple | None = None
        self._options: dict[str, dict] = {}

    def demos(self, path: str):
        from .demos import Demos

        if path not in self._demos:
            if len(self._demos) >= 2:  # train and validation: a worker never needs more at once
                self._demos.clear()
            self._demos[path] = Demos.load(path)
        return self._demos[path]

    def drop_demos(self) -> None:
        self._demos.clear()

    def world(self):
        from molmomotion_sim.world import World

        if self._world is None:
            self._world = World()
        return self._world

    def drop_world(self) -> None:
        if self._world is not None:
            self._world.close()
            self._world = None

    def agent(self, checkpoint: str, agent_cfg: AgentConfig):
        from .agent import PolicyAgent

        if self._agent_key != (checkpoint, agent_cfg):
            self._agent = None  # one policy at a time
            self._agent = PolicyAgent(checkpoint, agent_cfg)
            self._agent_key = (checkpoint, agent_cfg)
        return self._agent

    def task_options(self, suite: str = EVAL_SUITE) -> dict:
        """A suite's task options per family: without them some seeds draw another scene than the harness and
        the ROS graph show for the same seed (held-out target combinations, the OOD suite's camera jitter)."""
        if suite not in self._options:
            from molmomotion_sim.suites import load_suite

            self._options[suite] = {f.family: f.options for f in load_suite(suite).families}
        return self._options[suite]

    def close(self) -> None:
        self.drop_world()
        self._agent = None


def _new_worker(log_level: int = logging.WARNING) -> GraphWorker:
    return GraphWorker(log_level)


def _run_job(worker: GraphWorker, job) -> Any:
    return job.run(worker)


def _close_worker(worker: GraphWorker) -> None:
    worker.close()


DEMO_SHARD_EPISODES = 25  # demonstrations recorded per task (one family's consecutive seeds)
_FRAME_ARRAYS = ("rgb", "xyz_cam_m", "episode", "trace_index", "ee_pos_world_m", "ee_yaw_rad", "gripper_width_m",
                 "gripper_closed", "ee_uv_model", "action_pos_m", "action_yaw_rad", "action_gripper_closed")
_EPISODE_ARRAYS = ("seed", "family", "instruction", "T_world_cam", "success", "forecast_world_m",
                   "forecast_points_t0_world_m", "forecast_valid")


@dataclass(frozen=True)
class DemoShardJob:
    """Record one shard of a recording (``config``: one family, ``episodes_per_family`` seeds from ``seed_start``)
    into ``path``; a shard already there is kept (a resumed run records only the missing ones)."""

    config: DemoConfig
    path: str

    def run(self, worker: GraphWorker) -> str:
        from .demos import record_demos

        path = Path(self.path)
        if path.is_file() or _empty_marker(path).is_file():
            return self.path
        try:
            demos = record_demos(self.config, progress=False)
        except PolicyError as err:
            if "no demonstration could be recorded" not in str(err):
                raise
            _empty_marker(path).parent.mkdir(parents=True, exist_ok=True)
            _empty_marker(path).write_text("every scene of this shard was skipped\n")  # as a one-task recording does
            return self.path
        demos.save(path)
        return self.path


@dataclass(frozen=True)
class DemoMergeJob:
    """The shards of ``config``'s recording, in its episode order, as the one file ``record_demos(config)`` would
    have written (the same arrays, bit for bit: each episode is recorded alone either way); the shards go."""

    config: DemoConfig
    shards: tuple[str, ...]
    path: str

    def run(self, worker: GraphWorker) -> str:
        from .demos import Demos

        lost = [p for p in self.shards if not (Path(p).is_file() or _empty_marker(Path(p)).is_file())]
        if lost:
            raise PolicyError(f"demonstration shards missing (recorded where this worker cannot read?): {lost}")
        parts = [Demos.load(p) for p in self.shards if Path(p).is_file()]
        merge_demos(self.config, parts).save(self.path)
        for p in self.shards:
            for leftover in (Path(p), _empty_marker(Path(p))):
                leftover.unlink(missing_ok=True)
        return self.path


def _empty_marker(path: Path) -> Path:
    return path.with_name(path.name + ".empty")


def demo_shards(config: DemoConfig, folder: Path, size: int = DEMO_SHARD_EPISODES) -> list[DemoShardJob]:
    """The shards of ``config``'s recording in its order (family by family, seeds in order), ``size`` episodes
    each at most."""
    jobs = []
    for family in config.families:
        for start in range(0, config.episodes_per_family, size):
            count = min(size, config.episodes_per_family - start)
            shard = replace(config, families=(family,), episodes_per_family=count,
                            seed_start=config.seed_start + start)
            name = f"{config.split}-{config.key()}-{family}-{start:05d}+{count}.npz"
            jobs.append(DemoShardJob(shard, str(folder / "shards" / name)))
    return jobs


def merge_demos(config: DemoConfig, parts: list):
    """One :class:`~molmomotion_policies.demos.Demos` of ``config`` from its shards' (in order): episode, family and
    instruction indices renumbered as one recording numbers them (instructions in order of first appearance)."""
    from .demos import Demos

    if not parts:
        raise PolicyError("no demonstration could be recorded")
    arrays: dict[str, list] = {k: [] for k in (*_FRAME_ARRAYS, *_EPISODE_ARRAYS)}
    instructions: list[str] = []
    offset = 0
    for part in parts:
        renumber = []
        for text in part.instructions:
            if text not in instructions:
                instructions.append(text)
            renumber.append(instructions.index(text))
        for key in (*_FRAME_ARRAYS, *_EPISODE_ARRAYS):
            value = getattr(part, key)
            if key == "episode":
                value = (value + offset).astype(value.dtype)
            elif key == "family":
                value = np.array([config.families.index(part.families[i]) for i in value], value.dtype)
            elif key == "instruction":
                value = np.array([renumber[i] for i in value], value.dtype)
            arrays[key].append(value)
        offset += part.num_episodes
    return Demos(**{k: np.concatenate(v) for k, v in arrays.items()}, families=list(config.families),
                 instructions=instructions, config=json.loads(json.dumps({**asdict(config), "key": config.key()})))


ENCODE_SHARD_FRAMES = 32 * 64  # frames encoded per task (a multiple of the encoder's batch: the same passes)


@dataclass(frozen=True)
class EncodeJob:
    """One encoder's features of one recording's frames (the trunk's outputs when fine-tuning), cached in ``cache``
    for the training tasks, in one task."""

    policy: PolicyConfig
    demos: str
    cache: str

    def run(self, worker: GraphWorker) -> str:
        from .model import GoalConditionedPolicy
        from .train import cached_encoding, cached_trunk

        encode = cached_trunk if self.policy.finetune != "none" else cached_encoding
        encode(GoalConditionedPolicy(self.policy), worker.demos(self.demos), Path(self.cache), progress=False)
        return self.demos


@dataclass(frozen=True)
class EncodeShardJob:
    """The frozen encoder's features of frames ``rows`` of a recording, into ``path`` (kept when already there)."""

    policy: PolicyConfig
    demos: str
    rows: tuple[int, int]
    path: str

    def run(self, worker: GraphWorker) -> str:
        from .model import GoalConditionedPolicy
        from .train import encode_demos, save_npy

        if not Path(self.path).is_file():
            encoding = encode_demos(GoalConditionedPolicy(self.policy), worker.demos(self.demos), progress=False,
                                    rows=self.rows)
            save_npy(Path(self.path), encoding)
        return self.path


@dataclass(frozen=True)
class EncodeMergeJob:
    """The shards of a recording's encodings, in order, as the one cache file the training tasks read; the shards
    go."""

    parts: tuple[str, ...]
    path: str
    frames: int

    def run(self, worker: GraphWorker) -> str:
        from .model import ENCODING_DIM
        from .train import save_npy

        encoding = np.concatenate([np.load(p) for p in self.parts])
        if encoding.shape != (self.frames, ENCODING_DIM):
            raise PolicyError(f"encoding shards of {self.path} hold {encoding.shape}, not ({self.frames}, "
                              f"{ENCODING_DIM})")
        save_npy(Path(self.path), encoding)
        for p in self.parts:
            Path(p).unlink(missing_ok=True)
        return self.path


def encode_jobs(policy: PolicyConfig, demos: str, demos_key: str, cache: Path,
                shard_frames: int = ENCODE_SHARD_FRAMES) -> tuple[list, list]:
    """The tasks that cache ``policy``'s encoder's features of a recording: (encoding tasks, merge tasks); none when
    the cache is there. A frozen encoder's frames are encoded in shards of ``shard_frames`` (then merged); the
    trunk (fine-tuning), a cache to upgrade or a recording of one shard's frames is one task."""
    from .train import ENCODE_BATCH, encoding_paths

    if policy.finetune != "none":
        return [EncodeJob(policy, demos, str(cache))], []
    path, layout_1 = encoding_paths(policy, demos_key, cache)
    if path.is_file():
        return [], []
    with np.load(demos) as data:
        frames = len(data["episode"])
    if layout_1.is_file() or frames <= shard_frames:
        return [EncodeJob(policy, demos, str(cache))], []
    assert shard_frames % ENCODE_BATCH == 0
    parts = [EncodeShardJob(policy, demos, (start, min(start + shard_frames, frames)),
                            str(cache / "parts" / f"{path.stem}-{start:08d}.npy"))
             for start in range(0, frames, shard_frames)]
    return parts, [EncodeMergeJob(tuple(job.path for job in parts), str(path), frames)]


@dataclass(frozen=True)
class TrainJob:
    """One (variant, seed) training run over the whole step grid: a checkpoint at every step (its hash in its
    meta), then ``train.json`` (hashes, validation history, speed) once the run has reached the last step."""

    name: str
    policy: PolicyConfig
    train: TrainConfig
    demos: tuple[str, str]
    run_dir: str
    cache: str
    hashes: tuple[tuple[int, str], ...]  # (step, train_hash)
    device: str = "cpu"  # train_policy's; "auto" where the task holds a GPU

    def run(self, worker: GraphWorker) -> dict:
        from .train import train_policy

        run_dir = Path(self.run_dir)
        previous = read_json(run_dir / "train.json") or {}
        run = train_policy(self.policy, worker.demos(self.demos[0]), worker.demos(self.demos[1]), run_dir,
                           self.train, progress=False, encoding_cache=self.cache,
                           checkpoint_meta={step: {"config_hash": h} for step, h in self.hashes}, device=self.device)
        rate = run.steps_per_s or previous.get("steps_per_s", 0.0)
        document = {"config_hash": {str(step): h for step, h in self.hashes}, "history": run.history,
                    "steps_per_s": rate, "host": socket.gethostname(), "device": run.device,
                    "ray_gpu_ids": _ray_gpu_ids()}
        write_json(run_dir / "train.json", document)
        return {"name": self.name, "steps_per_s": rate}


def _ray_gpu_ids() -> list | None:
    """The GPUs Ray gave this worker (None outside a Ray worker)."""
    import sys

    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    return [str(i) for i in ray.get_gpu_ids()]


def resolve_train_gpus(executor: Executor, train_gpus: float | str) -> float:
    """GPUs each training task reserves: ``"auto"`` is one where the executor's workers have any, else none; a
    number the workers do not have is a :class:`PolicyError` (before any work)."""
    available = executor.gpus_available()
    if train_gpus == "auto":
        return 1.0 if available >= 1 else 0.0
    gpus = float(train_gpus)
    if gpus < 0:
        raise PolicyError(f"train_gpus must be 'auto' or 0 or more, got {train_gpus!r}")
    if gpus > 0 and available < gpus:
        raise PolicyError(f"each training task is to hold {gpus:g} GPU(s), but the {executor.name} executor's "
                          f"workers have {available:g}")
    return gpus


@dataclass(frozen=True)
class EvalJob:
    """One test episode of one checkpoint (``cell`` numbers the checkpoint in the run's list)."""

    cell: int
    checkpoint: str
    family: str
    seed: int
    agent: AgentConfig
    suite: str = EVAL_SUITE

    def run(self, worker: GraphWorker) -> EpisodeResult:
        worker.drop_demos()  # evaluation needs none: free what training held
        return run_test_episode(worker, self.checkpoint, self.agent, self.family, self.seed, self.suite)


def run_test_episode(worker: GraphWorker, checkpoint: str, agent_cfg: AgentConfig, family: str,
                     seed: int, suite: str = EVAL_SUITE) -> EpisodeResult:
    """The policy on one (family, seed) with ``suite``'s scenes (``molmomotion sim-eval`` draws the same ones);
    an episode that raises is that episode's failure, as in the harness."""
    agent = worker.agent(checkpoint, agent_cfg)
    world = worker.world()
    start = time.perf_counter()
    task = TASKS[family](world, worker.task_options(suite)[family])
    try:
        return run_episode(task, seed, agent)
    except Exception as err:
        log.warning("%s seed %d raised %s: %s", family, seed, type(err).__name__, err)
        result = EpisodeResult(seed, family, task.instruction, False, f"{type(err).__name__}: {err}", 0,
                               world.time_s, time.perf_counter() - start, agent.name, agent.model_id)
        worker.drop_world()
        return result


# --- files -----------------------------------------------------------------------------------------
def _demo_path(config: DemoConfig, folder: Path) -> Path:
    """Where :func:`~molmomotion_policies.demos.load_or_record` caches ``config``'s recording."""
    return folder / f"{config.split}-{config.episodes_per_family}pf-{config.key()}.npz"


def demo_file(config: DemoConfig, folder: Path) -> tuple[Path, str] | None:
    """The cached demonstrations :func:`~molmomotion_policies.demos.load_or_record` reads for ``config`` and
    their key, or None when they still have to be recorded."""
    if _demo_path(config, folder).is_file():
        return _demo_path(config, folder), config.key()
    with_forecast = replace(config, forecast=True)
    if not config.forecast and _demo_path(with_forecast, folder).is_file():
        return _demo_path(with_forecast, folder), with_forecast.key()
    return None


@dataclass
class _Run:
    variant: str
    seed: int
    policy: PolicyConfig
    train: TrainConfig
    folder: Path
    hashes: dict[int, str]
    done: bool = False

    @property
    def name(self) -> str:
        return f"{self.variant}-s{self.seed}"


@dataclass
class _Cell:
    variant: str
    seed: int
    step: int
    path: Path
    checkpoint: Path
    hash: str
    results: list[EpisodeResult] | None = None


def _stored_cell(cell: _Cell, n: int) -> list[EpisodeResult] | None:
    """The cell's results when its file is complete and carries the expected hash."""
    document = read_json(cell.path)
    if not document or document.get("meta", {}).get("config_hash") != cell.hash:
        return None
    episodes = document.get("episodes", [])
    if len(episodes) != n:
        return None
    return [EpisodeResult(**e) for e in episodes]


def _run_done(run: _Run) -> bool:
    """Every checkpoint of the grid on disk and ``train.json`` carrying their hashes. A checkpoint hashed
    otherwise (the encoder's weights changed under the folder, say) is refused: its state.pt and caches would
    carry the old ones into the new cells."""
    document = read_json(run.folder / "train.json")
    if not document:
        return False
    stored = {int(step): h for step, h in document.get("config_hash", {}).items()}
    stale = sorted(step for step, h in run.hashes.items() if step in stored and stored[step] != h)
    if stale:
        raise PolicyError(f"{run.folder} holds checkpoints (steps {stale}) made from another encoder, demonstrations "
                          "or code than this config gives now; move it away or choose another --out")
    return all(step in stored and (run.folder / f"step-{step:06d}.pt").is_file() for step in run.hashes)


# --- the run ---------------------------------------------------------------------------------------
def run_experiment(cfg: ExperimentConfig, out_dir: str | Path, progress: bool = True, executor: Executor | None = None,
                   resume: bool = False, episodes_per_batch: int | None = None,
                   echo: Callable[[str], None] | None = None, train_gpus: float | str = "auto",
                   evaluate_steps: tuple[int, ...] | None = None) -> ExperimentResult:
    """Run the graph (see the module docstring) through ``executor`` (default: in this process) into ``out_dir``.

    A folder that already holds an experiment needs ``resume=True``: its finished cells are kept and only the
    missing ones run. ``episodes_per_batch``: test episodes sent to a worker at a time (default: the executor's).
    ``echo`` gets one line saying what is skipped and what runs (default: the log). ``train_gpus``: GPUs each
    training task reserves (:func:`resolve_train_gpus`); a task holding one trains there. ``evaluate_steps``: the steps
    of the grid whose checkpoints are evaluated (default: all; the protocol's choices read the final step only, the
    runs still checkpoint the whole grid). ``out_dir`` (and a
    ``demo_cache``) must be one folder for every worker: on a Ray cluster that is checked before any work
    (:class:`~molmomotion_ros.execution.StorageError`)."""
    started = time.perf_counter()
    say = echo or log.info
    executor = executor or LocalExecutor(1)
    out = Path(out_dir).expanduser().resolve()  # workers elsewhere get absolute paths
    config_path = out / "experiment_config.json"
    stored = read_json(config_path) if config_path.is_file() else None
    resumed = stored is not None
    if stored is not None and not resume:
        raise PolicyError(f"{out} already holds an experiment; --resume continues it (finished cells are kept, the "
                          "missing ones run) or choose another --out")
    tag = cfg.eval_tag()
    # Another evaluation suite of the same training runs may have its own episode count.
    ignore = {"episodes_per_family"} if tag is not None else set()

    def identity(config: dict) -> dict:
        return {k: v for k, v in _identity(config).items() if k not in ignore}

    if stored is not None and identity(stored) != identity(_jsonable_config(cfg)):
        raise PolicyError(f"{out} holds an experiment with another config (only variants, steps and the evaluation "
                          "suite may change between runs in one folder); choose another --out")
    unknown_steps = sorted(set(evaluate_steps or ()) - set(cfg.steps))
    if unknown_steps or evaluate_steps == ():
        raise PolicyError(f"evaluate_steps {list(evaluate_steps or ())} must be steps of the grid {list(cfg.steps)}")
    executor.check()
    out.mkdir(parents=True, exist_ok=True)
    summary_dir = out / "evals" / tag if tag else out
    if stored is None or tag is None:
        write_json(config_path, _jsonable_config(cfg))
    if tag is not None:
        write_json(summary_dir / "evaluation_config.json", _jsonable_config(cfg))
    task = WorkerTask(_new_worker, _run_job, (logging.getLogger().getEffectiveLevel(),), _close_worker, name="")
    stages: dict[str, dict] = {}
    with executor.session():  # the workers keep their state (imports, models, demonstrations) across the stages
        executor.check_storage(out)
        if cfg.demo_cache:
            executor.check_storage(Path(cfg.demo_cache).expanduser().resolve())
        gpus = resolve_train_gpus(executor, train_gpus)
        runs, cells, counts = _run_graph(cfg, out, executor, task, stages, resume, resumed, episodes_per_batch,
                                         progress, say, gpus, evaluate_steps)

    # 5. the table and plots
    histories: dict[str, list[dict]] = {}
    train_rates: dict[str, float] = {}
    for run in runs:
        document = read_json(run.folder / "train.json") or {}
        histories[run.name] = document.get("history", [])
        if document.get("steps_per_s"):
            train_rates[run.name] = document["steps_per_s"]
    evals = {(c.variant, c.seed, c.step): c.results for c in cells}
    summary = summarise(cfg, histories, evals, train_rates)
    table = format_summary(summary)
    files = write_summary(summary_dir, summary, table)
    execution = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "resume": resumed,
                 **counts, "executor": executor.name, "stages": stages,
                 "wall_s": round(time.perf_counter() - started, 3)}
    with open(out / "runs.jsonl", "a") as f:
        f.write(json.dumps(execution) + "\n")
    files["runs"] = out / "runs.jsonl"
    return ExperimentResult(summary, table, files, execution)


def _run_graph(cfg: ExperimentConfig, out: Path, executor: Executor, task: WorkerTask, stages: dict, resume: bool,
               resumed: bool, episodes_per_batch: int | None, progress: bool, say: Callable[[str], None],
               train_gpus: float = 0.0,
               evaluate_steps: tuple[int, ...] | None = None) -> tuple[list[_Run], list[_Cell], dict]:
    """Stages 1-4 of the graph (the module docstring); the runs, the cells (with their results) and the counts."""
    def stage(name: str, jobs: list, batch_size: int | None = 1, gpus: float | None = None) -> list:
        t0 = time.perf_counter()
        results = executor.map(replace(task, name=name, gpus=gpus), jobs, batch_size,
                               progress=name if progress else None)
        stages[name] = {"tasks": len(jobs), "wall_s": round(time.perf_counter() - t0, 3), **executor.describe(),
                        **({"gpus_per_task": gpus} if gpus is not None else {})}
        return results

    # 1. demonstrations
    demo_dir = Path(cfg.demo_cache).expanduser().resolve() if cfg.demo_cache else out / "demos"
    forecast = any(VARIANTS[v]["forecast_conditioning"] for v in cfg.variants)
    demo_kw = {"families": tuple(cfg.families), "frames_every": cfg.frames_every, "forecast": forecast}
    if forecast and cfg.encoders_dir:  # C reads the forecasts of the protocol's motion model, not fm.pt's
        from .model import PROTOCOL_ENCODERS, encoder_checkpoint

        demo_kw["forecaster"] = str(encoder_checkpoint(PROTOCOL_ENCODERS["fm"],
                                                       Path(cfg.encoders_dir).expanduser().resolve()))
    demo_cfgs = (DemoConfig("train", cfg.train_episodes_per_family, **demo_kw),
                 DemoConfig("validation", cfg.val_episodes_per_family, **demo_kw))
    missing = [c for c in demo_cfgs if demo_file(c, demo_dir) is None]
    if missing:  # recorded in shards over the workers, then merged into the file one recording would write
        shards = {c: demo_shards(c, demo_dir) for c in missing}
        stage("demos", [job for c in missing for job in shards[c]])
        stage("demos-merge", [DemoMergeJob(c, tuple(job.path for job in shards[c]), str(_demo_path(c, demo_dir)))
                              for c in missing])
    (train_path, train_key), (val_path, val_key) = (demo_file(c, demo_dir) for c in demo_cfgs)
    demos = (str(train_path), str(val_path))

    # the plan: every (variant, seed) run and (variant, seed, step) cell, with the hashes they must carry
    from .train import run_identity

    test_specs = [(family, seed) for family in cfg.families for seed in cfg.eval_seeds()]
    agent_cfg = AgentConfig(max_samples=cfg.max_samples, execute_steps=cfg.execute_steps,
                            forecast_fm_steps=cfg.forecast_fm_steps)
    evals_dir = out / "evals" / (cfg.eval_tag() or "")
    train_cfg = TrainConfig(steps=tuple(cfg.steps), batch_size=cfg.batch_size, lr=cfg.lr, encoder_lr=cfg.encoder_lr,
                            eval_every=cfg.eval_every, lr_schedule=cfg.lr_schedule, state_noise_m=cfg.state_noise_m,
                            state_noise_rad=cfg.state_noise_rad)
    encoders_dir = str(Path(cfg.encoders_dir).expanduser().resolve()) if cfg.encoders_dir else None
    encoders: dict[str, str] = {}  # encoder_init → encoder_digest
    runs: list[_Run] = []
    cells: list[_Cell] = []
    for variant in cfg.variants:
        for seed in range(cfg.seeds):
            policy = PolicyConfig.for_variant(variant, encoder_seed=seed, encoders_dir=encoders_dir,
                                              finetune=cfg.finetune, footprint=cfg.footprint,
                                              geometry_skip=cfg.geometry_skip)
            if policy.encoder_init not in encoders:
                encoders[policy.encoder_init] = encoder_digest(policy.encoder_init, encoders_dir)
            run_cfg = replace(train_cfg, seed=seed)
            identity = run_identity(policy, run_cfg, train_key, val_key)
            folder = out / "runs" / f"{variant}-s{seed}"
            run = _Run(variant, seed, policy, run_cfg, folder,
                       {step: train_hash(identity, encoders[policy.encoder_init], step) for step in cfg.steps})
            run.done = _run_done(run)
            runs.append(run)
            for step in (s for s in cfg.steps if evaluate_steps is None or s in evaluate_steps):
                cell = _Cell(variant, seed, step, evals_dir / f"{run.name}-{step:06d}.json",
                             folder / f"step-{step:06d}.pt", "")
                cell.hash = cell_hash(run.hashes[step], test_specs, agent_cfg, cfg.eval_suite)
                cell.results = _stored_cell(cell, len(test_specs)) if resume else None
                cells.append(cell)
    todo_runs = [r for r in runs if not r.done]
    todo_cells = [c for c in cells if c.results is None]
    counts = {"cells": {"total": len(cells), "skipped": len(cells) - len(todo_cells), "run": len(todo_cells)},
              "training_runs": {"total": len(runs), "skipped": len(runs) - len(todo_runs), "run": len(todo_runs)},
              "episodes_run": len(todo_cells) * len(test_specs)}
    say(f"{'resume' if resumed else 'start'}: {counts['cells']['skipped']} of {len(cells)} cells "
        f"finished (skipped), {len(todo_cells)} to run; {len(runs) - len(todo_runs)} of {len(runs)} training runs "
        f"finished, {len(todo_runs)} to run; {counts['episodes_run']} test episodes; executor {executor.name}")

    # 2. encodings (of every encoder the runs still to train need, in shards of frames), 3. training
    encoders_needed: dict[tuple, PolicyConfig] = {}
    for run in todo_runs:
        p = run.policy
        encoders_needed.setdefault((p.encoder_init, p.encoder_seed if p.encoder_init == "scratch" else 0), p)
    encode, merge = [], []
    for policy in encoders_needed.values():
        for path, key in ((train_path, train_key), (val_path, val_key)):
            jobs, merges = encode_jobs(policy, str(path), key, out / "encodings")
            encode += jobs
            merge += merges
    if encode:
        stage("encode", encode)
    if merge:
        stage("encode-merge", merge)
    if todo_runs:
        device = "auto" if train_gpus > 0 else "cpu"
        stage("train", [TrainJob(r.name, r.policy, r.train, demos, str(r.folder), str(out / "encodings"),
                                 tuple(sorted(r.hashes.items())), device) for r in todo_runs], gpus=train_gpus)
        for run in todo_runs:
            if not _run_done(run):
                raise PolicyError(f"{run.folder}: the training task ended without every checkpoint of the grid")

    # 4. evaluation: every missing cell's episodes, each cell written as soon as its last episode is in
    if todo_cells:
        _evaluate_cells(executor, replace(task, name="eval"), todo_cells, test_specs, agent_cfg, cfg.eval_suite,
                        episodes_per_batch,
                        progress, stages)

    return runs, cells, counts


def _evaluate_cells(executor: Executor, task: WorkerTask, cells: list[_Cell], specs: list[tuple[str, int]],
                    agent_cfg: AgentConfig, suite: str, batch_size: int | None, progress: bool, stages: dict) -> None:
    from tqdm import tqdm

    t0 = time.perf_counter()
    jobs = [EvalJob(number, str(cell.checkpoint), family, seed, agent_cfg, suite)
            for number, cell in enumerate(cells) for family, seed in specs]
    pending = {number: [None] * len(specs) for number in range(len(cells))}
    left = {number: len(specs) for number in range(len(cells))}
    written = 0
    with tqdm(total=len(jobs), desc="eval", unit="ep", disable=not progress, dynamic_ncols=True) as bar:
        for index, result in executor.imap_unordered(task, jobs, batch_size):
            number = jobs[index].cell
            pending[number][index % len(specs)] = result
            left[number] -= 1
            bar.update(1)
            if left[number] == 0:
                cell, results = cells[number], pending.pop(number)
                write_results(cell.path, results, {
                    "checkpoint": str(cell.checkpoint), "suite": Path(suite).stem, "agent": results[0].agent,
                    "model_id": results[0].model_id, "agent_config": asdict(agent_cfg), "config_hash": cell.hash,
                    "executor": executor.describe()})
                cell.results = results
                written += 1
                bar.set_postfix(cells=f"{written}/{len(cells)}")
    stages["eval"] = {"tasks": len(jobs), "wall_s": round(time.perf_counter() - t0, 3), **executor.describe()}


def evaluate_checkpoint(checkpoint: Path, specs: list[tuple[str, int]], agent_cfg: AgentConfig, path: Path,
                        progress: bool = True) -> list[EpisodeResult]:
    """One checkpoint on every (family, test seed), in this process, as the experiment's evaluation tasks run
    them (:func:`run_test_episode`); cached in ``path`` (harness JSON) while the checkpoint is unchanged."""
    if path.is_file():
        document = json.loads(path.read_text())
        meta = document.get("meta", {})
        if meta.get("checkpoint_mtime") == checkpoint.stat().st_mtime and meta.get("suite") == EVAL_SUITE:
            return [EpisodeResult(**e) for e in document["episodes"]]
    from tqdm import tqdm

    worker = GraphWorker(logging.getLogger().getEffectiveLevel())
    try:
        results = [run_test_episode(worker, str(checkpoint), agent_cfg, family, seed)
                   for family, seed in tqdm(specs, desc=f"eval {path.stem}", unit="ep", disable=not progress,
                                            dynamic_ncols=True)]
    finally:
        worker.close()
    write_results(path, results, {"checkpoint": str(checkpoint), "checkpoint_mtime": checkpoint.stat().st_mtime,
                                  "suite": EVAL_SUITE, "agent": results[0].agent, "model_id": results[0].model_id,
                                  "agent_config": asdict(agent_cfg)})
    return results


def summarise(cfg: ExperimentConfig, histories: dict[str, list[dict]],
              evals: dict[tuple[str, int, int], list[EpisodeResult]], train_rates: dict[str, float]) -> dict:
    """Success per (variant, step) pooled over seeds (Wilson 95%), per family, validation curves, the bars."""
    rows = []
    for variant in cfg.variants:
        for step in cfg.steps:
            results = [r for seed in range(cfg.seeds) for r in evals.get((variant, seed, step), [])]
            if not results:
                continue
            per_family = {row.family: row.to_dict() for row in summarize(results)}
            overall = per_family.pop("all")
            rows.append({"variant": variant, "step": step, "n": overall["n"], "successes": overall["successes"],
                         "rate": overall["rate"], "lo": overall["lo"], "hi": overall["hi"],
                         "per_seed": [_rate(evals.get((variant, s, step), [])) for s in range(cfg.seeds)],
                         "families": {f: {k: row[k] for k in ("n", "successes", "rate", "lo", "hi")}
                                      for f, row in per_family.items()}})
    curves = _mean_curves(cfg, histories)
    return {"config": _jsonable_config(cfg), "rows": rows, "val_curves": curves,
            "steps_to_reach_B_final_val_error": _steps_to_reach(curves), "bars": _bars(rows, cfg),
            "paired": _paired_comparisons(cfg, evals),
            "train_steps_per_s": train_rates, "molmomotion": MOLMOMOTION,
            "failure_reasons": _failure_reasons(cfg, evals)}


def _rate(results: list[EpisodeResult]) -> float | None:
    return sum(r.success for r in results) / len(results) if results else None


def _mean_curves(cfg: ExperimentConfig, histories: dict[str, list[dict]]) -> dict:
    """Per variant: steps and the validation position error (cm), mean over seeds."""
    curves = {}
    for variant in cfg.variants:
        runs = [histories[f"{variant}-s{s}"] for s in range(cfg.seeds) if histories.get(f"{variant}-s{s}")]
        if not runs:
            continue
        steps = sorted(set.intersection(*(set(h["step"] for h in run) for run in runs)))
        def mean_at(key: str, step: int, runs=runs) -> float:
            return float(np.mean([next(h[key] for h in run if h["step"] == step) for run in runs]))

        err = [mean_at("val_pos_err_cm", s) for s in steps]
        grip = [mean_at("val_gripper_acc", s) for s in steps]
        curves[variant] = {"step": steps, "val_pos_err_cm": err, "val_gripper_acc": grip}
    return curves


def _steps_to_reach(curves: dict) -> dict:
    """Steps each variant needs to reach B's final validation position error (None = never in the run)."""
    if "B" not in curves or not curves["B"]["val_pos_err_cm"]:
        return {}
    target = curves["B"]["val_pos_err_cm"][-1]
    reached = {v: next((s for s, e in zip(c["step"], c["val_pos_err_cm"], strict=True) if e <= target), None)
               for v, c in curves.items()}
    return {"B_final_val_pos_err_cm": target, "steps": reached}


def _bars(rows: list[dict], cfg: ExperimentConfig) -> dict:
    by = {(r["variant"], r["step"]): r["rate"] for r in rows}
    final = cfg.steps[-1]
    bars = {}
    if ("A", final) in by:
        bars["A_final_ge_80"] = {"A": by[("A", final)], "pass": by[("A", final)] >= 0.80}
    if "A" in cfg.variants and "B" in cfg.variants:
        gaps = {s: by[("A", s)] - by[("B", s)] for s in cfg.steps if ("A", s) in by and ("B", s) in by}
        bars["A_minus_B_ge_15pt"] = {"gap_by_step": gaps, "steps_meeting": [s for s, g in gaps.items() if g >= 0.15],
                                     "pass_at_final": gaps.get(final, -1) >= 0.15}
        bars["A_over_B_by_step"] = {s: by[("A", s)] / by[("B", s)] if by[("B", s)] else None for s in gaps}
        if 10000 in gaps:
            a, b = by[("A", 10000)], by[("B", 10000)]
            bars["A_ge_2x_B_at_10k"] = {"A": a, "B": b, "pass": a > 0 and a >= 2 * b}
    return bars


PAIRS = (("A", "B"), ("C", "A"), ("A", "D"))  # (motion vs base), (forecast input), (pretraining vs none)


def _paired_comparisons(cfg: ExperimentConfig, evals: dict) -> list[dict]:
    """Per step, two variants on the same (seed, family, test seed) slots: the episodes only one of them
    solved, a two-sided sign test on those, and the difference in success rate with a 95% interval
    (normal approximation on the per-slot differences)."""
    out = []
    for x, y in PAIRS:
        for step in cfg.steps:
            a, b = ({(seed, r.family, r.seed): r.success for seed in range(cfg.seeds)
                     for r in evals.get((v, seed, step), [])} for v in (x, y))
            slots = sorted(set(a) & set(b))
            if not slots:
                continue
            x_only = sum(a[k] and not b[k] for k in slots)
            y_only = sum(b[k] and not a[k] for k in slots)
            n = len(slots)
            diff = (x_only - y_only) / n
            half = 1.96 * math.sqrt(max((x_only + y_only) / n - diff ** 2, 0.0) / n)
            out.append({"pair": f"{x} vs {y}", "step": step, "n": n, "x_only": x_only, "y_only": y_only,
                        "diff": diff, "diff_lo": diff - half, "diff_hi": diff + half,
                        "sign_test_p": _sign_test(x_only, y_only)})
    return out


def _sign_test(k: int, m: int) -> float:
    """Two-sided exact sign test: k and m discordant pairs, each side with probability 1/2 under H0."""
    n = k + m
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(k, m) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def _failure_reasons(cfg: ExperimentConfig, evals: dict) -> dict:
    out: dict[str, dict[str, int]] = {}
    for (variant, _, step), results in evals.items():
        if step != cfg.steps[-1]:
            continue
        counts = out.setdefault(variant, {})
        for r in results:
            if not r.success:
                key = r.failure_reason.split(":")[0][:60] or "unknown"
                counts[key] = counts.get(key, 0) + 1
    return out


def format_summary(summary: dict) -> str:
    """Markdown: success vs steps per variant (95% Wilson), the final checkpoints per family, the bars."""
    families = sorted({f for r in summary["rows"] for f in r["families"]})
    lines = ["| variant | steps | n | success | rate | 95% CI | " + " | ".join(families) + " |",
             "|---|---|---|---|---|---|" + "---|" * len(families)]
    for r in summary["rows"]:
        fam = " | ".join(f"{r['families'][f]['rate']:.0%}" if f in r["families"] else "–" for f in families)
        lines.append(f"| {r['variant']} | {r['step']} | {r['n']} | {r['successes']} | {r['rate']:.1%} | "
                     f"[{r['lo']:.1%}, {r['hi']:.1%}] | {fam} |")
    reach = summary.get("steps_to_reach_B_final_val_error") or {}
    if reach:
        lines.append("")
        lines.append(f"Validation action error (mean L2 of the chunk's offsets): B ends at "
                     f"{reach['B_final_val_pos_err_cm']:.2f} cm; steps to reach it: "
                     + ", ".join(f"{v} {s if s is not None else 'never'}" for v, s in reach["steps"].items()))
    paired = summary.get("paired") or []
    if paired:
        lines += ["", "Paired over the same test slots (seed, family, test seed): episodes only one variant solved, "
                  "sign test, difference with 95% interval", "",
                  "| pair | steps | n | first only | second only | difference | 95% CI | sign test p |",
                  "|---|---|---|---|---|---|---|---|"]
        for c in paired:
            lines.append(f"| {c['pair']} | {c['step']} | {c['n']} | {c['x_only']} | {c['y_only']} | "
                         f"{c['diff'] * 100:+.1f} | [{c['diff_lo'] * 100:+.1f}, {c['diff_hi'] * 100:+.1f}] | "
                         f"{c['sign_test_p']:.2g} |")
    lines.append("")
    for name, bar in summary.get("bars", {}).items():
        lines.append(f"- {name}: {json.dumps(bar)}")
    return "\n".join(lines)


def write_summary(out: Path, summary: dict, table: str) -> dict[str, Path]:
    files = {"json": out / "success_rate.json", "table": out / "success_rate.md",
             "success_png": out / "success_vs_steps.png", "val_png": out / "val_error.png"}
    files["json"].write_text(json.dumps(summary, indent=2) + "\n")
    files["table"].write_text(table + "\n")
    plot_success(summary, files["success_png"])
    plot_val_curves(summary, files["val_png"])
    return files


def plot_success(summary: dict, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axis = figure.add_subplot(1, 1, 1)
    for variant in summary["config"]["variants"]:
        rows = [r for r in summary["rows"] if r["variant"] == variant]
        if not rows:
            continue
        steps = [r["step"] for r in rows]
        rate = np.array([r["rate"] for r in rows])
        err = np.array([[r["rate"] - r["lo"] for r in rows], [r["hi"] - r["rate"] for r in rows]])
        axis.errorbar(steps, rate * 100, yerr=err * 100, marker="o", capsize=3, label=f"{variant}")
    axis.set_xscale("log")
    axis.set_xlabel("training steps")
    axis.set_ylabel("success on test seeds (%), 95% Wilson")
    axis.set_ylim(-2, 102)
    axis.legend(title="variant")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    return path


def plot_val_curves(summary: dict, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axis = figure.add_subplot(1, 1, 1)
    for variant, curve in summary["val_curves"].items():
        axis.plot(curve["step"], curve["val_pos_err_cm"], label=variant)
    reach = summary.get("steps_to_reach_B_final_val_error") or {}
    if reach:
        axis.axhline(reach["B_final_val_pos_err_cm"], color="grey", ls="--", lw=0.8, label="B final")
    axis.set_xscale("log")
    axis.set_xlabel("training steps")
    axis.set_ylabel("validation action error (cm, chunk mean L2)")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    return path
