"""``molmomotion experiment success-rate``, ``report``, ``pretrain`` and ``protocol``: the policy experiment's command
line.

``add_parser(commands)`` adds the ``experiment`` command to the ``molmomotion`` parser's
subcommands; its handler returns the exit status, as every molmomotion handler does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from molmomotion_ros.execution import add_arguments as add_execution_arguments

from .observation import PolicyError


def _csv(kind):
    def parse(text: str) -> tuple:
        try:
            values = tuple(kind(x) for x in text.split(",") if x.strip())
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"expected comma-separated values: {err}") from None
        if not values:
            raise argparse.ArgumentTypeError("expected at least one value")
        return values

    return parse


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def add_parser(commands) -> argparse.ArgumentParser:
    """Register ``experiment success-rate`` under ``commands`` (an argparse subparsers object)."""
    from .demos import FAMILIES
    from .experiment import ExperimentConfig

    defaults = ExperimentConfig()
    experiment = commands.add_parser("experiment", help="policy experiments (issue 6)",
                                     description="Train and evaluate goal-conditioned BC policies.")
    kinds = experiment.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    sr = kinds.add_parser(
        "success-rate", help="success vs training steps of policy variants A (fm encoder), B (base), "
        "C (A + forecast), D (scratch)",
        description="Record oracle demonstrations, train each variant with checkpoints on the step grid, "
        "evaluate every checkpoint on test seeds of every family; write JSON, a markdown table and PNGs. The "
        "independent tasks (demonstrations, encodings, one training run per variant and seed, the test episodes) "
        "run on local worker processes or a Ray cluster (--executor); each cell (variant, seed, step) is written "
        "as soon as it is done, and --resume continues a folder from the cells it holds.")
    sr.add_argument("--variants", type=_csv(str), default=defaults.variants, metavar="A,B",
                    help="variants to run (default: %(default)s)")
    sr.add_argument("--steps", type=_csv(_positive), default=defaults.steps, metavar="N,N",
                    help="training steps at which to checkpoint and evaluate (default: %(default)s)")
    sr.add_argument("--episodes", type=_positive, default=defaults.episodes_per_family, metavar="N",
                    help="test episodes per family per checkpoint (default: %(default)s)")
    sr.add_argument("--seeds", type=_positive, default=defaults.seeds, metavar="S",
                    help="training seeds 0..S-1 per variant (default: %(default)s)")
    sr.add_argument("--families", type=_csv(str), default=FAMILIES, metavar="F,F",
                    help="task families (default: all)")
    sr.add_argument("--train-episodes", type=_positive, default=defaults.train_episodes_per_family, metavar="N",
                    help="oracle demonstrations per family from train seeds (default: %(default)s)")
    sr.add_argument("--val-episodes", type=_positive, default=defaults.val_episodes_per_family, metavar="N",
                    help="oracle demonstrations per family from validation seeds (default: %(default)s)")
    sr.add_argument("--frames-every", type=_positive, default=defaults.frames_every, metavar="N",
                    help="15 fps trace samples between the demonstrations' frames (default: %(default)s)")
    sr.add_argument("--batch-size", type=_positive, default=defaults.batch_size, help="(default: %(default)s)")
    sr.add_argument("--lr", type=float, default=defaults.lr, help="AdamW learning rate (default: %(default)s)")
    sr.add_argument("--finetune", choices=("none", "post_trunk"), default=defaults.finetune,
                    help="train the encoder's layers after its CNN trunk with the head (post_trunk) or keep the "
                    "encoder frozen (default: %(default)s)")
    sr.add_argument("--encoder-lr", type=float, default=defaults.encoder_lr,
                    help="AdamW learning rate of the fine-tuned encoder layers (default: %(default)s)")
    sr.add_argument("--eval-every", type=_positive, default=defaults.eval_every, metavar="N",
                    help="validation every N steps (default: %(default)s)")
    sr.add_argument("--max-samples", type=_positive, default=defaults.max_samples, metavar="N",
                    help="15 fps samples a test episode may last (default: %(default)s)")
    evaluation = sr.add_argument_group(
        "evaluation suite", "which episodes every checkpoint runs (the protocol's validation, test and OOD suites); "
        "a suite other than the default writes under <out>/evals/<suite>-<split>-<first seed>-n<episodes>-x<steps>/ "
        "and may be run on a folder's finished checkpoints with --resume")
    evaluation.add_argument("--eval-split", choices=("validation", "test", "ood"), default=defaults.eval_split,
                            help="seed split of the evaluation episodes (default: %(default)s)")
    evaluation.add_argument("--eval-seed-start", type=int, default=defaults.eval_seed_start, metavar="SEED",
                            help="first evaluation seed, a seed of --eval-split (default: the split's first), e.g. "
                            "105000 (the protocol's validation suite) or 112000 (its test seeds)")
    evaluation.add_argument("--eval-suite", default=defaults.eval_suite, metavar="SUITE",
                            help="suite whose task options the episodes use: main, ood (held-out combinations, "
                            "camera jitter) or a suite file (default: %(default)s)")
    evaluation.add_argument("--execute-steps", type=_positive, default=defaults.execute_steps, metavar="N",
                            help="steps of each action chunk executed before observing again (default: %(default)s)")
    evaluation.add_argument("--forecast-fm-steps", type=_positive, default=defaults.forecast_fm_steps, metavar="N",
                            help="Euler steps of the FM sampler of C's forecast (default: %(default)s; another value "
                            "adds -fm<N> to the suite's folder)")
    sr.add_argument("--demo-cache", default=defaults.demo_cache, metavar="DIR",
                    help="folder of recorded demonstrations, e.g. one several experiments share (default: "
                    "<out>/demos); with Ray, a folder every worker reaches")
    sr.add_argument("--out", type=Path, default=Path("results/policy-success-rate"),
                    help="run folder: demonstrations, encodings, checkpoints, per-checkpoint results, summary; with "
                    "Ray, shared storage every worker reaches (default: %(default)s)")
    sr.add_argument("--resume", action="store_true",
                    help="continue the experiment in --out: cells (variant, seed, step) whose checkpoint and results "
                    "carry this config's hash are kept, the others run (a folder holding an experiment is refused "
                    "without it); variants and steps may be added")
    sr.add_argument("--workers", type=_positive, metavar="N",
                    help="parallel workers (default: the CPU count; with --executor ray, as many as the cluster holds)")
    sr.add_argument("--footprint", action="store_true",
                    help="give the policy head the target's footprint orientation (depth moments around the grounded "
                         "target at t0), so it can turn the wrist to the object")
    sr.add_argument("--geometry-skip", action="store_true",
                    help="a linear path from the head's geometric inputs straight to the action chunk")
    sr.add_argument("--lr-schedule", choices=("constant", "cosine"), default=defaults.lr_schedule,
                    help="learning-rate schedule over the step grid (default: %(default)s)")
    sr.add_argument("--state-noise-m", type=float, default=defaults.state_noise_m, metavar="M",
                    help="train on corrective labels: each frame's grasp target moved by N(0, M) per axis and its "
                         "chunk relabelled to reach the demonstrated set-points (default: %(default)s; 0.015 in the "
                         "README's run)")
    sr.add_argument("--state-noise-rad", type=float, default=defaults.state_noise_rad, metavar="R",
                    help="likewise for the gripper yaw (default: %(default)s; 0.1 in the README's run)")
    sr.add_argument("--encoders-dir", default=defaults.encoders_dir, metavar="DIR",
                    help="the protocol's encoders made by `experiment pretrain --out DIR` (fm_v2 for A and C, "
                    "base_matched for B) instead of the shipped fm.pt and base.pt; every checkpoint's hash covers "
                    "their bytes")
    sr.add_argument("--no-progress", action="store_true", help="hide progress bars")
    sr.add_argument("--train-gpus", type=_train_gpus, default="auto", metavar="auto|X",
                    help="GPUs each training task reserves and trains on (auto: one where the workers have any, "
                         "else none; 0.25 puts four runs on one GPU). Other stages take --gpus-per-worker "
                         "(default: %(default)s)")
    add_execution_arguments(sr, batch_flag="--episodes-per-batch", items="tasks")
    sr.set_defaults(handler=run_success_rate)

    report = kinds.add_parser(
        "report", help="rebuild the experiment's tables and plots from its evaluation files",
        description="Read every <variant>-s<seed>-<step>.json under DIR and print the success table (hierarchical "
        "bootstrap intervals over training seeds and scenes, n per cell, pairs paired per scene, per-seed spread, the "
        "protocol's bars) as Markdown; write report.md, report.json and PNGs. Nothing else is read.")
    report.add_argument("directory", metavar="DIR", help="a run folder (its evals/ or any depth below it)")
    report.add_argument("--out", type=Path, default=None,
                        help="folder for report.md, report.json and the PNGs (default: DIR)")
    report.add_argument("--protocol", type=Path, default=None,
                        help="protocol file: bars, pairs, statistics (default: the shipped policies/protocol.yaml)")
    report.add_argument("--replicates", type=_positive, default=None, metavar="N",
                        help="bootstrap replicates (default: the protocol's)")
    report.add_argument("--no-plots", action="store_true", help="write no PNGs")
    report.set_defaults(handler=run_report)

    pretrain = kinds.add_parser(
        "pretrain", help="make the protocol's two compute-matched encoders (fm_v2, base_matched) into a folder",
        description="From the protocol's motion_pretraining and encoders sections: generate the pretraining scenes, "
        "train stage 1 (grounding, random init), then from it fm_v2 (grounding + FM motion forecasting) and "
        "base_matched (grounding + the pool objective) on the same data, batch size and step count. Finished stages "
        "are skipped on a second call; a stage killed part-way resumes. Writes <out>/fm_v2.pt, base_matched.pt and "
        "pretrain.json (steps, losses, data seeds, wall times); success-rate --encoders-dir reads them.")
    pretrain.add_argument("--protocol", type=Path, default=None,
                          help="protocol file (default: the shipped policies/protocol.yaml)")
    pretrain.add_argument("--out", type=Path, required=True, metavar="DIR",
                          help="folder for the scenes, the checkpoints and pretrain.json")
    pretrain.add_argument("--episodes", type=_positive, default=None, metavar="N",
                          help="override: pretraining scenes per family, a prefix of the protocol's (tests only)")
    pretrain.add_argument("--val-episodes", type=_positive, default=None, metavar="N",
                          help="override: validation scenes per family, a prefix of the protocol's (tests only)")
    pretrain.add_argument("--steps", type=_csv(_positive), default=None, metavar="S1,S2",
                          help="override: steps of stage 1 and of each stage 2 (tests only)")
    pretrain.add_argument("--val-every", type=_positive, default=500, metavar="N",
                          help="validation loss and resumable snapshot every N steps (default: %(default)s)")
    pretrain.add_argument("--workers", type=_positive, metavar="N",
                          help="scene-generation worker processes (default: the CPU count)")
    pretrain.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                          help="where to train (default: %(default)s: cuda when available)")
    pretrain.add_argument("--no-progress", action="store_true", help="hide progress bars")
    pretrain.set_defaults(handler=run_pretrain)

    protocol = kinds.add_parser(
        "protocol", help="run the pre-registered protocol end to end at a scale: choices on validation, then the test "
        "and OOD suites once, then the reports",
        description="Run policies/protocol.yaml at one of its scales with the encoders of `experiment pretrain`. "
        "1) The choices (protocol `choices:`), one at a time in the file's order, each with the earlier ones fixed, at "
        "every training seed, on the validation suite only: a training-time choice trains A, B, C with each candidate "
        "(one success-rate folder per recipe, the scale's whole step grid) and compares the final step; an "
        "evaluation-time choice re-evaluates the chosen checkpoints; ties go to the first candidate. 2) With every "
        "choice fixed, every step of the grid on the test suite (its reserved seeds) and the OOD suite. 3) "
        "<out>/protocol_run.json, <out>/choices.md and `experiment report` of the test and OOD evaluations into "
        "<out>/report-test/ and <out>/report-ood/. A second call re-runs nothing finished and never decides again "
        "(stored validation numbers that disagree with the files on disk are refused).")
    protocol.add_argument("--protocol", type=Path, default=None,
                          help="protocol file (default: the shipped policies/protocol.yaml)")
    protocol.add_argument("--scale", required=True, metavar="NAME",
                          help="the protocol's scale to run: local (A, B, C frozen, 2-core machine) or full (every "
                          "variant and encoder setting, a cluster through --executor ray)")
    protocol.add_argument("--encoders", required=True, metavar="DIR",
                          help="the folder `experiment pretrain --out DIR` made (fm_v2.pt, base_matched.pt)")
    protocol.add_argument("--out", type=Path, required=True, metavar="DIR",
                          help="run folder: demos/, recipes/<recipe>/, protocol_run.json, choices.md, report-*/; with "
                          "Ray, shared storage every worker reaches")
    tests = protocol.add_argument_group(
        "overrides (tests and smoke runs only)", "each replaces one of the scale's numbers; protocol_run.json then "
        "says the run is not the protocol's settings")
    tests.add_argument("--steps", type=_csv(_positive), default=None, metavar="N,N", help="the step grid")
    tests.add_argument("--seeds", type=_positive, default=None, metavar="S", help="training seeds 0..S-1")
    tests.add_argument("--episodes", type=_positive, default=None, metavar="N",
                       help="episodes per family of the validation, test and OOD suites (a prefix of each)")
    tests.add_argument("--train-episodes", type=_positive, default=None, metavar="N",
                       help="demonstrations per family (train seeds)")
    tests.add_argument("--val-episodes", type=_positive, default=None, metavar="N",
                       help="demonstrations per family (validation seeds: the offline curve)")
    tests.add_argument("--families", type=_csv(str), default=None, metavar="F,F", help="task families")
    tests.add_argument("--max-samples", type=_positive, default=None, metavar="N", help="15 fps samples per episode")
    tests.add_argument("--batch-size", type=_positive, default=None, metavar="N", help="training batch size")
    tests.add_argument("--eval-every", type=_positive, default=None, metavar="N",
                       help="offline validation every N steps")
    tests.add_argument("--replicates", type=_positive, default=None, metavar="N",
                       help="the reports' bootstrap replicates")
    protocol.add_argument("--workers", type=_positive, metavar="N",
                          help="parallel workers (default: the CPU count; with --executor ray, as many as the cluster "
                          "holds)")
    protocol.add_argument("--train-gpus", type=_train_gpus, default="auto", metavar="auto|X",
                          help="GPUs each training task reserves and trains on (default: %(default)s)")
    protocol.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_execution_arguments(protocol, batch_flag="--episodes-per-batch", items="tasks")
    protocol.set_defaults(handler=run_protocol_command)
    return experiment


def _train_gpus(text: str) -> str | float:
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"auto or a number of GPUs (0 or more), got {text!r}")
    return value


def run_success_rate(args: argparse.Namespace) -> int:
    import torch

    from molmomotion_ros.execution import (
        ExecutorOptionsError,
        ExecutorUnavailableError,
        StorageError,
        WorkerLostError,
        available_cores,
        executor_from_options,
    )

    from .experiment import ExperimentConfig, run_experiment

    torch.set_num_threads(1)
    try:
        cfg = ExperimentConfig(
            variants=tuple(v.upper() for v in args.variants), steps=tuple(sorted(set(args.steps))),
            episodes_per_family=args.episodes, seeds=args.seeds, families=tuple(args.families),
            train_episodes_per_family=args.train_episodes, val_episodes_per_family=args.val_episodes,
            frames_every=args.frames_every,
            batch_size=args.batch_size, lr=args.lr, eval_every=args.eval_every, finetune=args.finetune,
            encoder_lr=args.encoder_lr, max_samples=args.max_samples, footprint=args.footprint,
            geometry_skip=args.geometry_skip, lr_schedule=args.lr_schedule, state_noise_m=args.state_noise_m,
            state_noise_rad=args.state_noise_rad,
            demo_cache=args.demo_cache, encoders_dir=args.encoders_dir, eval_split=args.eval_split,
            eval_seed_start=args.eval_seed_start, eval_suite=args.eval_suite, execute_steps=args.execute_steps,
            forecast_fm_steps=args.forecast_fm_steps,
        )
        executor = executor_from_options(args, default_workers=available_cores())
        result = run_experiment(cfg, args.out, progress=not args.no_progress, executor=executor, resume=args.resume,
                                episodes_per_batch=args.episodes_per_batch, train_gpus=args.train_gpus,
                                echo=lambda line: print(f"molmomotion experiment: {line}", file=sys.stderr, flush=True))
    except (PolicyError, ExecutorOptionsError, ExecutorUnavailableError, StorageError) as err:
        print(f"molmomotion experiment: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except WorkerLostError as err:
        print(f"molmomotion experiment: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    print(result.table)
    for kind, path in result.files.items():
        print(f"{kind}: {path}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    """Print the headline Markdown on stdout (what the README carries); where the files went on stderr."""
    from .protocol import ProtocolError, load_protocol
    from .report import ReportError, build_report, write_report
    from .statistics import StatisticsError

    try:
        report = build_report(args.directory, load_protocol(args.protocol), replicates=args.replicates)
        files = write_report(report, args.out if args.out is not None else Path(args.directory),
                             plots=not args.no_plots)
    except (ReportError, ProtocolError, StatisticsError) as err:
        print(f"molmomotion experiment report: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print(report.headline)
    for kind, path in files.items():
        print(f"{kind}: {path}", file=sys.stderr)
    return 0


def run_pretrain(args: argparse.Namespace) -> int:
    """Print the summary (JSON, without the per-stage loss histories that pretrain.json holds) on stdout; a line per
    stage on stderr."""
    import json

    from molmomotion_ros.forecasting.training import TrainingError
    from molmomotion_ros.motion_data import DatasetError

    from .pretrain import PretrainError, PretrainSettings, run_pretraining
    from .protocol import ProtocolError, load_protocol

    if args.steps is not None and len(args.steps) != 2:
        print("molmomotion experiment pretrain: error: --steps takes two numbers: stage 1, stage 2", file=sys.stderr)
        return 2
    settings = PretrainSettings(train_episodes=args.episodes, val_episodes=args.val_episodes,
                                stage1_steps=args.steps[0] if args.steps else None,
                                stage2_steps=args.steps[1] if args.steps else None, val_every=args.val_every,
                                workers=args.workers, device=args.device)
    try:
        result = run_pretraining(load_protocol(args.protocol), args.out, settings, progress=not args.no_progress,
                                 echo=lambda line: print(f"molmomotion experiment pretrain: {line}", file=sys.stderr,
                                                         flush=True))
    except (PretrainError, ProtocolError, DatasetError, TrainingError) as err:
        print(f"molmomotion experiment pretrain: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    brief = {**result.summary, "stages": {name: {k: v for k, v in record.items() if k != "history"}
                                          for name, record in result.summary["stages"].items()}}
    print(json.dumps(brief, indent=1))
    return 0


def run_protocol_command(args: argparse.Namespace) -> int:
    """Print choices.md and where the records went; progress and a line per step on stderr."""
    import torch

    from molmomotion_ros.execution import (
        ExecutorOptionsError,
        ExecutorUnavailableError,
        StorageError,
        WorkerLostError,
        available_cores,
        executor_from_options,
    )

    from .protocol import ProtocolError, load_protocol
    from .protocol_run import ProtocolRunSettings, run_protocol
    from .report import ReportError
    from .statistics import StatisticsError

    torch.set_num_threads(1)
    settings = ProtocolRunSettings(
        steps=tuple(sorted(set(args.steps))) if args.steps else None, seeds=args.seeds, episodes=args.episodes,
        train_episodes=args.train_episodes, val_episodes=args.val_episodes,
        families=tuple(args.families) if args.families else None, max_samples=args.max_samples,
        batch_size=args.batch_size, eval_every=args.eval_every, replicates=args.replicates)
    try:
        executor = executor_from_options(args, default_workers=available_cores())
        result = run_protocol(load_protocol(args.protocol), args.scale, args.encoders, args.out, settings,
                              executor=executor, progress=not args.no_progress, train_gpus=args.train_gpus,
                              episodes_per_batch=args.episodes_per_batch,
                              echo=lambda line: print(f"molmomotion experiment protocol: {line}", file=sys.stderr,
                                                      flush=True))
    except (PolicyError, ProtocolError, ReportError, StatisticsError, ExecutorOptionsError, ExecutorUnavailableError,
            StorageError) as err:
        print(f"molmomotion experiment protocol: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except WorkerLostError as err:
        print(f"molmomotion experiment protocol: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    print(result.files["choices"].read_text())
    for kind, path in result.files.items():
        print(f"{kind}: {path}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry until the molmomotion CLI wires ``add_parser`` in."""
    parser = argparse.ArgumentParser(prog="molmomotion")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
