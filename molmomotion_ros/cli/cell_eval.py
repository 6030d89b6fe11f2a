"""``molmomotion cell-eval``: the real_arm graph against the simulated Franka cell, episode by episode.

fake_franka (the interfaces franka_ros2 and realsense2_camera expose), the real_arm graph unchanged but for its
launch arguments (``execute:=true`` unless given) and the episode runner, which resets fake_franka per (suite,
family, seed), publishes the instruction, judges success and writes the harness's results JSON: each its own
process, as on a real cell. Compare with the sim_eval graph on the same seeds (the same suite and --episodes
select the same ones) with ``--compare`` or ``molmomotion results``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .common import UsageError, family_list, key_value, positive_int

DEFAULT_OUT = Path("results/cell-eval.json")


def add_parser(commands) -> None:
    """Add ``cell-eval`` to the ``molmomotion`` subcommands."""
    cell = commands.add_parser(
        "cell-eval", help="evaluate the real_arm graph against the simulated Franka cell (fake_franka)",
        description="Start fake_franka, the real_arm graph (its launch arguments after the options; execute:=true "
        "unless given) and the episode runner as separate processes; run the suite's test episodes and write the "
        "harness's results JSON. Example: molmomotion cell-eval --episodes 25 --isolated --compare "
        "results/sim-eval-graph.json (from: molmomotion launch sim_eval --episodes 25 --out "
        "results/sim-eval-graph.json).")
    cell.add_argument("arguments", nargs="*", metavar="NAME:=VALUE",
                      help="real_arm launch arguments (molmomotion launch real_arm --show-args)")
    cell.add_argument("--suite", default="main", help="suite whose test episodes run (default: main)")
    cell.add_argument("--episodes", type=positive_int, default=25, metavar="N", help="episodes per family (25)")
    cell.add_argument("--families", type=family_list, metavar="A,B", help="families to run (default: all)")
    cell.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="PATH", help=f"results JSON ({DEFAULT_OUT})")
    cell.add_argument("--backend", help="forecaster backend (forecaster_node.backend)")
    cell.add_argument("--set", dest="overrides", action="append", default=[], type=key_value,
                      metavar="NODE.PARAM=VALUE", help="override a parameter of fake_franka, a real_arm node or "
                      "episode_runner (YAML value); repeatable")
    cell.add_argument("--compare", type=Path, metavar="RESULTS",
                      help="afterwards, print these results (e.g. the sim_eval graph's) beside the cell's")
    cell.add_argument("--log-dir", type=Path, metavar="DIR", help="node logs (default: results/logs/cell-eval-<time>/)")
    cell.add_argument("--isolated", action="store_true",
                      help="use a random ROS_DOMAIN_ID and localhost-only discovery (no other graph hears it)")
    cell.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    cell.set_defaults(handler=_cell_eval)


def _cell_eval(args: argparse.Namespace) -> int:
    import json
    import random

    from molmomotion_ros.graph import GRAPHS, all_nodes
    from molmomotion_ros.launcher import cell_eval_processes, run_processes

    from .launch import launch_arguments

    arguments = launch_arguments(GRAPHS["real_arm"], args.arguments)
    if "namespace" in arguments:
        raise UsageError("cell-eval runs real_arm without a namespace (fake_franka and the runner use the root)")
    nodes = all_nodes()
    overrides: dict[str, dict] = {}
    for key, value in args.overrides:
        node, sep, param = key.partition(".")
        if not sep or node not in nodes:
            raise UsageError(f"--set {key}: expected NODE.PARAM with NODE one of {', '.join(sorted(nodes))}")
        try:
            problem = nodes[node].spec(param).problem(value)
        except KeyError as err:
            raise UsageError(err.args[0]) from None
        if problem:
            raise UsageError(f"--set {key}: {problem}")
        overrides.setdefault(node, {})[param] = value
    if args.backend:
        problem = nodes["forecaster_node"].spec("backend").problem(args.backend)
        if problem:
            raise UsageError(problem)
        overrides.setdefault("forecaster_node", {})["backend"] = args.backend
    compare = None
    if args.compare:
        try:
            compare = json.loads(args.compare.read_text())
            compare["summary"]  # noqa: B018  (a results file has one)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UsageError(f"--compare {args.compare}: not a readable results file ({err})") from None
    runner = {"suite": args.suite, "episodes_per_family": args.episodes, "out": str(args.out),
              "families": ",".join(args.families) if args.families else "", "progress": not args.no_progress}
    try:
        cell = cell_eval_processes(arguments, overrides, runner)
    except KeyError as err:
        raise UsageError(err.args[0]) from None
    env = dict(os.environ)
    if args.isolated:
        env["ROS_DOMAIN_ID"] = str(random.randint(1, 101))
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    status = run_processes("cell-eval", cell.processes, cell.manager, cell.runner, args.log_dir, env)
    if status == 0 and compare is not None:
        from molmomotion_sim.evaluation import compare_table

        print(compare_table([compare, json.loads(args.out.read_text())]))
    return status
