"""The ``molmomotion`` command line: evaluate agents on simulated suites and generate training data.

    molmomotion sim-eval --agent oracle --suite smoke --workers 2
    molmomotion sim-eval --suite main --families stack,push --episodes 10 --contact-sheet 4
    molmomotion generate-data --split train --episodes 500 --out data/train --history 2
    python -m molmomotion_ros.cli --help

Every bad input (unknown family or agent, a non-positive count, a missing or malformed suite, an
unwritable output folder, seeds outside a split) ends with one line ``molmomotion: error: ...`` on
stderr and exit status 2. Heavy modules (PyBullet, torch) load only inside a subcommand, so
``--help`` is instant.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn

import yaml

PROG = "molmomotion"
USAGE_ERROR = 2  # bad input, like argparse
RUNTIME_ERROR = 1  # the installation lacks something
HISTORY_RANGE = (1, 3)  # past frames a dataset sample may carry
LIBRARY_INPUT_ERRORS = (  # (module, exception): bad input the library detected, reported like argparse errors
    ("molmomotion_sim.suites", "SuiteError"),
    ("molmomotion_sim.seeds", "SeedRangeError"),
    ("molmomotion_sim.evaluation", "EvaluationError"),
    ("molmomotion_sim.dataset", "DatasetError"),
)

logger = logging.getLogger(__name__)


class UsageError(Exception):
    """A bad input the user can fix; reported as one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors under the program's own name (subcommands included)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


# --- argument types ----------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def _family_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated family names")
    return names


def _key_value(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError:
        return key, value


# --- parser ------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="MolmoMotion for ROS 2: simulated evaluation and training data.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details (INFO level)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands",
                                     help="run `molmomotion COMMAND --help` for its options")

    sim_eval = commands.add_parser(
        "sim-eval", help="evaluate an agent on a task suite in the PyBullet harness",
        description="Run every episode of a suite with an agent in parallel workers; print a success table "
        "and write per-episode JSON.",
    )
    sim_eval.add_argument("--agent", default="oracle", help="agent name from molmomotion_sim.agents.AGENTS "
                          "(default: oracle)")
    sim_eval.add_argument("--agent-arg", dest="agent_args", action="append", type=_key_value, default=[],
                          metavar="KEY=VALUE", help="keyword argument for the agent's constructor (YAML value); "
                          "repeatable")
    sim_eval.add_argument("--suite", default="main", help="suite YAML file, or the name of a shipped suite in "
                          "config/suites (main, smoke, ood; default: main)")
    sim_eval.add_argument("--episodes", type=_positive_int, metavar="N",
                          help="episodes per family, overriding the suite's counts")
    sim_eval.add_argument("--families", type=_family_list, metavar="A,B",
                          help="comma-separated families of the suite to run (default: all of them)")
    sim_eval.add_argument("--workers", type=_positive_int, default=os.cpu_count() or 1, metavar="N",
                          help="parallel worker processes, one PyBullet world each "
                          "(default: %(default)s, the CPU count)")
    sim_eval.add_argument("--out", type=Path, metavar="PATH",
                          help="results JSON (default: results/eval-<suite>-<agent>.json)")
    sim_eval.add_argument("--contact-sheet", type=_non_negative_int, default=0, metavar="N",
                          help="also save a PNG (next to --out) with the first and last frames of N episodes")
    sim_eval.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    sim_eval.set_defaults(handler=_sim_eval)

    generate = commands.add_parser(
        "generate-data", help="record oracle demonstrations as a motion-forecasting dataset",
        description="Run the oracle on a seed split and cut its 15 fps traces into forecasting samples.",
    )
    generate.add_argument("--split", default="train", help="seed split: train, validation, test or ood "
                          "(default: train)")
    generate.add_argument("--episodes", type=_positive_int, default=100, metavar="N",
                          help="episodes per family (default: %(default)s)")
    generate.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder for the dataset")
    generate.add_argument("--families", type=_family_list, metavar="A,B",
                          help="comma-separated task families (default: all registered)")
    generate.add_argument("--history", type=int, default=1, metavar="H",
                          help=f"past frames per sample, {HISTORY_RANGE[0]}..{HISTORY_RANGE[1]} (default: %(default)s)")
    generate.add_argument("--horizon", type=_positive_int, default=32, metavar="F",
                          help="future frames forecast per sample, at 15 fps (default: %(default)s)")
    generate.add_argument("--workers", type=_positive_int, default=os.cpu_count() or 1, metavar="N",
                          help="parallel worker processes (default: %(default)s, the CPU count)")
    generate.add_argument("--options-suite", metavar="SUITE",
                          help="draw scenes with this suite's task options (default: ood for the ood split, main "
                          "otherwise, so training targets never use the ood suite's held-out combinations); "
                          "'none' for the TaskOptions defaults")
    generate.add_argument("--overwrite", action="store_true",
                          help="replace a dataset with another configuration in --out")
    generate.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    generate.set_defaults(handler=_generate_data)
    return parser


# --- sim-eval ----------------------------------------------------------------------------------
def _sim_eval(args: argparse.Namespace) -> int:
    from molmomotion_sim import evaluation
    from molmomotion_sim.agents import AGENTS
    from molmomotion_sim.suites import load_suite

    if args.agent not in AGENTS:
        raise UsageError(f"unknown agent {args.agent!r}; choose from {', '.join(sorted(AGENTS))}")
    suite = load_suite(args.suite)
    if args.families is not None or args.episodes is not None:
        suite = suite.select(families=args.families, episodes_per_family=args.episodes)
    out = args.out or Path("results") / f"eval-{suite.name}-{args.agent}.json"
    _check_writable(out.parent, what="output folder")
    if out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a folder; give a file path")

    agent_kwargs = dict(args.agent_args)
    start = time.perf_counter()
    results = evaluation.evaluate(suite, args.agent, agent_kwargs, workers=args.workers,
                                  progress=not args.no_progress)
    wall_time_s = time.perf_counter() - start
    meta = {
        "agent": args.agent,
        "agent_kwargs": agent_kwargs,
        "model_id": ",".join(sorted({r.model_id for r in results if r.model_id})),
        "suite": suite.name,
        "suite_file": suite.source,
        "split": suite.split,
        "workers": args.workers,
        "episodes": len(results),
        "wall_time_s": round(wall_time_s, 3),
    }
    evaluation.write_results(out, results, meta)
    print(evaluation.format_table(evaluation.summarize(results)))
    print(f"{len(results)} episodes in {wall_time_s:.1f} s; results: {out}")
    if args.contact_sheet:
        sheet = out.with_suffix(".png")
        episodes = evaluation.spread_over_families(suite.episodes(), args.contact_sheet)
        evaluation.contact_sheet(sheet, episodes, args.agent, agent_kwargs)
        print(f"contact sheet: {sheet}")
    return 0


# --- generate-data -----------------------------------------------------------------------------
def _generate_data(args: argparse.Namespace) -> int:
    from molmomotion_sim.seeds import SPLITS, split_seeds
    from molmomotion_sim.tasks import TASKS

    if args.split not in SPLITS:
        raise UsageError(f"unknown split {args.split!r}; choose from {', '.join(SPLITS)}")
    split_seeds(args.split, args.episodes)  # SeedRangeError if the split is too small
    families = args.families or sorted(TASKS)
    for family in families:
        if family not in TASKS:
            raise UsageError(f"unknown family {family!r}; choose from {', '.join(sorted(TASKS))}")
    lo, hi = HISTORY_RANGE
    if not lo <= args.history <= hi:
        raise UsageError(f"--history must be in {lo}..{hi}, got {args.history}")
    options = _suite_task_options(args.options_suite or ("ood" if args.split == "ood" else "main"), families)
    _check_writable(args.out, what="output folder")
    try:
        from molmomotion_sim.dataset import generate_dataset
    except ImportError as err:
        print(f"{PROG}: error: dataset generation is unavailable: {err}", file=sys.stderr)
        return RUNTIME_ERROR

    manifest = generate_dataset(
        split=args.split, episodes_per_family=args.episodes, out_dir=args.out, families=families,
        history=args.history, horizon=args.horizon, workers=args.workers, progress=not args.no_progress,
        options=options, overwrite=args.overwrite,
    )
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


# --- shared ------------------------------------------------------------------------------------
def _check_writable(folder: Path, what: str) -> None:
    """Create ``folder`` and a temporary file in it, or raise UsageError."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"cannot write to {what} {str(folder)!r}: it is a file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise UsageError(f"cannot write to {what} {str(folder)!r}: {reason}") from None


def _input_errors() -> tuple[type[Exception], ...]:
    """The library's bad-input exceptions, imported only once a subcommand has loaded them."""
    errors: list[type[Exception]] = [UsageError]
    for module, name in LIBRARY_INPUT_ERRORS:
        loaded = sys.modules.get(module)
        if loaded is not None:
            errors.append(getattr(loaded, name))
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")
        if args.command is None:
            raise UsageError("choose a command: sim-eval or generate-data (see molmomotion --help)")
        return args.handler(args)
    except _input_errors() as err:
        print(f"{PROG}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
