"""Generating the motion dataset: oracle episodes of every family and split, recorded in worker
processes (:mod:`molmomotion_sim.recording`) and written as compressed shards with a manifest in the
core's format (:mod:`molmomotion_ros.motion_data`, which also reads them back).

Generation runs one :class:`~molmomotion_sim.world.World` per worker (a spawned process, or a Ray actor:
:mod:`molmomotion_ros.execution`) and never imports torch there. Shards are byte-identical for any
executor, worker count and batch size.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from molmomotion_ros.camera import PinholeCamera
from molmomotion_ros.execution import Executor, LocalExecutor, WorkerTask, available_cores
from molmomotion_ros.motion_data import MANIFEST, SCHEMA_VERSION, DatasetError, write_shard
from molmomotion_ros.paths import config_path
from molmomotion_ros.phrasings import PhrasingError, check_split_allowed, load_phrasing_set

from .recording import EpisodeRecorder, GenerationConfig, options_from_dict
from .seeds import SPLITS, seeds_from
from .tasks import TASKS
from .tasks.base import TaskOptions

logger = logging.getLogger(__name__)

MAX_HISTORY = 3
EPISODES_PER_SHARD = 64


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
        return options_from_dict(options)
    raise DatasetError(f"options must be a TaskOptions or a dict, got {type(options).__name__}")


# --- workers ------------------------------------------------------------------------------------
def _record(recorder: EpisodeRecorder, job: tuple[str, int, str]) -> dict:
    return recorder.record(*job)


def _close_recorder(recorder: EpisodeRecorder) -> None:
    recorder.close()


def _records(jobs: list[tuple[str, int, str]], config: GenerationConfig, executor: Executor,
             batch_size: int | None = None) -> Iterator[dict]:
    """Records in the order of ``jobs`` (whatever the executor, worker count and batch size)."""
    yield from executor.imap(WorkerTask(EpisodeRecorder, _record, (config,), _close_recorder), jobs, batch_size)


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
    seed_start: int | None = None,
    episodes_per_shard: int = EPISODES_PER_SHARD,
    executor: Executor | None = None,
    batch_size: int | None = None,
) -> dict:
    """Record ``episodes_per_family`` oracle episodes per family into ``out_dir``; return the manifest.

    Seeds are ``episodes_per_family`` consecutive seeds of ``split`` from ``seed_start`` (a seed of the split;
    default its first), the same for every family; ``seed_start`` is recorded in the manifest. ``executor``
    defaults to ``workers`` local processes (default: every core; a given executor has its own count). Output
    is identical whatever the executor, ``workers`` and ``batch_size``.
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
        seeds = seeds_from(split, SPLITS[split].start if seed_start is None else seed_start, episodes_per_family)
    except ValueError as err:
        raise DatasetError(str(err)) from None
    options = _task_options(options)
    if options.phrasing_set is not None:
        try:
            check_split_allowed(load_phrasing_set(options.phrasing_set), split)
        except PhrasingError as err:
            raise DatasetError(str(err)) from None
    config = GenerationConfig(
        history=history, horizon=horizon, points_per_episode=points_per_episode, frames_every=frames_every,
        episodes_per_shard=episodes_per_shard,
        camera=PinholeCamera.from_yaml(config_path("camera.yaml")).to_dict(),
        task_options=_options_dict(options),
    )
    config_hash = config.sha256()
    out = _prepare_out_dir(Path(out_dir), config_hash, overwrite)

    jobs = [(family, seed, split) for family in families for seed in seeds]  # sorted by (family, seed)
    if executor is None:
        executor = LocalExecutor(min(workers or available_cores(), len(jobs)))
    start = time.perf_counter()
    shards, buffer, skipped = [], [], []
    counts = {f: {"episodes": 0, "successes": 0} for f in families}
    with tqdm(total=len(jobs), desc=f"generate {split}", unit="ep", disable=not progress) as bar:
        for record in _records(jobs, config, executor, batch_size):
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
        "seed_start": seeds[0],
        "seeds": {f: seeds for f in families},
        "skipped": skipped,
        "config": config.to_dict(),
        "config_hash": config_hash,
        "shards": shards,
        "bytes": sum(s["bytes"] for s in shards),
        "code_version": code_version(),
        "workers": executor.last_run.workers,
        "executor": executor.describe(),
        "wall_time_s": round(elapsed, 3),
        "episodes_per_s": round(len(jobs) / elapsed, 3),  # attempted episodes, skipped ones included
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    logger.info("wrote %d episodes (%d skipped) in %d shards to %s at %.2f episodes/s", episodes, len(skipped),
                len(shards), out, len(jobs) / elapsed)
    return manifest


def _options_dict(options: TaskOptions) -> dict:
    """TaskOptions as stored in the config; an unset phrasing_set is left out, so datasets made before the field
    existed keep their config hash (and training caches keyed by it)."""
    d = _jsonable(asdict(options))
    if d.get("phrasing_set") is None:
        d.pop("phrasing_set", None)
    return d


def _jsonable(value):
    """Tuples become lists, as they come back from JSON (so the hash and the stored config agree)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


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
