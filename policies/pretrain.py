"""The protocol's two compute-matched encoders (``policies/protocol.yaml``: ``encoders``, ``motion_pretraining``),
made by one resumable command:

    molmomotion experiment pretrain --protocol policies/protocol.yaml --out results/protocol-encoders

Into ``out``:

  data/train/, data/validation/   the pretraining scenes: oracle episodes of ``motion_pretraining.families`` (push
                                  held out) from its seed ranges (``generate_dataset(seed_start=...)``)
  stage1.pt                       stage 1, shared: grounding from a random init (``train --model base``)
  fm_v2.pt                        stage 2: grounding + FM motion forecasting from stage1.pt (``--model fm``)
  base_matched.pt                 stage 2: grounding + the pool objective from stage1.pt (``--model base-pool``):
                                  the same data, batch size, step count and data order as fm_v2's
  pretrain.json                   the plan, and per stage its seeds or steps, losses and wall time

The policy reads the two stage-2 checkpoints by name from ``out`` (``ExperimentConfig.encoders_dir``,
``PolicyConfig.for_variant(..., encoders_dir=out)``). A second call skips every finished stage (a training stage
killed part-way resumes from its ``.state``); a folder made under another plan is refused. ``PretrainSettings``
overrides (fewer episodes or steps, for tests) are recorded as such: such encoders are not the protocol's.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from .files import file_sha256, read_json, write_json
from .protocol import Protocol

log = logging.getLogger(__name__)

SUMMARY = "pretrain.json"
PLAN_SCHEMA = 1
STAGE1 = "stage1"
# The protocol's encoders → the training kind of their second stage (molmomotion train --model KIND).
STAGE2_KINDS = {"fm_v2": "fm", "base_matched": "base-pool"}
# A word each encoder's stage-2 objective must name in the protocol, so an amended objective is not run as the old one.
STAGE2_OBJECTIVES = {"fm_v2": "motion forecasting", "base_matched": "pool"}
TRAIN_SEED = 0  # initialisation, data order and noise of every stage: both stage 2s see the same batches
LEARNING_RATE = 1e-3  # molmomotion train's default, as the shipped encoders were trained
OPTIONS_SUITE = "main"  # whose task options the scenes use (held-out ood combinations excluded), as generate-data


class PretrainError(ValueError):
    """The protocol does not describe two compute-matched two-stage encoders, a setting is out of range, or the output
    folder holds a pretraining made under another plan."""


@dataclass(frozen=True)
class PretrainSettings:
    """Overrides of the protocol's numbers, for tests and smoke runs (None: the protocol's). Episodes are a prefix of
    the protocol's seed ranges."""

    train_episodes: int | None = None  # per family
    val_episodes: int | None = None  # per family
    stage1_steps: int | None = None
    stage2_steps: int | None = None
    val_every: int = 500  # validation loss (and the resumable snapshot) every this many steps
    workers: int | None = None  # scene generation (default: every core)
    device: str = "auto"  # training: auto | cpu | cuda

    def overrides(self) -> dict:
        return {k: v for k, v in asdict(self).items()
                if k in ("train_episodes", "val_episodes", "stage1_steps", "stage2_steps") and v is not None}


@dataclass
class PretrainResult:
    summary: dict
    encoders: dict[str, Path]  # fm_v2, base_matched → checkpoint
    ran: list[str]  # stages run by this call (the others were skipped)


# --- the plan --------------------------------------------------------------------------------------------
def pretraining_plan(protocol: Protocol, settings: PretrainSettings = PretrainSettings()) -> dict:
    """What the pretraining does, from the protocol and the overrides: data seeds, stages (kind, init, steps), batch
    size. Checked: both encoders share stage 1 and have the same stage-2 step count (compute-matched)."""
    encoders = protocol.raw["encoders"]
    stages = {}
    for name in STAGE2_KINDS:
        if name not in encoders:
            raise PretrainError(f"the protocol declares no encoder {name!r} (encoders: {', '.join(encoders)})")
        spec = encoders[name].get("stages") if isinstance(encoders[name], dict) else None
        if not isinstance(spec, list) or len(spec) != 2 or not all(isinstance(s, dict) for s in spec):
            raise PretrainError(f"encoders.{name}.stages: expected two stages (grounding, then its objective)")
        first, second = spec
        if first.get("objective") != "grounding" or first.get("init") != "random":
            raise PretrainError(f"encoders.{name}.stages[0]: stage 1 is grounding from a random init, got {first}")
        if second.get("init") != "previous stage" or STAGE2_OBJECTIVES[name] not in str(second.get("objective")):
            raise PretrainError(f"encoders.{name}.stages[1]: expected grounding + {STAGE2_OBJECTIVES[name]} from the "
                                f"previous stage, got {second}")
        stages[name] = (_steps(first, f"encoders.{name}.stages[0]"), _steps(second, f"encoders.{name}.stages[1]"))
    (fm1, fm2), (base1, base2) = stages["fm_v2"], stages["base_matched"]
    if fm1 != base1 or fm2 != base2:
        raise PretrainError(f"the encoders are not compute-matched: fm_v2 trains {fm1} + {fm2} steps, base_matched "
                            f"{base1} + {base2}")
    scenes, validation = protocol.motion_pretraining["scenes"], protocol.motion_pretraining["validation"]
    train_count = _override(settings.train_episodes, scenes.count, "train_episodes")
    val_count = _override(settings.val_episodes, validation.count, "val_episodes")
    stage1_steps = _override(settings.stage1_steps, fm1, "stage1_steps")
    stage2_steps = _override(settings.stage2_steps, fm2, "stage2_steps")
    batch_size = protocol.raw["motion_pretraining"].get("batch_size", 32)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise PretrainError(f"motion_pretraining.batch_size: expected a positive whole number, got {batch_size!r}")
    families = list(protocol.pretraining_families)
    return {
        "schema": PLAN_SCHEMA,
        "families": families,
        "data": {
            "train": {"split": scenes.split, "seed_start": scenes.start, "episodes_per_family": train_count},
            "validation": {"split": validation.split, "seed_start": validation.start,
                           "episodes_per_family": val_count},
        },
        "options_suite": OPTIONS_SUITE,
        "batch_size": batch_size,
        "lr": LEARNING_RATE,
        "seed": TRAIN_SEED,
        "stages": {
            STAGE1: {"kind": "base", "init": None, "steps": stage1_steps},
            "fm_v2": {"kind": STAGE2_KINDS["fm_v2"], "init": STAGE1, "steps": stage2_steps},
            "base_matched": {"kind": STAGE2_KINDS["base_matched"], "init": STAGE1, "steps": stage2_steps},
        },
    }


def _steps(stage: dict, key: str) -> int:
    steps = stage.get("steps")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise PretrainError(f"{key}.steps: expected a positive whole number, got {steps!r}")
    return steps


def _override(value: int | None, default: int, name: str) -> int:
    if value is None:
        return default
    if value < 1:
        raise PretrainError(f"{name} must be positive, got {value}")
    if name.endswith("episodes") and value > default:
        raise PretrainError(f"{name}: the protocol declares {default} seeds per family, asked for {value}")
    return value


# --- the run ---------------------------------------------------------------------------------------------
def run_pretraining(protocol: Protocol, out_dir: str | Path, settings: PretrainSettings = PretrainSettings(),
                    progress: bool = True, echo: Callable[[str], None] | None = None) -> PretrainResult:
    """Make (or finish) both encoders in ``out_dir``; see the module docstring. ``echo`` gets a line per stage."""
    from tqdm import tqdm

    say = echo or log.info
    plan = pretraining_plan(protocol, settings)
    out = Path(out_dir).expanduser().resolve()
    summary_path = out / SUMMARY
    previous = read_json(summary_path)
    if previous is not None and previous.get("plan") != plan:
        raise PretrainError(f"{out} holds a pretraining made under another plan (protocol numbers or overrides); "
                            "choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    records: dict = dict((previous or {}).get("stages", {}))
    overrides = settings.overrides()
    summary = {"plan": plan, "protocol": {"path": str(protocol.path), "version": protocol.version,
                                          "sha256": protocol.sha256},
               "protocol_settings": not overrides, "overrides": overrides, "stages": records}
    if overrides:
        say(f"overrides {overrides}: these encoders are not the protocol's")
    data_dirs = {part: out / "data" / part for part in ("train", "validation")}
    stage_names = [*(f"data-{part}" for part in data_dirs), *plan["stages"]]
    ran: list[str] = []
    started = time.perf_counter()
    with tqdm(total=len(stage_names), desc="pretrain", unit="stage", disable=not progress, dynamic_ncols=True) as bar:
        for part, folder in data_dirs.items():
            name = f"data-{part}"
            bar.set_postfix_str(name)
            spec = plan["data"][part]
            manifest = _finished_dataset(folder, plan["families"], spec)
            if manifest is not None:
                records.setdefault(name, _data_record(folder, manifest, None))  # None: made before this summary
                say(f"{name}: skipped (done: {folder})")
            else:
                records[name] = _generate(folder, plan["families"], spec, settings, progress)
                ran.append(name)
                say(f"{name}: {records[name]['episodes']} episodes in {records[name]['wall_s']:.0f} s")
                write_json(summary_path, summary)
            bar.update()
        for name, stage in plan["stages"].items():
            bar.set_postfix_str(name)
            checkpoint = out / f"{name}.pt"
            if checkpoint.is_file() and name in records:
                say(f"{name}: skipped (done: {checkpoint})")
            else:
                init = out / f"{stage['init']}.pt" if stage["init"] else None
                records[name] = _train_stage(name, stage, plan, checkpoint, init, data_dirs, settings, progress)
                ran.append(name)
                say(f"{name}: {stage['steps']} steps in {records[name]['wall_s']:.0f} s, final "
                    f"{_losses(records[name]['final'])}")
                write_json(summary_path, summary)
            bar.update()
    summary["last_call"] = {"ran": ran, "skipped": [s for s in stage_names if s not in ran],
                            "wall_s": round(time.perf_counter() - started, 3)}
    summary["encoders"] = {name: {"path": str(out / f"{name}.pt"), "sha256": file_sha256(out / f"{name}.pt")}
                           for name in STAGE2_KINDS}
    write_json(summary_path, summary)
    return PretrainResult(summary, {name: out / f"{name}.pt" for name in STAGE2_KINDS}, ran)


def _finished_dataset(folder: Path, families: list[str], spec: dict) -> dict | None:
    """The dataset's manifest when it is there, readable, and names exactly the planned seeds of every family."""
    from molmomotion_ros.motion_data import DatasetError, load_manifest
    from molmomotion_sim.seeds import seeds_from

    try:
        manifest = load_manifest(folder)
    except DatasetError:
        return None
    seeds = seeds_from(spec["split"], spec["seed_start"], spec["episodes_per_family"])
    if manifest.get("split") != spec["split"] or manifest.get("seeds") != {f: seeds for f in families}:
        return None
    return manifest


def _generate(folder: Path, families: list[str], spec: dict, settings: PretrainSettings, progress: bool) -> dict:
    from molmomotion_sim.dataset import generate_dataset
    from molmomotion_sim.suites import load_suite

    options = {f.family: f.options for f in load_suite(OPTIONS_SUITE).families}
    chosen = {options[f] for f in families}
    if len(chosen) != 1:
        raise PretrainError(f"suite {OPTIONS_SUITE!r} gives {', '.join(families)} different task options")
    started = time.perf_counter()
    # The folder is this pretraining's own: a generation killed part-way left shards without a manifest.
    manifest = generate_dataset(spec["split"], spec["episodes_per_family"], folder, families=families,
                                options=chosen.pop(), seed_start=spec["seed_start"], workers=settings.workers,
                                progress=progress, overwrite=True)
    return _data_record(folder, manifest, time.perf_counter() - started)


def _data_record(folder: Path, manifest: dict, wall_s: float | None) -> dict:
    families = manifest["families"]
    seeds = manifest["seeds"][families[0]]
    return {"folder": str(folder), "split": manifest["split"], "families": families, "first_seed": seeds[0],
            "last_seed": seeds[-1], "episodes_per_family": len(seeds), "episodes": manifest["episodes"],
            "successes": manifest["successes"], "skipped": len(manifest["skipped"]),
            "manifest_hash": manifest["config_hash"], "wall_s": None if wall_s is None else round(wall_s, 3)}


def _train_stage(name: str, stage: dict, plan: dict, checkpoint: Path, init: Path | None, data_dirs: dict,
                 settings: PretrainSettings, progress: bool) -> dict:
    from molmomotion_ros.forecasting.checkpoint import load_checkpoint
    from molmomotion_ros.forecasting.training import train

    if init is not None and not init.is_file():
        raise PretrainError(f"{name} starts from {init}, which is missing")
    started = time.perf_counter()
    train(stage["kind"], data_dirs["train"], checkpoint, stage["steps"], val_dir=data_dirs["validation"], init=init,
          batch_size=plan["batch_size"], lr=plan["lr"], seed=plan["seed"], val_every=settings.val_every,
          device=settings.device, progress=progress)
    wall = time.perf_counter() - started
    _, meta = load_checkpoint(checkpoint)
    history = meta.get("history", [])
    return {"kind": stage["kind"], "init": str(init) if init else None, "steps": stage["steps"],
            "batch_size": plan["batch_size"], "lr": plan["lr"], "seed": plan["seed"],
            "train_episodes": meta.get("train_episodes"), "history": history, "final": history[-1] if history else {},
            "checkpoint": str(checkpoint), "sha256": file_sha256(checkpoint), "wall_s": round(wall, 3)}


def _losses(row: dict) -> str:
    return ", ".join(f"{k} {row[k]:.4g}" for k in ("train_loss", "val_loss") if k in row)
