"""The forecaster model commands on generated datasets: ``train`` (fit base/fm/ar) and ``eval-forecast`` (score them).

torch and the models load inside the handlers only, after the cheap input checks.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import reforecast
from .common import (
    PROG,
    RUNTIME_ERROR,
    UsageError,
    check_writable,
    name_list,
    non_negative_int,
    positive_float,
    positive_int,
    quiet_model_loading,
)
from .execution import add_arguments as add_execution_arguments
from .execution import executor_from_args, worker_lost


def add_parsers(commands) -> None:
    """Add ``train`` and ``eval-forecast`` to the ``molmomotion`` subcommands."""
    train = commands.add_parser(
        "train", help="train the base grounding encoder or an fm/ar forecaster on a generated dataset",
        description="Train a model on a dataset from `molmomotion generate-data`; resumable from <out>.state.",
    )
    train.add_argument("--model", choices=("base", "fm", "ar", "base-pool"), required=True,
                       help="base: the grounding encoder; fm / ar: a trajectory head (start them from --init base.pt); "
                       "base-pool: grounding + the pool objective (the global feature regressed to the target and goal "
                       "positions; the protocol's compute-matched base), from --init, saved as a base checkpoint")
    train.add_argument("--data", type=Path, required=True, metavar="DIR", help="training dataset folder")
    train.add_argument("--val", type=Path, metavar="DIR", help="validation dataset folder (loss every --val-every)")
    train.add_argument("--steps", type=positive_int, required=True, metavar="N", help="optimiser steps")
    train.add_argument("--batch-size", type=positive_int, default=32, metavar="B",
                       help="episodes per step (default: %(default)s)")
    train.add_argument("--lr", type=positive_float, default=1e-3, metavar="LR",
                       help="peak learning rate of the cosine schedule (default: %(default)s)")
    train.add_argument("--seed", type=non_negative_int, default=0, metavar="N",
                       help="seed of initialisation, data order and noise (default: %(default)s)")
    train.add_argument("--init", type=Path, metavar="PT", help="checkpoint whose encoder starts the model")
    train.add_argument("--out", type=Path, metavar="PT",
                       help="checkpoint to write (default: molmomotion_ros/checkpoints/<model>.pt)")
    train.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                       help="where to train (default: %(default)s: cuda when available)")
    train.add_argument("--val-every", type=positive_int, default=500, metavar="N",
                       help="steps between validation losses and resumable snapshots (default: %(default)s)")
    train.add_argument("--stride", type=positive_int, default=2, metavar="S",
                       help="frames of the 15 fps track between forecast steps (default: %(default)s)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser(
        "eval-forecast", help="score forecasters on a generated split (ADE, FDE, PWT, rigidity)",
        description="Run every backend on a generated dataset's episodes; print a table, write JSON and overlays.",
    )
    evaluate.add_argument("--models", type=name_list, default=["fm", "ar", "stationary", "constant-velocity"],
                          metavar="A,B", help="comma-separated forecaster backends "
                          "(default: fm,ar,stationary,constant-velocity)")
    evaluate.add_argument("--split", choices=("validation", "test", "ood"), default="test",
                          help="which split's dataset to score (default: %(default)s)")
    evaluate.add_argument("--data", type=Path, metavar="DIR", help="dataset folder (default: data/<split>)")
    evaluate.add_argument("--episodes", type=positive_int, metavar="N",
                          help="episodes per family (default: all of them)")
    evaluate.add_argument("--samples", type=positive_int, default=8, metavar="K",
                          help="hypotheses per forecast for the best-of-K metrics (default: %(default)s)")
    evaluate.add_argument("--phrasings", metavar="SET",
                          help="re-phrase every episode's instruction from this phrasing set before forecasting: a "
                          "name in config/phrasings (heldout, heldout2, heldout3: the held-out language tests) or "
                          "a YAML file (default: the dataset's own instructions)")
    evaluate.add_argument("--instruction-parser", action="store_true",
                          help="read each instruction with the instruction parser first, as the nodes do: models get "
                          "its template phrasing, a refused instruction counts as 'refused' (default: off, the raw "
                          "text, as before)")
    evaluate.add_argument("--out", type=Path, metavar="DIR",
                          help="output folder (default: results/forecast-<split>, or "
                          "results/forecast-<split>-phrasings-<set> with --phrasings; -parser appended with "
                          "--instruction-parser)")
    evaluate.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    evaluate.add_argument("--workers", type=positive_int, metavar="N",
                          help="parallel workers, each with every backend loaded (default: the CPU count, "
                          f"{os.cpu_count() or 1}; with --executor ray, as many as the cluster holds); a dataset "
                          "folder every worker reaches")
    add_execution_arguments(evaluate)
    recording = evaluate.add_argument_group(
        "on a recording", "--bag BAG scores the backends on a sim recording instead of a dataset: each forecast "
        "request in the bag (see --frames), forecast as forecaster_node does, against the recording's "
        "sim/ground_truth; K=1 is each forecast's best hypothesis (what the node publishes)")
    recording.add_argument("--bag", type=Path, metavar="BAG", help="a recorded bag (folder or .mcap file) with "
                           "sim/ground_truth (sim_eval's --record, sim-eval --record)")
    reforecast.add_recording_arguments(recording, sampling=False)
    evaluate.set_defaults(handler=_eval_forecast)


# --- train -------------------------------------------------------------------------------------
def _train(args: argparse.Namespace) -> int:
    for flag, folder in (("--data", args.data), ("--val", args.val)):
        if folder is not None and not folder.is_dir():
            raise UsageError(f"{flag}: no dataset folder {str(folder)!r} (make one with molmomotion generate-data)")
    if args.init is not None and not args.init.is_file():
        raise UsageError(f"--init: no checkpoint {str(args.init)!r}")
    if args.out is not None and args.out.is_dir():
        raise UsageError(f"--out {str(args.out)!r} is a folder; give a checkpoint file path")

    quiet_model_loading()
    from molmomotion_ros.forecasting.predictor import resolve_device, shipped_checkpoint
    from molmomotion_ros.forecasting.training import train

    resolve_device(args.device)  # BackendUnavailableError for cuda without a GPU
    out = args.out or shipped_checkpoint(args.model)
    check_writable(out.parent, what="checkpoint folder")
    start = time.perf_counter()
    final = train(args.model, args.data, out, args.steps, val_dir=args.val, init=args.init,
                  batch_size=args.batch_size, lr=args.lr, seed=args.seed, val_every=args.val_every,
                  device=args.device, progress=not args.no_progress, stride=args.stride)
    summary = ", ".join(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                        for key, value in final.items())
    print(f"{args.model}: {args.steps} steps in {time.perf_counter() - start:.0f} s; {summary}")
    print(f"checkpoint: {out}")
    return 0


# --- eval-forecast -----------------------------------------------------------------------------
def _eval_forecast(args: argparse.Namespace) -> int:
    if args.bag is not None:
        if args.data is not None or args.phrasings is not None or args.episodes is not None:
            raise UsageError("--bag scores a recording: --data, --phrasings and --episodes apply to datasets")
        given = [flag for flag, value, default in (
            ("--workers", args.workers, None), ("--executor", args.executor, "local"),
            ("--ray-address", args.ray_address, None), ("--batch-size", args.batch_size, None),
            ("--cpus-per-worker", args.cpus_per_worker, 1.0), ("--gpus-per-worker", args.gpus_per_worker, 0.0))
            if value != default]
        if given:
            raise UsageError(f"--bag scores a recording in this process: {', '.join(given)} apply to datasets")
        return reforecast.eval_forecast_bag(args)
    data_dir = args.data or Path("data") / args.split
    if not data_dir.is_dir():
        raise UsageError(f"no dataset folder {str(data_dir)!r}; make one with `molmomotion generate-data --split "
                         f"{args.split} --out {data_dir}` or give --data")
    phrasing_set = None
    if args.phrasings is not None:  # a bad set, or a held-out one on validation data, fails before anything is made
        from molmomotion_ros.motion_data import load_manifest
        from molmomotion_ros.phrasings import check_split_allowed, load_phrasing_set

        phrasing_set = load_phrasing_set(args.phrasings)
        check_split_allowed(phrasing_set, load_manifest(data_dir).get("split", ""))
    suffix = f"-phrasings-{phrasing_set.name}" if phrasing_set else ""
    suffix += "-parser" if args.instruction_parser else ""
    out = args.out or Path("results") / f"forecast-{args.split}{suffix}"
    check_writable(out, what="output folder")
    executor = executor_from_args(args, default_workers=os.cpu_count() or 1)

    quiet_model_loading()
    from molmomotion_ros.forecasting import baselines, interface, predictor  # noqa: F401  (they register backends)

    unknown = [name for name in args.models if name not in interface.BACKENDS]
    if unknown:
        raise UsageError(f"unknown forecaster {unknown[0]!r}; choose from {', '.join(sorted(interface.BACKENDS))}")
    try:
        from molmomotion_ros.execution import WorkerLostError
        from molmomotion_ros.forecasting.evaluation import evaluate_forecasters
        from molmomotion_ros.language import instruction_for_model
    except ImportError as err:
        print(f"{PROG}: error: forecast evaluation is unavailable: {err}", file=sys.stderr)
        return RUNTIME_ERROR

    try:
        evaluate_forecasters(data_dir, args.models, out, num_samples=args.samples, episodes_per_family=args.episodes,
                             progress=not args.no_progress, phrasings=args.phrasings,
                             read_instruction=instruction_for_model if args.instruction_parser else None,
                             executor=executor, batch_size=args.batch_size)
    except WorkerLostError as err:
        return worker_lost(err)
    print(f"results: {out}")
    return 0
