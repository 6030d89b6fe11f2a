"""The ROS 2 graph as data: every node, its executable, its parameters and the graphs we start.

This module is the one source of truth that the nodes (parameter declaration and validation), the
launch files in ``launch/`` and the package CLI (``molmomotion launch ...``) all read. It imports
no rclpy, so the CLI and tests can inspect the graph on a machine without ROS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .node_specs import NODES
from .node_specs.spec import NodeSpec, ParamSpec

__all__ = ["GRAPHS", "NODES", "PACKAGE", "GraphSpec", "NodeSpec", "ParamSpec", "all_nodes", "graph", "node",
           "parameters_markdown"]

PACKAGE = "molmomotion_ros"


def node(name: str) -> NodeSpec:
    if name not in NODES:
        raise KeyError(f"unknown node {name!r}; the package has {', '.join(sorted(NODES))}")
    return NODES[name]


def all_nodes() -> dict[str, NodeSpec]:
    return dict(NODES)


@dataclass(frozen=True)
class GraphSpec:
    """A graph that a launch file (``launch/<name>.launch.py``) and ``molmomotion launch <name>`` start:
    its nodes, each with its parameter file from config/ plus these overrides."""

    name: str
    description: str
    nodes: tuple[str, ...]
    overrides: dict = field(default_factory=dict)  # node → {parameter: value} applied after the file
    runner: str | None = None  # a node that drives the graph and exits when done (sim_eval's episodes)

    def __post_init__(self):
        if self.runner is not None:  # the runner waits until the graph's managed nodes are active
            runner = {"managed_nodes": ",".join(self.managed_nodes), **self.overrides.get(self.runner, {})}
            object.__setattr__(self, "overrides", {**self.overrides, self.runner: runner})

    @property
    def managed_nodes(self) -> tuple[str, ...]:
        """The graph's lifecycle nodes (brought to 'active' by a lifecycle manager or by themselves)."""
        return tuple(name for name in self.nodes if NODES[name].managed)


_SIM_TIME = {"use_sim_time": True}
GRAPHS: dict[str, GraphSpec] = {g.name: g for g in (
    GraphSpec("forecaster", "the forecaster alone, for a real RGB-D camera (remap the camera topics)",
              ("forecaster_node",)),
    GraphSpec("sim_eval", "simulated arm + speech + forecaster + manipulation, driven episode by episode "
              "by the episode runner, which writes the harness's results JSON",
              ("sim_node", "speech_node", "forecaster_node", "manipulation_node"),
              overrides={
                  # Twice real time: the forecaster and the planner (~0.1-1 s of wall time each) keep up
                  # on 2 cores, so their clocks and frames stay close to the simulator's. 5 camera
                  # frames per simulated second are plenty for one forecast per instruction.
                  "sim_node": {"real_time_factor": 2.0, "camera_rate_hz": 5.0, "clock_rate_hz": 50.0,
                               "reset_on_start": False},
                  "forecaster_node": {**_SIM_TIME, "extrinsics_source": "topic", "max_frame_age_s": 3.0},
                  "manipulation_node": dict(_SIM_TIME),
                  "speech_node": dict(_SIM_TIME),
              },
              runner="episode_runner"),
    GraphSpec("sim_eval_policy", "simulated arm + forecaster + a learned closed-loop policy in the policy node "
              "(shipped A by default; a forecast-conditioned policy reads the forecast of its first frame), "
              "driven episode by episode by the episode runner",
              ("sim_node", "forecaster_node", "policy_node"),
              overrides={
                  # Real time and a 15 Hz camera: the policy observes a new frame after each chunk of 4
                  # samples (267 ms), as in the harness, and needs ~60 ms to decide. The forecaster
                  # forecasts once per instruction.
                  "sim_node": {"real_time_factor": 1.0, "camera_rate_hz": 15.0, "clock_rate_hz": 100.0,
                               "reset_on_start": False},
                  "forecaster_node": {**_SIM_TIME, "extrinsics_source": "topic", "max_frame_age_s": 3.0},
                  "policy_node": dict(_SIM_TIME),
              },
              runner="episode_runner"),
    GraphSpec("real_arm", "forecaster + manipulation with MoveIt's moveit_py on a real Panda",
              ("forecaster_node", "manipulation_node"),
              overrides={"manipulation_node": {"planner_backend": "moveit_py"}}),
)}
GRAPHS["fake_franka"] = GraphSpec(
    "fake_franka", "a simulated Franka cell: the interfaces franka_ros2 and realsense2_camera expose (their default "
    "names, types, QoS and semantics), backed by the PyBullet world", ("fake_franka",))


def graph(name: str) -> GraphSpec:
    if name not in GRAPHS:
        raise KeyError(f"unknown graph {name!r}; choose from {', '.join(sorted(GRAPHS))}")
    return GRAPHS[name]


def parameters_markdown() -> str:
    """Every node's parameters as Markdown tables (docs/ros_parameters.md is this, checked by a test)."""
    lines = ["# Node parameters", "",
             "Generated from `molmomotion_ros/node_specs/` by `python -m molmomotion_ros.graph > "
             "docs/ros_parameters.md`; each node's defaults file is `config/<node>.yaml`. Every value is checked "
             "(type, choices, range) at start (a managed node: at configure) and at runtime. Read-only parameters of "
             "a plain node can only be set at start; a managed (lifecycle) node reads them at configure, so they "
             "can be set while it is unconfigured (then configure again).", ""]
    for name, node in sorted(all_nodes().items()):
        kind = "managed (lifecycle) node" if node.managed else "plain node"
        lines += [f"## {name}", "", f"`ros2 run {PACKAGE} {node.executable}` · {kind} · params file "
                  f"`config/{node.params_file}` · module `{node.module}`", "",
                  "| parameter | default | allowed | description |", "|---|---|---|---|"]
        for p in node.parameters:
            allowed = (" \\| ".join(map(str, p.choices)) if p.choices else
                       f"[{p.range[0]:g}, {p.range[1]:g}]" if p.range else type(p.default).__name__)
            ro = (" (read at configure)" if node.managed else " (read-only)") if p.read_only else ""
            default = f"`{p.default!r}`" if p.default != "" else '`""`'
            lines.append(f"| `{p.name}` | {default} | {allowed} | {p.description}{ro} |")
        lines.append("")
    lines += ["## Graphs", "", "| graph | nodes | overrides |", "|---|---|---|"]
    for g in GRAPHS.values():
        overrides = "; ".join(f"{n}: " + ", ".join(f"{k}={v}" for k, v in o.items()) for n, o in g.overrides.items())
        nodes = ", ".join(g.nodes) + (f" + runner {g.runner}" if g.runner else "")
        lines.append(f"| `{g.name}` | {nodes} | {overrides or '—'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(parameters_markdown(), end="")
