"""The ``molmomotion`` command line: simulated suites, training data, forecasters and their evaluation.

    molmomotion sim-eval --agent oracle --suite smoke --workers 2
    molmomotion sim-eval --suite main --families stack,push --episodes 10 --contact-sheet 4
    molmomotion generate-data --split train --episodes 500 --out data/train --history 2
    molmomotion forecast --rgb frame.png --depth depth.png --instruction "push the red block to the left"
    molmomotion train --model fm --data data/train --val data/validation --steps 3000 --init base.pt
    molmomotion eval-forecast --models fm,ar,stationary,constant-velocity --split test
    molmomotion launch sim_eval --episodes 10       # the ROS 2 graph, as `ros2 launch` would start it
    molmomotion experiment success-rate --variants A,B --steps 1000,10000 --episodes 10
    python -m molmomotion_ros.cli --help

Every bad input (unknown family or agent, a non-positive count, a missing or malformed suite, an
unwritable output folder, seeds outside a split, a missing or mis-sized image, a missing checkpoint)
ends with one line ``molmomotion: error: ...`` on stderr and exit status 2. Heavy modules (PyBullet,
torch) load only inside a subcommand, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
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
    ("molmomotion_ros.motion_data", "DatasetError"),
    ("molmomotion_policies.observation", "PolicyError"),
    ("molmomotion_ros.camera", "CameraConfigError"),
    ("molmomotion_ros.forecasting.types", "ForecastInputError"),
    ("molmomotion_ros.forecasting.types", "BackendUnavailableError"),
    ("molmomotion_ros.forecasting.grounding", "GroundingError"),
    ("molmomotion_ros.forecasting.checkpoint", "CheckpointError"),
    ("molmomotion_ros.forecasting.training", "TrainingError"),
    ("molmomotion_ros.forecasting.evaluation", "EvaluationError"),
)
NEURAL_BACKENDS = ("fm", "ar")  # backends that take --checkpoint, --device and --seed
DEPTH_PNG_MODES = ("I;16", "I;16B", "I;16L", "I")  # 16-bit (or 32-bit integer) millimetre PNGs

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


def _name_list(text: str, what: str = "names") -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated {what}")
    return names


def _family_list(text: str) -> list[str]:
    return _name_list(text, "family names")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _pixel_list(text: str) -> list[tuple[float, float]]:
    """``"u,v;u,v;..."`` → [(u, v), ...] pixels."""
    points = []
    for item in text.split(";"):
        if not item.strip():
            continue
        parts = item.split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            u, v = float(parts[0]), float(parts[1])
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected pixels as 'u,v;u,v;...', got {item.strip()!r}") from None
        if not (math.isfinite(u) and math.isfinite(v)):
            raise argparse.ArgumentTypeError(f"pixel coordinates must be finite, got {item.strip()!r}")
        points.append((u, v))
    if not points:
        raise argparse.ArgumentTypeError("expected at least one pixel as 'u,v'")
    return points


def _key_value(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError:
        return key, value


# --- parser ------------------------------------------------------------------------------------
def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; ``argv`` (when given) lets heavy subcommand parsers load only when used."""
    parser = _Parser(prog=PROG, description="MolmoMotion for ROS 2: simulated evaluation, training data, "
                     "motion forecasting.")
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
    _add_forecast_parser(commands)
    _add_train_parser(commands)
    _add_eval_forecast_parser(commands)
    _add_launch_parser(commands)
    results = commands.add_parser(
        "results", help="print results JSON files (sim-eval, launch sim_eval*) side by side",
        description="Per family: successes/episodes, rate and 95%% interval of each results file.")
    results.add_argument("files", nargs="+", type=Path, metavar="FILE", help="results JSON")
    results.add_argument("--labels", type=lambda t: [x.strip() for x in t.split(",")], metavar="A,B",
                         help="column labels (default: each run's agent)")
    results.set_defaults(handler=_results)
    if argv is not None and "experiment" in argv:
        # Its options' defaults come from the policy code (PyBullet, torch): loaded only when used.
        from molmomotion_policies.cli import add_parser as add_experiment_parser

        add_experiment_parser(commands)
    else:
        commands.add_parser("experiment", help="policy experiments: `molmomotion experiment success-rate --help`",
                            add_help=False)
    return parser


def _add_forecast_parser(commands) -> None:
    forecast = commands.add_parser(
        "forecast", help="forecast the 3D trajectories of query points on one RGB-D frame",
        description="Load an RGB image, a depth image and a camera config, choose query points on the "
        "instruction's target (or take --points), forecast their trajectories, and write a JSON and an overlay PNG.",
    )
    forecast.add_argument("--rgb", type=Path, required=True, metavar="IMAGE", help="colour image (PNG/JPEG, 8-bit)")
    forecast.add_argument("--depth", type=Path, required=True, metavar="DEPTH",
                          help="depth image: a 16-bit PNG of millimetres (0 = no return) or a .npy of float metres "
                          "(NaN or <= 0 = no return), the size of --rgb")
    forecast.add_argument("--camera", type=Path, metavar="YAML",
                          help="camera config (intrinsics, image size, pose) in the layout of config/camera.yaml "
                          "(default: the package's config/camera.yaml)")
    forecast.add_argument("--instruction", required=True, metavar="TEXT",
                          help='what should happen, e.g. "put the red block in the blue bowl"')
    forecast.add_argument("--points", type=_pixel_list, metavar="U,V;U,V",
                          help="query pixels (u right, v down, origin at the top-left pixel centre); "
                          "default: chosen on the instruction's target by --grounding")
    forecast.add_argument("--model", default="fm", metavar="BACKEND",
                          help="forecaster backend: fm, ar, stationary, constant-velocity or molmomotion4b "
                          "(default: %(default)s)")
    forecast.add_argument("--checkpoint", type=Path, metavar="PT",
                          help="fm/ar weights (default: the shipped molmomotion_ros/checkpoints/<model>.pt)")
    forecast.add_argument("--samples", type=_positive_int, default=8, metavar="K",
                          help="hypotheses to forecast (default: %(default)s)")
    forecast.add_argument("--horizon", type=_positive_int, default=32, metavar="F",
                          help="future steps to forecast (default: %(default)s)")
    forecast.add_argument("--grounding", choices=("encoder", "open3d"), default="encoder",
                          help="how query points are chosen without --points: region growing on the base "
                          "encoder's heat-map, or plane removal + clustering scored by it (default: %(default)s)")
    forecast.add_argument("--grounding-checkpoint", type=Path, metavar="PT",
                          help="base checkpoint for grounding (default: the shipped molmomotion_ros/checkpoints/"
                          "base.pt)")
    forecast.add_argument("--num-points", type=_positive_int, default=8, metavar="P",
                          help="query points to choose without --points (default: %(default)s)")
    forecast.add_argument("--seed", type=_non_negative_int, default=0, metavar="N",
                          help="seed of the point sampling and of the fm/ar sampler (default: %(default)s)")
    forecast.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                          help="where the networks run (default: %(default)s: cuda when available)")
    forecast.add_argument("--out", type=Path, default=Path("results") / "forecast", metavar="PATH",
                          help="output path without suffix: writes PATH.json and PATH.png (default: %(default)s)")
    forecast.set_defaults(handler=_forecast)


def _add_train_parser(commands) -> None:
    train = commands.add_parser(
        "train", help="train the base grounding encoder or an fm/ar forecaster on a generated dataset",
        description="Train a model on a dataset from `molmomotion generate-data`; resumable from <out>.state.",
    )
    train.add_argument("--model", choices=("base", "fm", "ar"), required=True,
                       help="base: the grounding encoder; fm / ar: a trajectory head (start them from --init base.pt)")
    train.add_argument("--data", type=Path, required=True, metavar="DIR", help="training dataset folder")
    train.add_argument("--val", type=Path, metavar="DIR", help="validation dataset folder (loss every --val-every)")
    train.add_argument("--steps", type=_positive_int, required=True, metavar="N", help="optimiser steps")
    train.add_argument("--batch-size", type=_positive_int, default=32, metavar="B",
                       help="episodes per step (default: %(default)s)")
    train.add_argument("--lr", type=_positive_float, default=1e-3, metavar="LR",
                       help="peak learning rate of the cosine schedule (default: %(default)s)")
    train.add_argument("--seed", type=_non_negative_int, default=0, metavar="N",
                       help="seed of initialisation, data order and noise (default: %(default)s)")
    train.add_argument("--init", type=Path, metavar="PT", help="checkpoint whose encoder starts the model")
    train.add_argument("--out", type=Path, metavar="PT",
                       help="checkpoint to write (default: molmomotion_ros/checkpoints/<model>.pt)")
    train.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                       help="where to train (default: %(default)s: cuda when available)")
    train.add_argument("--val-every", type=_positive_int, default=500, metavar="N",
                       help="steps between validation losses and resumable snapshots (default: %(default)s)")
    train.add_argument("--stride", type=_positive_int, default=2, metavar="S",
                       help="frames of the 15 fps track between forecast steps (default: %(default)s)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.set_defaults(handler=_train)


def _add_eval_forecast_parser(commands) -> None:
    evaluate = commands.add_parser(
        "eval-forecast", help="score forecasters on a generated split (ADE, FDE, PWT, rigidity)",
        description="Run every backend on a generated dataset's episodes; print a table, write JSON and overlays.",
    )
    evaluate.add_argument("--models", type=_name_list, default=["fm", "ar", "stationary", "constant-velocity"],
                          metavar="A,B", help="comma-separated forecaster backends "
                          "(default: fm,ar,stationary,constant-velocity)")
    evaluate.add_argument("--split", choices=("validation", "test", "ood"), default="test",
                          help="which split's dataset to score (default: %(default)s)")
    evaluate.add_argument("--data", type=Path, metavar="DIR", help="dataset folder (default: data/<split>)")
    evaluate.add_argument("--episodes", type=_positive_int, metavar="N",
                          help="episodes per family (default: all of them)")
    evaluate.add_argument("--samples", type=_positive_int, default=8, metavar="K",
                          help="hypotheses per forecast for the best-of-K metrics (default: %(default)s)")
    evaluate.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: results/forecast-<split>)")
    evaluate.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    evaluate.set_defaults(handler=_eval_forecast)


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


# --- launch ----------------------------------------------------------------------------------------
def _add_launch_parser(commands) -> None:
    from molmomotion_ros.graph import GRAPHS

    launch = commands.add_parser(
        "launch", help="start a ROS 2 graph of the package (the pip route to `ros2 launch`)",
        description="Start the nodes of a graph as separate processes with the same parameter files and "
        "overrides as launch/<graph>.launch.py. sim_eval and sim_eval_policy run their episode runner and "
        "stop the nodes when it is done; the other graphs run until Ctrl-C. Graphs: "
        + "; ".join(f"{g.name}: {g.description}" for g in GRAPHS.values()) + ".",
    )
    launch.add_argument("graph", choices=sorted(GRAPHS), help="which graph")
    launch.add_argument("--set", dest="overrides", action="append", default=[], type=_key_value,
                        metavar="NODE.PARAM=VALUE", help="override a node parameter (YAML value); repeatable")
    launch.add_argument("--suite", help="sim_eval: suite to run (episode_runner.suite)")
    launch.add_argument("--episodes", type=_positive_int, metavar="N",
                        help="sim_eval: episodes per family (episode_runner.episodes_per_family)")
    launch.add_argument("--families", type=_family_list, metavar="A,B", help="sim_eval: families to run")
    launch.add_argument("--backend", help="forecaster backend (forecaster_node.backend): fm, ar, stationary, ...")
    launch.add_argument("--policy", metavar="NAME|PATH", help="sim_eval_policy: the policy checkpoint "
                        "(manipulation_node.policy_checkpoint): shipped A, B or C, or a path")
    launch.add_argument("--out", type=Path, metavar="PATH", help="sim_eval: results JSON (episode_runner.out)")
    launch.add_argument("--log-dir", type=Path, metavar="DIR",
                        help="node logs (default: results/logs/<graph>-<time>/)")
    launch.add_argument("--isolated", action="store_true",
                        help="use a random ROS_DOMAIN_ID and localhost-only discovery (no other graph hears it)")
    launch.add_argument("--no-progress", action="store_true", help="sim_eval: hide the progress bar")
    launch.set_defaults(handler=_launch)


def _launch(args: argparse.Namespace) -> int:
    import random

    from molmomotion_ros.graph import all_nodes, graph
    from molmomotion_ros.launcher import launch

    spec = graph(args.graph)
    overrides: dict[str, dict] = {}
    nodes = all_nodes()
    for key, value in args.overrides:
        node, sep, param = key.partition(".")
        if not sep or node not in nodes:
            raise UsageError(f"--set {key}: expected NODE.PARAM with NODE one of {', '.join(sorted(nodes))}")
        if param != "use_sim_time":
            try:
                problem = nodes[node].spec(param).problem(value)
            except KeyError as err:
                raise UsageError(str(err).strip("'\"")) from None
            if problem:
                raise UsageError(f"--set {key}: {problem}")
        overrides.setdefault(node, {})[param] = value
    runner = {"suite": args.suite, "episodes_per_family": args.episodes,
              "families": ",".join(args.families) if args.families else None,
              "out": str(args.out) if args.out else None, "progress": False if args.no_progress else None}
    runner = {k: v for k, v in runner.items() if v is not None}
    if runner:
        if spec.runner is None:
            raise UsageError(f"--suite/--episodes/--families/--out apply to sim_eval, not {args.graph}")
        overrides.setdefault(spec.runner, {}).update(runner)
    if args.backend:
        if "forecaster_node" not in spec.nodes:
            raise UsageError(f"graph {args.graph} has no forecaster_node for --backend")
        problem = nodes["forecaster_node"].spec("backend").problem(args.backend)
        if problem:
            raise UsageError(problem)
        overrides.setdefault("forecaster_node", {})["backend"] = args.backend
    if args.policy:
        if overrides.get("manipulation_node", {}).get("agent", spec.overrides.get("manipulation_node", {}).get(
                "agent")) != "policy":
            raise UsageError(f"--policy needs a graph whose manipulation_node runs agent=policy (sim_eval_policy), "
                             f"not {args.graph}")
        overrides.setdefault("manipulation_node", {})["policy_checkpoint"] = args.policy
    env = dict(os.environ)
    if args.isolated:
        env["ROS_DOMAIN_ID"] = str(random.randint(1, 101))
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    try:
        return launch(args.graph, overrides, args.log_dir, env)
    except KeyError as err:
        raise UsageError(str(err).strip("'\"")) from None


# --- results -----------------------------------------------------------------------------------
def _results(args: argparse.Namespace) -> int:
    from molmomotion_sim.evaluation import compare_table

    documents = []
    for path in args.files:
        try:
            document = json.loads(path.read_text())
            document["summary"]  # noqa: B018  (a results file has one)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UsageError(f"{path} is not a readable results file ({type(err).__name__}: {err})") from None
        documents.append(document)
    if args.labels and len(args.labels) != len(documents):
        raise UsageError(f"--labels names {len(args.labels)} columns for {len(documents)} files")
    print(compare_table(documents, args.labels))
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


# --- forecast ----------------------------------------------------------------------------------
def _forecast(args: argparse.Namespace) -> int:
    from molmomotion_ros.camera import PinholeCamera
    from molmomotion_ros.paths import config_path

    instruction = " ".join(args.instruction.split())
    if not instruction:
        raise UsageError("--instruction is empty")
    if args.checkpoint is not None and args.model not in NEURAL_BACKENDS:
        raise UsageError(f"--checkpoint applies to the {' and '.join(NEURAL_BACKENDS)} models, not {args.model!r}")
    camera = PinholeCamera.from_yaml(args.camera or config_path("camera.yaml"))
    rgb = _read_rgb(args.rgb)
    depth_m = _read_depth(args.depth)
    h, w = rgb.shape[:2]
    if (w, h) != (camera.width, camera.height):
        raise UsageError(f"--rgb is {w}x{h} but the camera config says {camera.width}x{camera.height}")
    if depth_m.shape != (h, w):
        raise UsageError(f"--depth is {depth_m.shape[1]}x{depth_m.shape[0]} but --rgb is {w}x{h}")
    if args.points is not None:
        for u, v in args.points:
            if not (-0.5 <= u <= w - 0.5 and -0.5 <= v <= h - 0.5):
                raise UsageError(f"--points: pixel ({u:g}, {v:g}) lies outside the {w}x{h} image")
    out = args.out.with_suffix("") if args.out.suffix in (".json", ".png") else args.out
    if out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a folder; give a path without suffix, e.g. {str(out / 'forecast')!r}")
    _check_writable(out.parent, what="output folder")

    _quiet_model_loading()
    import numpy as np

    from molmomotion_ros.forecasting import make_forecaster
    from molmomotion_ros.forecasting.visualize import save_overlay

    start = time.perf_counter()
    query = {"source": "user", "score": None}
    if args.points is not None:
        points_2d = np.asarray(args.points, dtype=np.float32)  # (P, 2)
        u = np.clip(np.round(points_2d[:, 0]).astype(int), 0, w - 1)
        v = np.clip(np.round(points_2d[:, 1]).astype(int), 0, h - 1)
        points_cam = camera.deproject(points_2d, depth_m[v, u]).astype(np.float32)  # (P, 3), NaN without depth
    else:
        from molmomotion_ros.forecasting.checkpoint import CheckpointError
        from molmomotion_ros.forecasting.grounding import select_query_points
        from molmomotion_ros.forecasting.predictor import GroundingModel

        try:
            grounding = GroundingModel(args.grounding_checkpoint, device=args.device)
        except CheckpointError as err:
            if args.grounding_checkpoint is not None:
                raise
            raise UsageError(f"{err} (choosing query points needs the base checkpoint: give --points or "
                             "--grounding-checkpoint)") from None
        chosen = select_query_points(rgb, depth_m, camera.K, instruction, method=args.grounding,
                                     num_points=args.num_points, grounding=grounding, seed=args.seed)
        points_2d, points_cam = chosen.points_2d, chosen.points_cam_m
        query = {"source": chosen.method, "score": round(chosen.score, 6)}
    kwargs = {}
    if args.model in NEURAL_BACKENDS:
        kwargs = {"device": args.device, "seed": args.seed}
        if args.checkpoint is not None:
            kwargs["checkpoint"] = args.checkpoint
    forecaster = make_forecaster(args.model, **kwargs)
    forecast = forecaster.predict(rgb[None], depth_m[None], camera.K, camera.T_world_cam, points_2d,
                                  points_cam[None], instruction, horizon=args.horizon, num_samples=args.samples)
    wall_time_s = time.perf_counter() - start

    document = {
        "instruction": instruction,
        "backend": forecast.backend,
        "model_id": forecast.model_id,
        "num_samples": forecast.num_samples,
        "horizon": forecast.horizon,
        "timestamps_s": _rounded(forecast.timestamps_s),
        "scores": _rounded(forecast.scores),
        "points_cam_m": _rounded(forecast.points_cam_m),  # (K, P, F, 3), best hypothesis first
        "points_world_m": _rounded(forecast.points_world_m),
        "query_points": {**query, "seed": args.seed, "points_2d": _rounded(points_2d),
                         "points_cam_m": _rounded(points_cam)},
        "camera": camera.to_dict(),
        "inputs": {"rgb": str(args.rgb), "depth": str(args.depth), "camera": str(args.camera or "default")},
        "meta": forecast.meta,
        "wall_time_s": round(wall_time_s, 3),
    }
    json_path, png_path = out.with_name(out.name + ".json"), out.with_name(out.name + ".png")
    json_path.write_text(_json_one_key_per_line(document))
    save_overlay(png_path, rgb, camera.K, forecast.points_cam_m, None, points_2d,
                 f"{forecast.backend}: {instruction}")
    k, p, f = forecast.points_cam_m.shape[:3]
    print(f"{forecast.backend}: {k} hypotheses x {p} points x {f} steps ({forecast.timestamps_s[-1]:.2f} s ahead), "
          f"query points from {query['source']}, {wall_time_s:.2f} s")
    print(f"forecast: {json_path}")
    print(f"overlay: {png_path}")
    return 0


def _read_rgb(path: Path):
    import numpy as np

    image = _open_image(path, "--rgb")
    if image.mode not in ("RGB", "RGBA", "L", "LA", "P"):
        raise UsageError(f"--rgb {str(path)!r} must be an 8-bit colour image, got mode {image.mode}")
    return np.array(image.convert("RGB"), dtype=np.uint8)  # a writable copy (torch warns on read-only arrays)


def _read_depth(path: Path):
    import numpy as np

    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise UsageError(f"--depth: no such file {str(path)!r}")
        try:
            depth = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise UsageError(f"--depth {str(path)!r} is not a readable .npy array: {err}") from None
        if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.floating):
            raise UsageError(f"--depth {str(path)!r} must be a 2-D float array of metres, got {depth.shape} "
                             f"{depth.dtype}")
        depth = depth.astype(np.float32)
    else:
        image = _open_image(path, "--depth")
        if image.mode not in DEPTH_PNG_MODES:
            raise UsageError(f"--depth {str(path)!r} must be a 16-bit PNG of millimetres, got mode {image.mode}")
        depth = np.array(image, dtype=np.float32) / 1000.0
    return np.where(np.isfinite(depth) & (depth > 0), depth, np.nan).astype(np.float32)


def _open_image(path: Path, flag: str):
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise UsageError(f"{flag}: no such file {str(path)!r}")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError) as err:
        raise UsageError(f"{flag} {str(path)!r} is not a readable image: {err}") from None
    return image


def _rounded(array, decimals: int = 6) -> list:
    import numpy as np

    return np.round(np.asarray(array, dtype=float), decimals).tolist()


def _json_one_key_per_line(document: dict) -> str:
    """JSON with one top-level key per line and compact values (the arrays stay one line each)."""

    def default(value):
        if hasattr(value, "tolist"):
            return value.tolist()
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")

    lines = [f" {json.dumps(key)}: {json.dumps(value, default=default)}" for key, value in document.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


# --- train -------------------------------------------------------------------------------------
def _train(args: argparse.Namespace) -> int:
    for flag, folder in (("--data", args.data), ("--val", args.val)):
        if folder is not None and not folder.is_dir():
            raise UsageError(f"{flag}: no dataset folder {str(folder)!r} (make one with molmomotion generate-data)")
    if args.init is not None and not args.init.is_file():
        raise UsageError(f"--init: no checkpoint {str(args.init)!r}")
    if args.out is not None and args.out.is_dir():
        raise UsageError(f"--out {str(args.out)!r} is a folder; give a checkpoint file path")

    _quiet_model_loading()
    from molmomotion_ros.forecasting.predictor import resolve_device, shipped_checkpoint
    from molmomotion_ros.forecasting.training import train

    resolve_device(args.device)  # BackendUnavailableError for cuda without a GPU
    out = args.out or shipped_checkpoint(args.model)
    _check_writable(out.parent, what="checkpoint folder")
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
    data_dir = args.data or Path("data") / args.split
    if not data_dir.is_dir():
        raise UsageError(f"no dataset folder {str(data_dir)!r}; make one with `molmomotion generate-data --split "
                         f"{args.split} --out {data_dir}` or give --data")
    out = args.out or Path("results") / f"forecast-{args.split}"
    _check_writable(out, what="output folder")

    _quiet_model_loading()
    from molmomotion_ros.forecasting import baselines, interface, predictor  # noqa: F401  (they register backends)

    unknown = [name for name in args.models if name not in interface.BACKENDS]
    if unknown:
        raise UsageError(f"unknown forecaster {unknown[0]!r}; choose from {', '.join(sorted(interface.BACKENDS))}")
    try:
        from molmomotion_ros.forecasting.evaluation import evaluate_forecasters
    except ImportError as err:
        print(f"{PROG}: error: forecast evaluation is unavailable: {err}", file=sys.stderr)
        return RUNTIME_ERROR

    evaluate_forecasters(data_dir, args.models, out, num_samples=args.samples, episodes_per_family=args.episodes,
                         progress=not args.no_progress)
    print(f"results: {out}")
    return 0


# --- shared ------------------------------------------------------------------------------------
def _quiet_model_loading() -> None:
    """No Hugging Face progress bars while the frozen sentence encoder loads (read when transformers is imported)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


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
        error = getattr(loaded, name, None) if loaded is not None else None
        if error is not None:
            errors.append(error)
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
