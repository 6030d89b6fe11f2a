"""The ``molmomotion`` command line: simulated suites, training data, forecasters and their evaluation.

    molmomotion sim-eval --agent oracle --suite smoke --workers 2
    molmomotion sim-eval --suite main --families stack,push --episodes 10 --contact-sheet 4
    molmomotion generate-data --split train --episodes 500 --out data/train --history 2
    molmomotion forecast --rgb frame.png --depth depth.png --instruction "push the red block to the left"
    molmomotion train --model fm --data data/train --val data/validation --steps 3000 --init base.pt
    molmomotion eval-forecast --models fm,ar,stationary,constant-velocity --split test
    molmomotion launch sim_eval --episodes 10       # the ROS 2 graph, as `ros2 launch` would start it
    molmomotion launch real_arm execute:=true       # a Franka FR3 cell (launch arguments: --show-args)
    molmomotion cell-eval --episodes 25             # real_arm against the simulated cell (fake_franka)
    molmomotion record bags/run1                    # the running graph's topics into a rosbag2 bag (MCAP)
    molmomotion play bags/run1 --clock --rate 2     # publish a bag into the graph, as `ros2 bag play` would
    molmomotion recover bags/run1                   # a truncated bag (killed recorder) → bags/run1_recovered
    molmomotion experiment success-rate --variants A,B --steps 1000,10000 --episodes 10
    python -m molmomotion_ros.cli --help

Every bad input (unknown family or agent, a non-positive count, a missing or malformed suite, an
unwritable output folder, seeds outside a split, a missing or mis-sized image, a missing checkpoint)
ends with one line ``molmomotion: error: ...`` on stderr and exit status 2. Heavy modules (PyBullet,
torch) load only inside a subcommand, so ``--help`` is instant.

This module assembles the parser and runs a command; each command group lives in its own module:
``sim`` (sim-eval, generate-data), ``forecast``, ``training`` (train, eval-forecast), ``launch``,
``cell_eval``, ``record``, ``play`` (play, recover), ``results``; ``experiment`` comes from
``molmomotion_policies.cli``. ``common`` holds what they share.
"""

from __future__ import annotations

import argparse
import logging
import sys

from . import cell_eval, forecast, launch, play, record, reforecast, results, sim, training
from .common import PROG, USAGE_ERROR, Parser, UsageError

LIBRARY_INPUT_ERRORS = (  # (module, exception): bad input the library detected, reported like argparse errors
    ("molmomotion_sim.suites", "SuiteError"),
    ("molmomotion_sim.seeds", "SeedRangeError"),
    ("molmomotion_sim.evaluation", "EvaluationError"),
    ("molmomotion_ros.motion_data", "DatasetError"),
    ("molmomotion_ros.phrasings", "PhrasingError"),
    ("molmomotion_policies.observation", "PolicyError"),
    ("molmomotion_ros.camera", "CameraConfigError"),
    ("molmomotion_ros.forecasting.types", "ForecastInputError"),
    ("molmomotion_ros.forecasting.types", "BackendUnavailableError"),
    ("molmomotion_ros.forecasting.grounding", "GroundingError"),
    ("molmomotion_ros.forecasting.checkpoint", "CheckpointError"),
    ("molmomotion_ros.forecasting.training", "TrainingError"),
    ("molmomotion_ros.forecasting.evaluation", "EvaluationError"),
    ("molmomotion_ros.bags.errors", "BagFolderError"),
    ("molmomotion_ros.bags.errors", "BagReadError"),
    ("molmomotion_ros.bags.errors", "BagWriteError"),
    ("molmomotion_ros.reforecast", "ReforecastError"),
    ("molmomotion_ros.execution", "ExecutorUnavailableError"),  # no Ray, or a cluster that cannot be reached
)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; ``argv`` (when given) lets heavy subcommand parsers load only when used."""
    parser = Parser(prog=PROG, description="MolmoMotion for ROS 2: simulated evaluation, training data, "
                    "motion forecasting.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details (INFO level)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands",
                                     help="run `molmomotion COMMAND --help` for its options")
    # The order here is the order `molmomotion --help` lists the commands in.
    sim.add_parsers(commands)  # sim-eval, generate-data
    forecast.add_parser(commands)
    training.add_parsers(commands)  # train, eval-forecast
    launch.add_parser(commands)
    cell_eval.add_parser(commands)
    record.add_parser(commands)
    play.add_parsers(commands)  # play, recover
    reforecast.add_parser(commands)
    results.add_parser(commands)
    if argv is not None and "experiment" in argv:
        # Its options' defaults come from the policy code (PyBullet, torch): loaded only when used.
        from molmomotion_policies.cli import add_parser as add_experiment_parser

        add_experiment_parser(commands)
    else:
        commands.add_parser("experiment", help="policy experiments: `molmomotion experiment success-rate --help`",
                            add_help=False)
    return parser


def _input_errors() -> tuple[type[Exception], ...]:
    """The library's bad-input exceptions, imported only once a subcommand has loaded them."""
    errors: list[type[Exception]] = [UsageError]
    for module, name in LIBRARY_INPUT_ERRORS:
        loaded = sys.modules.get(module)
        error = getattr(loaded, name, None) if loaded is not None else None
        if error is not None:
            errors.append(error)
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    try:
        args, extra = parser.parse_known_args(argv)
        # Launch arguments (NAME:=VALUE) may follow options, as on `ros2 launch`; argparse takes positionals only
        # before the first option, so the later ones arrive here.
        launch_arguments = [a for a in extra if ":=" in a and not a.startswith("-")]
        if launch_arguments and hasattr(args, "arguments"):
            args.arguments = [*args.arguments, *launch_arguments]
            extra = [a for a in extra if a not in launch_arguments]
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")
        if args.command is None:
            raise UsageError("choose a command: sim-eval, generate-data, forecast, train, eval-forecast, launch or "
                             "experiment (see molmomotion --help)")
        return args.handler(args)
    except _input_errors() as err:
        print(f"{PROG}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
