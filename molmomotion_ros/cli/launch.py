"""``molmomotion launch``: start a ROS 2 graph of the package as processes (the pip route to ``ros2 launch``).

Building its parser reads the graph table (molmomotion_ros.graph, no rclpy); the launcher loads in the handler.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .common import UsageError, family_list, key_value, positive_int


def add_parser(commands) -> None:
    """Add ``launch`` to the ``molmomotion`` subcommands."""
    from molmomotion_ros.graph import GRAPHS

    launch = commands.add_parser(
        "launch", help="start a ROS 2 graph of the package (the pip route to `ros2 launch`)",
        description="Start the nodes of a graph as separate processes with the same parameter files and "
        "overrides as launch/<graph>.launch.py. sim_eval and sim_eval_policy run their episode runner and "
        "stop the nodes when it is done; the other graphs run until Ctrl-C. Graphs: "
        + "; ".join(f"{g.name}: {g.description}" for g in GRAPHS.values()) + ".",
    )
    launch.add_argument("graph", choices=sorted(GRAPHS), help="which graph")
    launch.add_argument("arguments", nargs="*", metavar="NAME:=VALUE",
                        help="launch arguments, as on `ros2 launch` (e.g. real_arm execute:=true arm_id:=fr3); "
                        "--show-args lists a graph's")
    launch.add_argument("--show-args", action="store_true",
                        help="list the graph's launch arguments with defaults and descriptions (ros2 launch -s)")
    launch.add_argument("--set", dest="overrides", action="append", default=[], type=key_value,
                        metavar="NODE.PARAM=VALUE", help="override a node parameter (YAML value); repeatable")
    launch.add_argument("--suite", help="sim_eval: suite to run (episode_runner.suite)")
    launch.add_argument("--episodes", type=positive_int, metavar="N",
                        help="sim_eval: episodes per family (episode_runner.episodes_per_family)")
    launch.add_argument("--families", type=family_list, metavar="A,B", help="sim_eval: families to run")
    launch.add_argument("--backend", help="forecaster backend (forecaster_node.backend): fm, ar, stationary, ...")
    launch.add_argument("--policy", metavar="NAME|PATH", help="sim_eval_policy: the policy checkpoint "
                        "(policy_node.policy_checkpoint): shipped A, B or C, or a path")
    launch.add_argument("--out", type=Path, metavar="PATH", help="sim_eval: results JSON (episode_runner.out)")
    launch.add_argument("--log-dir", type=Path, metavar="DIR",
                        help="node logs (default: results/logs/<graph>-<time>/)")
    launch.add_argument("--isolated", action="store_true",
                        help="use a random ROS_DOMAIN_ID and localhost-only discovery (no other graph hears it)")
    launch.add_argument("--namespace", metavar="NS", help="start every node of the graph in this namespace "
                        "(as ros2 launch's PushRosNamespace; topics, services and node names move with it)")
    launch.add_argument("--remap", dest="remaps", action="append", default=[], metavar="FROM:=TO",
                        help="remap a name in every node of the graph (as ros2 launch's SetRemap); repeatable")
    launch.add_argument("--record", type=Path, metavar="DIR",
                        help="also record the graph's standard topics into a rosbag2 MCAP bag in DIR (a new or empty "
                        "folder), as `molmomotion record DIR` would; the recorder starts before the nodes and stops "
                        "after them. sim_eval and sim_eval_policy: a bag per episode, DIR/<suite>-<family>-<seed> "
                        "(`molmomotion record --split-by-episode`), and sim_node publishes each episode's ground "
                        "truth (sim/ground_truth; --set sim_node.publish_ground_truth=false turns it off)")
    launch.add_argument("--record-one-bag", action="store_true",
                        help="with --record in sim_eval or sim_eval_policy: one bag for the whole run instead of a "
                        "bag per episode")
    launch.add_argument("--no-progress", action="store_true", help="sim_eval: hide the progress bar")
    launch.set_defaults(handler=_launch)


def launch_arguments(spec, texts: list[str]) -> dict[str, str]:
    """``NAME:=VALUE`` positionals as {name: value}, each checked against the graph's arguments (UsageError)."""
    from molmomotion_ros.graph import ArgumentError

    arguments: dict[str, str] = {}
    for text in texts:
        name, sep, value = text.partition(":=")
        if not sep or not name:
            raise UsageError(f"a launch argument reads NAME:=VALUE, got {text!r}")
        arguments[name] = value
    try:
        spec.resolve({k: v for k, v in arguments.items() if k != "namespace"})
    except ArgumentError as err:
        raise UsageError(str(err)) from None
    return arguments


def show_arguments(spec) -> str:
    """The graph's launch arguments as ``ros2 launch -s`` prints them."""
    lines = ["Arguments (pass arguments as '<name>:=<value>'):", "",
             "    'namespace':", "        namespace of every node", "        (default: '')"]
    for a in spec.arguments:
        choices = f"; one of {', '.join(map(str, a.choices))}" if a.choices else ""
        lines += ["", f"    '{a.name}':", f"        {a.description}{choices}", f"        (default: '{a.default_text}')"]
    return "\n".join(lines)


def _launch(args: argparse.Namespace) -> int:
    import random

    from molmomotion_ros.graph import all_nodes, graph
    from molmomotion_ros.launcher import launch

    spec = graph(args.graph)
    if args.show_args:
        print(show_arguments(spec))
        return 0
    arguments = launch_arguments(spec, args.arguments)
    namespace = arguments.pop("namespace", None) or args.namespace
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
                raise UsageError(err.args[0]) from None
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
        if "policy_node" not in spec.nodes:
            raise UsageError(f"--policy needs a graph with a policy_node (sim_eval_policy), not {args.graph}")
        problem = nodes["policy_node"].spec("policy_checkpoint").problem(args.policy)
        if problem:
            raise UsageError(problem)
        overrides.setdefault("policy_node", {})["policy_checkpoint"] = args.policy
    env = dict(os.environ)
    if args.isolated:
        env["ROS_DOMAIN_ID"] = str(random.randint(1, 101))
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    for remap in args.remaps:
        source, sep, target = remap.partition(":=")
        if not (sep and source and target):
            raise UsageError(f"--remap reads FROM:=TO, got {remap!r}")
    if args.record_one_bag and args.record is None:
        raise UsageError("--record-one-bag goes with --record DIR")
    if args.record is not None:
        from molmomotion_ros.bags.writer import prepare_bag_folder

        prepare_bag_folder(args.record)  # a bad folder ends here (exit 2), before any node starts
    try:
        return launch(args.graph, overrides, args.log_dir, env, namespace=namespace, remaps=tuple(args.remaps),
                      arguments=arguments, record_dir=args.record,
                      split_by_episode=False if args.record_one_bag else None)
    except KeyError as err:
        raise UsageError(err.args[0]) from None
