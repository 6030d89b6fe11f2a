"""The PyBullet harness commands: ``sim-eval`` (an agent on a task suite) and ``generate-data`` (oracle datasets).

PyBullet and the harness modules load inside the handlers only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .common import (
    PROG,
    RUNTIME_ERROR,
    USAGE_ERROR,
    UsageError,
    check_writable,
    family_list,
    key_value,
    non_negative_int,
    positive_float,
    positive_int,
)
from .execution import add_arguments as add_execution_arguments
from .execution import executor_from_args, worker_lost

HISTORY_RANGE = (1, 3)  # past frames a dataset sample may carry


def add_parsers(commands) -> None:
    """Add ``sim-eval`` and ``generate-data`` to the ``molmomotion`` subcommands."""
    sim_eval = commands.add_parser(
        "sim-eval", help="evaluate an agent on a task suite in the PyBullet harness",
        description="Run every episode of a suite with an agent in parallel workers; print a success table "
        "and write per-episode JSON.",
    )
    sim_eval.add_argument("--agent", default="oracle", help="agent name from molmomotion_sim.agents.AGENTS "
                          "(default: oracle)")
    sim_eval.add_argument("--agent-arg", dest="agent_args", action="append", type=key_value, default=[],
                          metavar="KEY=VALUE", help="keyword argument for the agent's constructor (YAML value); "
                          "repeatable")
    sim_eval.add_argument("--suite", default="main", help="suite YAML file, or the name of a shipped suite in "
                          "config/suites (main, smoke, ood, heldout_language, heldout2_language, "
                          "heldout3_language; default: main)")
    sim_eval.add_argument("--episodes", type=positive_int, metavar="N",
                          help="episodes per family, overriding the suite's counts")
    sim_eval.add_argument("--phrasings", metavar="SET",
                          help="phrase every instruction from this phrasing set instead of the suite's source: a "
                          "name in config/phrasings (heldout, heldout2, heldout3: the held-out language tests) "
                          "or a YAML file; the scenes stay the same and the suite is renamed <suite>-phrasings-<set>")
    sim_eval.add_argument("--families", type=family_list, metavar="A,B",
                          help="comma-separated families of the suite to run (default: all of them)")
    sim_eval.add_argument("--workers", type=positive_int, metavar="N",
                          help="parallel workers, one PyBullet world and agent each (default: the CPU count, "
                          f"{os.cpu_count() or 1}; with --executor ray, as many as the cluster holds)")
    add_execution_arguments(sim_eval)
    sim_eval.add_argument("--out", type=Path, metavar="PATH",
                          help="results JSON (default: results/eval-<suite>-<agent>.json)")
    sim_eval.add_argument("--contact-sheet", type=non_negative_int, default=0, metavar="N",
                          help="also save a PNG (next to --out) with the first and last frames of N episodes")
    sim_eval.add_argument("--record", type=Path, metavar="DIR",
                          help="write one rosbag2 bag (MCAP) per episode to DIR/<suite>-<family>-<seed>/ (as "
                          "`launch sim_eval --record` names them), with the topics the sim_eval graph publishes: "
                          "camera colour, depth, camera_info and pose (--record-rate, plus every frame an agent "
                          "acted on), joint_states, /clock, /tf_static, instruction, sim/episode, sim/ground_truth, "
                          "and a planner agent's forecasts (forecast/trajectory, hypotheses, scores, goal_pose); "
                          "stamps are simulated time. Each episode's folder must be new or empty; replay one with "
                          "`molmomotion play`, score a folder with `eval-forecast --bag DIR`")
    sim_eval.add_argument("--record-rate", type=positive_float, default=15.0, metavar="HZ",
                          help="camera frames per second of simulated time in --record bags (default: %(default)s)")
    sim_eval.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    sim_eval.set_defaults(handler=_sim_eval)

    generate = commands.add_parser(
        "generate-data", help="record oracle demonstrations as a motion-forecasting dataset",
        description="Run the oracle on a seed split and cut its 15 fps traces into forecasting samples.",
    )
    generate.add_argument("--split", default="train", help="seed split: train, validation, test or ood "
                          "(default: train)")
    generate.add_argument("--episodes", type=positive_int, default=100, metavar="N",
                          help="episodes per family (default: %(default)s)")
    generate.add_argument("--seed-start", type=non_negative_int, metavar="SEED",
                          help="first seed (a seed of --split, e.g. 50000 for the protocol's pretraining scenes); the "
                          "--episodes seeds from it must stay inside the split (default: the split's first seed)")
    generate.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder for the dataset")
    generate.add_argument("--families", type=family_list, metavar="A,B",
                          help="comma-separated task families (default: all registered)")
    generate.add_argument("--history", type=int, default=1, metavar="H",
                          help=f"past frames per sample, {HISTORY_RANGE[0]}..{HISTORY_RANGE[1]} (default: %(default)s)")
    generate.add_argument("--horizon", type=positive_int, default=32, metavar="F",
                          help="future frames forecast per sample, at 15 fps (default: %(default)s)")
    generate.add_argument("--workers", type=positive_int, metavar="N",
                          help=f"parallel workers (default: the CPU count, {os.cpu_count() or 1}; with --executor "
                          "ray, as many as the cluster holds)")
    add_execution_arguments(generate)
    generate.add_argument("--options-suite", metavar="SUITE",
                          help="draw scenes with this suite's task options (default: ood for the ood split, main "
                          "otherwise, so training targets never use the ood suite's held-out combinations); "
                          "'none' for the TaskOptions defaults")
    generate.add_argument("--overwrite", action="store_true",
                          help="replace a dataset with another configuration in --out")
    generate.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    generate.set_defaults(handler=_generate_data)


# --- sim-eval ----------------------------------------------------------------------------------
def _sim_eval(args: argparse.Namespace) -> int:
    from molmomotion_ros.execution import WorkerLostError
    from molmomotion_sim import evaluation
    from molmomotion_sim.agents import AGENTS
    from molmomotion_sim.suites import load_suite

    if args.agent not in AGENTS:
        raise UsageError(f"unknown agent {args.agent!r}; choose from {', '.join(sorted(AGENTS))}")
    suite = load_suite(args.suite)
    if args.families is not None or args.episodes is not None:
        suite = suite.select(families=args.families, episodes_per_family=args.episodes)
    if args.phrasings is not None:
        suite = suite.with_phrasing_set(args.phrasings)
    executor = executor_from_args(args, default_workers=os.cpu_count() or 1)
    out = args.out or Path("results") / f"eval-{suite.name}-{args.agent}.json"
    check_writable(out.parent, what="output folder")
    if out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a folder; give a file path")

    agent_kwargs = dict(args.agent_args)
    record = None
    if args.record is not None:
        from molmomotion_sim.episode_bags import BagOptions

        record = BagOptions(args.record, suite.name, camera_rate_hz=args.record_rate)
    start = time.perf_counter()
    try:
        results = evaluation.evaluate(suite, args.agent, agent_kwargs, progress=not args.no_progress,
                                      record=record, executor=executor)
    except WorkerLostError as err:
        return worker_lost(err)
    except Exception as err:
        if record is None or not _is_bag_error(err):
            raise
        print(f"{PROG}: error: {' '.join(str(err).split())}", file=sys.stderr)  # a full disk, a folder not empty
        return USAGE_ERROR
    wall_time_s = time.perf_counter() - start
    meta = {
        "agent": args.agent,
        "agent_kwargs": agent_kwargs,
        "model_id": ",".join(sorted({r.model_id for r in results if r.model_id})),
        "suite": suite.name,
        "suite_file": suite.source,
        "split": suite.split,
        "phrasings": _phrasing_sources(suite),
        "workers": executor.last_run.workers,
        "executor": executor.describe(),
        "episodes": len(results),
        "wall_time_s": round(wall_time_s, 3),
    }
    if record is not None:
        meta["record"] = {"dir": str(args.record), "camera_rate_hz": record.camera_rate_hz}
    evaluation.write_results(out, results, meta)
    print(evaluation.format_table(evaluation.summarize(results)))
    print(f"{len(results)} episodes in {wall_time_s:.1f} s; results: {out}")
    if record is not None:
        print(f"bags: {len(results)} in {args.record}, one per episode ({Path(results[0].bag).name}, ...)")
    if args.contact_sheet:
        sheet = out.with_suffix(".png")
        episodes = evaluation.spread_over_families(suite.episodes(), args.contact_sheet)
        evaluation.contact_sheet(sheet, episodes, args.agent, agent_kwargs)
        print(f"contact sheet: {sheet}")
    return 0


def _is_bag_error(err: Exception) -> bool:
    from molmomotion_ros.bags import BagError

    return isinstance(err, BagError)


def _phrasing_sources(suite) -> dict:
    """Family → where its instructions came from: a phrasing set's name/source/held_out, or the vocabulary."""
    from molmomotion_ros.phrasings import load_phrasing_set

    return {f.family: load_phrasing_set(f.options.phrasing_set).describe() if f.options.phrasing_set
            else {"name": "vocabulary", "source": "config/vocabulary.yaml", "held_out": False}
            for f in suite.families}


# --- generate-data -----------------------------------------------------------------------------
def _generate_data(args: argparse.Namespace) -> int:
    from molmomotion_sim.seeds import SPLITS, seeds_from
    from molmomotion_sim.tasks import TASKS

    if args.split not in SPLITS:
        raise UsageError(f"unknown split {args.split!r}; choose from {', '.join(SPLITS)}")
    seed_start = SPLITS[args.split].start if args.seed_start is None else args.seed_start
    seeds_from(args.split, seed_start, args.episodes)  # SeedRangeError outside the split
    families = args.families or sorted(TASKS)
    for family in families:
        if family not in TASKS:
            raise UsageError(f"unknown family {family!r}; choose from {', '.join(sorted(TASKS))}")
    lo, hi = HISTORY_RANGE
    if not lo <= args.history <= hi:
        raise UsageError(f"--history must be in {lo}..{hi}, got {args.history}")
    executor = executor_from_args(args, default_workers=os.cpu_count() or 1)
    options = _suite_task_options(args.options_suite or ("ood" if args.split == "ood" else "main"), families)
    if options is not None and options.phrasing_set is not None:
        from molmomotion_ros.phrasings import check_split_allowed, load_phrasing_set

        check_split_allowed(load_phrasing_set(options.phrasing_set), args.split)  # before the folder is made
    check_writable(args.out, what="output folder")
    try:
        from molmomotion_sim.dataset import generate_dataset
    except ImportError as err:
        print(f"{PROG}: error: dataset generation is unavailable: {err}", file=sys.stderr)
        return RUNTIME_ERROR

    from molmomotion_ros.execution import WorkerLostError

    try:
        manifest = generate_dataset(
            split=args.split, episodes_per_family=args.episodes, out_dir=args.out, families=families,
            history=args.history, horizon=args.horizon, progress=not args.no_progress,
            options=options, overwrite=args.overwrite, executor=executor, seed_start=seed_start,
        )
    except WorkerLostError as err:
        return worker_lost(err)
    for key, value in manifest.items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            print(f"{key}: {value}")
    print(f"dataset: {args.out}")
    return 0


def _suite_task_options(suite_name: str, families: list[str]):
    """The one TaskOptions a suite gives ``families`` (None for 'none'); a UsageError if they differ."""
    if suite_name == "none":
        return None
    from molmomotion_sim.suites import load_suite

    suite = load_suite(suite_name)
    by_family = {f.family: f.options for f in suite.families}
    chosen = {by_family[f] for f in families if f in by_family}
    if len(chosen) != 1:
        raise UsageError(f"suite {suite.name!r} does not give one set of task options to {', '.join(families)}; "
                         "choose another --options-suite")
    return chosen.pop()
