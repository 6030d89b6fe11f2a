"""Start a graph of :mod:`molmomotion_ros.graph` without ros2 launch: one process per node.

``molmomotion launch <graph>`` runs exactly what ``ros2 launch molmomotion_ros <graph>.launch.py``
runs (both read :data:`molmomotion_ros.graph.GRAPHS`): each node with its parameter file from
config/ and the graph's overrides, each process with this interpreter (the ROS wheels re-execute
Python and need the same venv in the children). A graph with a runner (sim_eval) ends when the
runner ends; the others run until Ctrl-C. Node output goes to one log file per node.

Managed (lifecycle) nodes start with ``autostart:=false``; a lifecycle manager process
(:mod:`molmomotion_ros.nodes.lifecycle_manager`, its output on this terminal) configures them all at
once and activates them, as the launch files' lifecycle events do. A node that fails to configure is
named with its reason, the graph is stopped and ``launch`` returns 2; a node that exits stops the graph too.
The runner starts with the nodes and waits until they report 'active' before its first episode.
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
RECORDER_STOP_TIMEOUT_S = 60.0  # the recorder writes out its queue and the bag's summary
BRING_UP_TIMEOUT_S = 300.0  # every managed node configured (models loaded) and active
EXIT_START_FAILED = 2  # a node failed to configure or exited: the graph could not start
LIFECYCLE_MANAGER = "molmomotion_ros.nodes.lifecycle_manager"


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


def graph_ros_args(namespace: str | None = None, remaps: tuple[str, ...] = ()) -> tuple[str, ...]:
    """``--ros-args`` that put every process of a graph in ``namespace`` and apply ``remaps`` (``from:=to``)
    to each, as ros2 launch's PushRosNamespace and SetRemap do for a whole launch file."""
    out: list[str] = []
    if namespace:
        out += ["-r", f"__ns:={'/' + namespace.strip('/')}"]
    for remap in remaps:
        source, sep, target = remap.partition(":=")
        if not sep or not source or not target:
            raise ValueError(f"a remapping reads FROM:=TO, got {remap!r}")
        out += ["-r", f"{source}:={target}"]
    return tuple(out)


def node_commands(spec: GraphSpec, overrides: dict[str, dict] | None = None, managed: bool = True,
                  ros_args: tuple[str, ...] = (), arguments: dict[str, str] | None = None) -> list[Process]:
    """The command of every node of ``spec`` (and of its runner, last) with its launch ``arguments`` (name →
    value string, :meth:`GraphSpec.resolve`; ArgumentError for one it lacks). ``overrides`` (``--set``) win over
    the graph's and the arguments'. ``managed``: a lifecycle manager brings the managed nodes up (they start with
    ``autostart:=false``; a ``--set node.autostart=true`` still wins). ``ros_args`` (:func:`graph_ros_args`) go to
    every process, then each node's remappings from the arguments."""
    nodes = all_nodes()
    resolved = spec.resolve(arguments)
    merged: dict[str, dict] = {name: dict(values) for name, values in resolved.overrides.items()}
    for name, values in (overrides or {}).items():
        merged.setdefault(name, {}).update(values)
    unknown = sorted(set(merged) - set(resolved.nodes))
    if unknown:
        raise KeyError(f"graph {spec.name!r} has no node {', '.join(unknown)}; its nodes: "
                       f"{', '.join(resolved.nodes)}")
    out = []
    for name in resolved.nodes:
        node = nodes[name]
        cmd = [sys.executable, "-m", node.module, "--ros-args", "--params-file", str(node.params_path)]
        if managed and node.managed:
            cmd += ["-p", "autostart:=false"]
        for key, value in merged.get(name, {}).items():
            if key != "use_sim_time":
                node.spec(key)  # KeyError for a parameter the node does not declare
            cmd += ["-p", f"{key}:={ros_value(value)}"]
        remaps = [arg for source, target in resolved.remappings.get(name, []) for arg in ("-r", f"{source}:={target}")]
        out.append(Process(name, tuple(cmd) + tuple(ros_args) + tuple(remaps)))
    return out


def lifecycle_manager_command(spec: GraphSpec, ros_args: tuple[str, ...] = (),
                              arguments: dict[str, str] | None = None) -> Process | None:
    """The process that configures and activates the graph's managed nodes (None: the graph has none)."""
    managed = spec.resolve(arguments).managed_nodes
    if not managed:
        return None
    return Process("lifecycle_manager", (sys.executable, "-m", LIFECYCLE_MANAGER, "--ros-args",
                                         "-p", f"node_names:={ros_value(list(managed))}",
                                         "-p", f"timeout_s:={BRING_UP_TIMEOUT_S}", *ros_args))


def recording_plan(spec: GraphSpec, overrides: dict[str, dict] | None, record_dir: Path | None,
                   split_by_episode: bool | None = None) -> tuple[dict[str, dict], bool]:
    """(the node overrides, whether the recorder splits by episode) for a launch of ``spec`` recorded into
    ``record_dir`` (None: not recorded, nothing changes). A graph of simulated episodes (sim_node driven by a runner:
    sim_eval, sim_eval_policy) is recorded a bag per episode (unless ``split_by_episode`` is False), and its
    sim_node publishes each episode's ground truth, which makes a recorded episode scorable offline (unless
    ``overrides`` set ``publish_ground_truth`` already)."""
    overrides = {name: dict(values) for name, values in (overrides or {}).items()}
    episodes = record_dir is not None and spec.runner is not None and "sim_node" in spec.nodes
    if episodes:
        overrides.setdefault("sim_node", {}).setdefault("publish_ground_truth", True)
    return overrides, episodes if split_by_episode is None else bool(split_by_episode and record_dir is not None)


def launch(graph_name: str, overrides: dict[str, dict] | None = None, log_dir: Path | None = None,
           env: dict | None = None, namespace: str | None = None, remaps: tuple[str, ...] = (),
           arguments: dict[str, str] | None = None, record_dir: Path | None = None,
           split_by_episode: bool | None = None) -> int:
    """Start the graph with its launch ``arguments``; return the runner's exit status (0 after Ctrl-C for a graph
    without runner), 2 when a managed node failed to configure, or a node's exit status when it exits (the graph
    is stopped then). ``record_dir``: also record the graph's topics there (``molmomotion record``); in a graph of
    simulated episodes (sim_eval, sim_eval_policy) sim_node then publishes each episode's ground truth (unless
    ``overrides`` say otherwise) and the recording is a bag per episode unless ``split_by_episode`` is False."""
    spec = graph(graph_name)
    ros_args = graph_ros_args(namespace, remaps)
    overrides, split = recording_plan(spec, overrides, record_dir, split_by_episode)
    processes = node_commands(spec, overrides, ros_args=ros_args, arguments=arguments)
    manager = lifecycle_manager_command(spec, ros_args, arguments)
    runner = next((p for p in processes if p.name == spec.runner), None)
    recorder = recorder_command(record_dir, namespace, split) if record_dir is not None else None
    return run_processes(graph_name, [p for p in processes if p is not runner], manager, runner, log_dir, env,
                         recorder=recorder)


def recorder_command(record_dir: Path, namespace: str | None = None, split_by_episode: bool = False) -> Process:
    """``molmomotion record`` of the graph's standard topics (in its namespace) into ``record_dir``; with
    ``split_by_episode`` a bag per sim/episode in it."""
    return Process("recorder", (sys.executable, "-m", "molmomotion_ros.cli", "record", str(record_dir),
                                "--namespace", namespace or "/", "--no-progress",
                                *(("--split-by-episode",) if split_by_episode else ())))


def run_processes(label: str, processes: list[Process], manager: Process | None, runner: Process | None,
                  log_dir: Path | None = None, env: dict | None = None, recorder: Process | None = None) -> int:
    """Run ``processes`` (output to one log file each), the lifecycle ``manager`` and the ``runner`` (both on this
    terminal) until the runner ends, a node exits, the bring-up fails or Ctrl-C/SIGTERM; then stop them all.
    A ``recorder`` starts before the nodes and stops after them, so the bag holds the whole run, its end
    included. The exit status is :func:`launch`'s."""
    log_dir = Path(log_dir or Path("results") / "logs" / f"{label}-{time.strftime('%Y%m%d-%H%M%S')}")
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
    helpers: list[subprocess.Popen] = []  # the lifecycle manager and the runner: output on this terminal
    status = 0
    # SIGTERM (service managers, `docker stop`, `timeout`) stops the graph as Ctrl-C does: Python's default
    # SIGTERM exits at once and would leave the nodes running (an orphaned arm node would keep commanding).
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_terminated)
    print(f"launching {label} (ROS_DOMAIN_ID={env.get('ROS_DOMAIN_ID', '0')}); logs in {log_dir}/", flush=True)
    recording = None
    try:
        if recorder is not None:
            log = open(log_dir / f"{recorder.name}.log", "w")  # noqa: SIM115  (closed with the process)
            recording = subprocess.Popen(recorder.command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
            print(f"  started {recorder.name} (pid {recording.pid})", flush=True)
            started.append((recorder, recording))
        for proc in processes:
            log = open(log_dir / f"{proc.name}.log", "w")  # noqa: SIM115  (closed with the process)
            started.append((proc, subprocess.Popen(proc.command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                   start_new_session=True)))
            print(f"  started {proc.name} (pid {started[-1][1].pid})", flush=True)
        bring_up = subprocess.Popen(manager.command, env=env) if manager else None
        runner_process = subprocess.Popen(runner.command, env=env) if runner else None
        helpers = [p for p in (bring_up, runner_process) if p is not None]
        status = _supervise(label, started, bring_up, runner_process, log_dir)
    except KeyboardInterrupt:
        status = 0 if runner is None else 130
    except Terminated:
        status = 0 if runner is None else 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
        children = [p for p in helpers if p.poll() is None] + [p for _, p in started
                                                                 if p.poll() is None and p is not recording]
        for p in children:
            if p in helpers:
                p.send_signal(signal.SIGINT)
            else:
                os.killpg(p.pid, signal.SIGINT)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for p in children:
            _wait_or_kill(p, max(0.1, deadline - time.monotonic()), group=p not in helpers)
        if recording is not None:
            status = _stop_recorder(recording, log_dir / f"{recorder.name}.log") or status
    return status


def _wait_or_kill(process: subprocess.Popen, timeout_s: float, group: bool) -> None:
    """Wait for an interrupted ``process``; SIGKILL it (its whole process group with ``group``) after ``timeout_s``."""
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        if group:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait()


def _stop_recorder(recording: subprocess.Popen, log: Path) -> int:
    """SIGINT the recorder (it finishes the bag), then print its summary; its exit status when it failed, else 0."""
    if recording.poll() is None:
        os.killpg(recording.pid, signal.SIGINT)
        _wait_or_kill(recording, RECORDER_STOP_TIMEOUT_S, group=True)
    text = log.read_text() if log.is_file() else ""
    summary = text[text.find("topic "):] if "topic " in text else text[-2000:]
    print(summary.rstrip(), flush=True)
    if recording.returncode not in (0, -signal.SIGINT):
        print(f"the recorder exited with status {recording.returncode}; see {log}", file=sys.stderr, flush=True)
        return recording.returncode or 1
    return 0


CELL_RUNNER = {"simulator": "fake_franka", "publish_instruction": True}  # the runner's settings for the fake cell
# The camera at 15 fps (a RealSense colour profile): rendering 30 fps slows the simulation below real time on a
# small machine, and then the controller's time lags the manipulation node's wall-clock timeouts.
CELL_FAKE = {"camera_rate_hz": 15.0}


@dataclass(frozen=True)
class CellEval:
    """The processes of the fake-cell proof: fake_franka (its graph, unchanged), the real_arm graph with its launch
    arguments (execute:=true unless given) and the episode runner resetting fake_franka."""

    processes: list[Process]  # fake_franka first, then real_arm's nodes
    manager: Process | None
    runner: Process


def cell_eval_processes(arguments: dict[str, str] | None = None, overrides: dict[str, dict] | None = None,
                        runner: dict | None = None) -> CellEval:
    """fake_franka + real_arm (``arguments``: its launch arguments; ``overrides``: ``--set`` values per node of
    either graph) + the episode runner (``runner``: its parameters besides :data:`CELL_RUNNER`)."""
    from .graph import GRAPHS
    from .node_specs import NODES

    arguments = {"execute": "true", **(arguments or {})}
    overrides = overrides or {}
    cell, arm = GRAPHS["fake_franka"], GRAPHS["real_arm"]
    unknown = sorted(set(overrides) - set(cell.nodes) - set(arm.resolve(arguments).nodes) - {"episode_runner"})
    if unknown:
        raise KeyError(f"cell-eval starts no node {', '.join(unknown)}")
    fake = node_commands(cell, {"fake_franka": {**CELL_FAKE, **overrides.get("fake_franka", {})}})
    nodes = node_commands(arm, {n: v for n, v in overrides.items() if n in arm.nodes}, arguments=arguments)
    resolved = arm.resolve(arguments)
    values = {**CELL_RUNNER, "managed_nodes": ",".join(resolved.managed_nodes), **(runner or {}),
              **overrides.get("episode_runner", {})}
    spec = NODES["episode_runner"]
    command = [sys.executable, "-m", spec.module, "--ros-args", "--params-file", str(spec.params_path)]
    for key, value in values.items():
        spec.spec(key)
        command += ["-p", f"{key}:={ros_value(value)}"]
    # The runner publishes the instruction where the forecaster reads it.
    command += [arg for source, target in resolved.remappings.get("forecaster_node", []) if source == "instruction"
                for arg in ("-r", f"instruction:={target}")]
    return CellEval(fake + nodes, lifecycle_manager_command(arm, arguments=arguments),
                    Process("episode_runner", tuple(command)))


class Terminated(Exception):
    """The launcher was sent SIGTERM."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated


def _supervise(graph_name: str, started: list[tuple[Process, subprocess.Popen]], bring_up: subprocess.Popen | None,
               runner: subprocess.Popen | None, log_dir: Path) -> int:
    """Wait until the runner ends (its status), the bring-up fails (2), a node exits (its status, or 1), or
    Ctrl-C."""
    while True:
        if bring_up is not None and bring_up.poll() is not None:
            if bring_up.returncode != 0:
                print(f"stopping {graph_name}: its managed nodes did not all become active (above; node logs in "
                      f"{log_dir}/)", file=sys.stderr, flush=True)
                return EXIT_START_FAILED
            bring_up = None
        for proc, p in started:
            if p.poll() is not None:
                print(f"stopping {graph_name}: {proc.name} exited with status {p.returncode}; see "
                      f"{log_dir / (proc.name + '.log')}", file=sys.stderr, flush=True)
                return p.returncode or 1
        if runner is not None and runner.poll() is not None:
            return runner.returncode
        time.sleep(0.2)
