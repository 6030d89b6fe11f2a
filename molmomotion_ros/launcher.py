"""Start a graph of :mod:`molmomotion_ros.graph` without ros2 launch: one process per node.

``molmomotion launch <graph>`` runs exactly what ``ros2 launch molmomotion_ros <graph>.launch.py``
runs (both read :data:`molmomotion_ros.graph.GRAPHS`): each node with its parameter file from
config/ and the graph's overrides, each process with this interpreter (the ROS wheels re-execute
Python and need the same venv in the children). A graph with a runner (sim_eval) ends when the
runner ends; the others run until Ctrl-C. Node output goes to one log file per node.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .graph import GraphSpec, all_nodes, graph

STOP_TIMEOUT_S = 10.0


def ros_value(value) -> str:
    """A parameter value as ``--ros-args -p name:=value`` parses it (YAML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(ros_value(v) for v in value) + "]"
    if isinstance(value, str):
        return f"'{value}'" if value == "" or value.lower() in ("true", "false", "null", "on", "off", "yes", "no") \
            else value
    return repr(value)


@dataclass(frozen=True)
class Process:
    name: str
    command: tuple[str, ...]


def node_commands(spec: GraphSpec, overrides: dict[str, dict] | None = None) -> list[Process]:
    """The command of every node of ``spec`` (and of its runner, last)."""
    nodes = all_nodes()
    merged: dict[str, dict] = {name: dict(values) for name, values in spec.overrides.items()}
    for name, values in (overrides or {}).items():
        merged.setdefault(name, {}).update(values)
    unknown = sorted(set(merged) - set(spec.nodes) - {spec.runner})
    if unknown:
        raise KeyError(f"graph {spec.name!r} has no node {', '.join(unknown)}; its nodes: "
                       f"{', '.join(spec.nodes + ((spec.runner,) if spec.runner else ()))}")
    out = []
    for name in spec.nodes + ((spec.runner,) if spec.runner else ()):
        node = nodes[name]
        cmd = [sys.executable, "-m", node.module, "--ros-args", "--params-file", str(node.params_path)]
        for key, value in merged.get(name, {}).items():
            if key != "use_sim_time":
                node.spec(key)  # KeyError for a parameter the node does not declare
            cmd += ["-p", f"{key}:={ros_value(value)}"]
        out.append(Process(name, tuple(cmd)))
    return out


def launch(graph_name: str, overrides: dict[str, dict] | None = None, log_dir: Path | None = None,
           env: dict | None = None) -> int:
    """Start the graph; return the runner's exit status (0 after Ctrl-C for a graph without runner)."""
    spec = graph(graph_name)
    processes = node_commands(spec, overrides)
    log_dir = Path(log_dir or Path("results") / "logs" / f"{graph_name}-{time.strftime('%Y%m%d-%H%M%S')}")
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(env or os.environ)
    if "FASTDDS_DEFAULT_PROFILES_FILE" not in env:
        from .paths import config_path

        profile = config_path("fastdds_fast_discovery.xml")
        if profile.is_file():
            env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    started: list[tuple[Process, subprocess.Popen]] = []
    status = 0
    print(f"launching {graph_name} (ROS_DOMAIN_ID={env.get('ROS_DOMAIN_ID', '0')}); logs in {log_dir}/", flush=True)
    try:
        for proc in processes:
            if proc.name == spec.runner:
                continue
            log = open(log_dir / f"{proc.name}.log", "w")  # noqa: SIM115  (closed with the process)
            started.append((proc, subprocess.Popen(proc.command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                   start_new_session=True)))
            print(f"  started {proc.name} (pid {started[-1][1].pid})", flush=True)
        if spec.runner:
            runner = next(p for p in processes if p.name == spec.runner)
            status = subprocess.call(runner.command, env=env)
        else:
            while all(p.poll() is None for _, p in started):
                time.sleep(0.5)
            for proc, p in started:
                if p.returncode is not None:
                    print(f"{proc.name} exited with status {p.returncode}; see {log_dir / (proc.name + '.log')}",
                          file=sys.stderr)
                    status = p.returncode or 1
    except KeyboardInterrupt:
        status = 0 if not spec.runner else 130
    finally:
        for _, p in started:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for _proc, p in started:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    return status
