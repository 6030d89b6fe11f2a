"""The ROS 2 graph as data: every node, its executable, its parameters and the graphs we start.

This module is the one source of truth that the nodes (parameter declaration and validation), the
launch files in ``launch/`` and the package CLI (``molmomotion launch ...``) all read. It imports
no rclpy, so the CLI and tests can inspect the graph on a machine without ROS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from .node_specs import NODES
from .node_specs.spec import NodeSpec, ParamSpec

__all__ = ["GRAPHS", "NODES", "PACKAGE", "ArgumentError", "GraphSpec", "LaunchArg", "NodeSpec", "ParamSpec",
           "RECORD_TOPICS", "ResolvedGraph", "all_nodes", "graph", "node", "parameters_markdown", "record_topics"]

PACKAGE = "molmomotion_ros"


def node(name: str) -> NodeSpec:
    if name not in NODES:
        raise KeyError(f"unknown node {name!r}; the package has {', '.join(sorted(NODES))}")
    return NODES[name]


def all_nodes() -> dict[str, NodeSpec]:
    return dict(NODES)


class ArgumentError(ValueError):
    """A launch argument the graph does not have, or a value it does not accept."""


@dataclass(frozen=True)
class LaunchArg:
    """A launch argument of a graph (``name:=value`` on ``ros2 launch`` and ``molmomotion launch`` alike): the
    node parameters it sets, the topics it remaps, the optional nodes it starts.

    A parameter target is ``(node, parameter)`` (the parameter takes the value) or ``(node, parameter, f)`` with
    ``f(value, values)`` computing it (``values``: every argument's, parsed; e.g. arm_id ``fr3`` → joint names
    ``fr3_joint1..7``)."""

    name: str
    default: Any  # its type is the argument's: bool, int, float, str or list
    description: str
    params: tuple[tuple, ...] = ()  # (node, parameter) or (node, parameter, f(value, values))
    remaps: tuple[tuple[str, str], ...] = ()  # (node, name) remapped to the value (not when the value is empty)
    enables: tuple[str, ...] = ()  # optional nodes started when the value is true
    choices: tuple | None = None

    def parse(self, text: str) -> Any:
        """The value of ``name:=text`` (a launch configuration is a string); ArgumentError when not accepted."""
        expected = type(self.default)
        try:
            if expected is bool:
                if text.strip().lower() not in ("true", "false"):
                    raise ValueError("true or false")
                value = text.strip().lower() == "true"
            elif expected in (int, float):
                value = expected(text)
            elif expected is list:
                value = yaml.safe_load(text) if text.strip() else []
                if not isinstance(value, list):
                    raise ValueError("a list such as [0.2, 0.8]")
            else:
                value = text
        except (ValueError, yaml.YAMLError) as err:
            raise ArgumentError(f"{self.name}:={text!r} is not {expected.__name__} ({err})") from None
        if self.choices is not None and value not in self.choices:
            raise ArgumentError(f"{self.name}:={text!r} is not one of {', '.join(map(str, self.choices))}")
        return value

    @property
    def default_text(self) -> str:
        """The default as a launch configuration string (DeclareLaunchArgument's default_value)."""
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        if isinstance(self.default, list):
            return yaml.safe_dump(self.default, default_flow_style=True).strip()
        return str(self.default)


@dataclass(frozen=True)
class ResolvedGraph:
    """A graph with its launch arguments applied: what ros2 launch and ``molmomotion launch`` both start."""

    nodes: tuple[str, ...]  # in start order, the runner last; optional nodes only when enabled
    overrides: dict[str, dict]  # node → {parameter: value}: the graph's, then the arguments'
    remappings: dict[str, list[tuple[str, str]]]  # node → [(from, to)]
    managed_nodes: tuple[str, ...]


@dataclass(frozen=True)
class GraphSpec:
    """A graph that a launch file (``launch/<name>.launch.py``) and ``molmomotion launch <name>`` start:
    its nodes, each with its parameter file from config/ plus these overrides."""

    name: str
    description: str
    nodes: tuple[str, ...]
    overrides: dict = field(default_factory=dict)  # node → {parameter: value} applied after the file
    runner: str | None = None  # a node that drives the graph and exits when done (sim_eval's episodes)
    arguments: tuple[LaunchArg, ...] = ()  # besides ``namespace``, which every graph takes

    def __post_init__(self):
        if self.runner is not None:  # the runner waits until the graph's managed nodes are active
            runner = {"managed_nodes": ",".join(self.managed_nodes), **self.overrides.get(self.runner, {})}
            object.__setattr__(self, "overrides", {**self.overrides, self.runner: runner})

    @property
    def managed_nodes(self) -> tuple[str, ...]:
        """The graph's lifecycle nodes (brought to 'active' by a lifecycle manager or by themselves)."""
        return tuple(name for name in self.nodes if NODES[name].managed)

    def argument(self, name: str) -> LaunchArg:
        for a in self.arguments:
            if a.name == name:
                return a
        known = ", ".join(["namespace", *(a.name for a in self.arguments)])
        raise ArgumentError(f"graph {self.name!r} has no launch argument {name!r}; its arguments: {known} "
                            f"(--show-args describes them)")

    def resolve(self, arguments: dict[str, str] | None = None) -> ResolvedGraph:
        """The nodes, parameter overrides and remappings with ``arguments`` (name → value as a string; the
        others take their defaults). ArgumentError names an unknown argument or a refused value."""
        given = dict(arguments or {})
        for name in given:
            self.argument(name)
        values = {a.name: a.parse(given[a.name]) if a.name in given else a.default for a in self.arguments}
        optional = {n for a in self.arguments for n in a.enables}
        enabled = {n for a in self.arguments if values[a.name] for n in a.enables}
        nodes = tuple(n for n in self.nodes if n not in optional or n in enabled)
        overrides = {n: dict(v) for n, v in self.overrides.items() if n in nodes or n == self.runner}
        remappings: dict[str, list[tuple[str, str]]] = {}
        for a in self.arguments:
            value = values[a.name]
            for node_name, param, *compute in a.params:
                computed = compute[0](value, values) if compute else value
                # An empty list sets nothing (the node's default applies): a ROS parameter has no typed empty array.
                if node_name in nodes and computed != []:
                    overrides.setdefault(node_name, {})[param] = computed
            for node_name, source in a.remaps:
                if node_name in nodes and value and value != source:
                    remappings.setdefault(node_name, []).append((source, value))
        return ResolvedGraph(nodes=nodes + ((self.runner,) if self.runner else ()), overrides=overrides,
                             remappings=remappings, managed_nodes=tuple(n for n in nodes if NODES[n].managed))


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
                  "forecaster_node": {**_SIM_TIME, "extrinsics_source": "topic", "max_frame_age_s": 3.0,
                                      "instruction_timeout_s": 30.0},
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
                  "forecaster_node": {**_SIM_TIME, "extrinsics_source": "topic", "max_frame_age_s": 3.0,
                                      "instruction_timeout_s": 30.0},
                  "policy_node": dict(_SIM_TIME),
              },
              runner="episode_runner"),
)}
GRAPHS["fake_franka"] = GraphSpec(
    "fake_franka", "a simulated Franka cell: the interfaces franka_ros2 and realsense2_camera expose (their default "
    "names, types, QoS and semantics), backed by the PyBullet world", ("fake_franka",))


# --- real_arm: a Franka FR3 cell (franka_ros2 + realsense2_camera with align_depth) ------------------------------
# Names are the drivers' defaults, so a plain `ros2 launch ... real_arm.launch.py` fits franka.launch.py
# robot_type:=fr3 and rs_launch.py align_depth.enable:=true, and fake_franka offers the same names.
_F, _M = "forecaster_node", "manipulation_node"


def _base_frame(value: str, values: dict) -> str:
    return value or f"{values['arm_id']}_link0"


def _contact_scaling(value: float, values: dict) -> float:
    # Approach/carry/place at 40 % of the free speed, as the package's defaults (0.2 of 0.5).
    return max(0.01, round(0.4 * value, 4))


REAL_ARM_ARGUMENTS = (
    LaunchArg("arm_id", "fr3", "franka_ros2 robot_type: joint names <arm_id>_joint1..7 and "
              "<arm_id>_finger_joint1..2, base frame <arm_id>_link0",
              params=((_M, "arm_joint_names", lambda v, _: [f"{v}_joint{i}" for i in range(1, 8)]),
                      (_M, "finger_joint_names", lambda v, _: [f"{v}_finger_joint{i}" for i in (1, 2)]))),
    LaunchArg("base_frame", "", "frame of forecasts, camera poses and planning: the robot base (empty: "
              "<arm_id>_link0); there is no world frame on a real cell",
              params=((_F, "world_frame", _base_frame), (_M, "world_frame", _base_frame))),
    LaunchArg("camera_frame", "", "the colour camera's optical frame looked up in TF (empty: camera_info's "
              "frame_id, camera_color_optical_frame)", params=((_F, "camera_frame"), (_M, "camera_frame"))),
    LaunchArg("color_topic", "/camera/camera/color/image_raw", "colour image (rgb8)",
              remaps=((_F, "camera/color/image_raw"),)),
    LaunchArg("depth_topic", "/camera/camera/aligned_depth_to_color/image_raw",
              "depth aligned to the colour image (16UC1 mm or 32FC1 m)",
              remaps=((_F, "camera/depth/image_raw"), (_M, "camera/depth/image_raw"))),
    LaunchArg("camera_info_topic", "/camera/camera/color/camera_info", "the colour camera's camera_info "
              "(plumb_bob accepted)", remaps=((_F, "camera/color/camera_info"), (_M, "camera/color/camera_info"))),
    LaunchArg("joint_states", "/joint_states", "JointState of the arm's joints: franka.launch.py's merged "
              "joint_states (arm + fingers, 30 Hz); /franka/joint_states has the arm alone at 1 kHz",
              remaps=((_M, "joint_states"),)),
    LaunchArg("gripper_joint_states", "/franka_gripper/joint_states", "the fingers' JointState, read when "
              "joint_states lacks them (empty: none)", params=((_M, "gripper_joint_states"),)),
    LaunchArg("arm_action", "/fr3_arm_controller/follow_joint_trajectory", "FollowJointTrajectory action of the "
              "arm's joint_trajectory_controller", params=((_M, "arm_action"),)),
    LaunchArg("gripper_action", "/franka_gripper/gripper_action", "GripperCommand action of franka_gripper",
              params=((_M, "gripper_action"),)),
    LaunchArg("planner", "ompl", "motion planner: ompl (OMPL over the depth point cloud, needs no MoveIt) or "
              "moveit_py (MoveIt 2's Python bindings; pass moveit_config)", choices=("ompl", "moveit_py"),
              params=((_M, "planner_backend"),)),
    LaunchArg("moveit_config", "", "planner:=moveit_py: moveit_py's YAML configuration",
              params=((_M, "moveit_config"),)),
    LaunchArg("velocity_scaling", 0.1, "fraction of the joint velocity limits for free motions (approach, "
              "carry and place at 40 % of it); low for a first run on hardware",
              params=((_M, "free_velocity_scaling"), (_M, "contact_velocity_scaling", _contact_scaling))),
    LaunchArg("acceleration_scaling", 0.0, "fraction of the joint acceleration limits (0: as velocity_scaling)",
              params=((_M, "acceleration_scaling"),)),
    LaunchArg("workspace_box_m", [], "[xmin, xmax, ymin, ymax, zmin, zmax] in the base frame that every planned "
              "TCP position must stay inside (empty: config/planner.yaml's)", params=((_M, "workspace_box_m"),)),
    LaunchArg("execute", False, "false (default): dry run, plan and publish manipulation/preview and "
              "manipulation/markers, send no goal until ~/execute is called; true: move the arm",
              params=((_M, "execute"),)),
    LaunchArg("speech", False, "also start speech_node (spoken instructions from the audio topic)",
              enables=("speech_node",)),
    LaunchArg("instruction_topic", "instruction", "the instruction topic (std_msgs/String) the forecaster reads "
              "and speech_node writes", remaps=((_F, "instruction"), ("speech_node", "instruction"))),
)


GRAPHS["real_arm"] = GraphSpec(
    "real_arm", "forecaster + manipulation (+ speech with speech:=true) on a Franka FR3 cell: franka_ros2's "
    "FollowJointTrajectory and GripperCommand actions, realsense2_camera's aligned RGB-D, extrinsics from TF; "
    "configured by launch arguments (--show-args), a dry run unless execute:=true",
    (_F, _M, "speech_node"),
    overrides={_F: {"extrinsics_source": "tf"},
               _M: {"extrinsics_source": "tf", "arm_interface": "action",
                    "robot_base_pose": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]}},
    arguments=REAL_ARM_ARGUMENTS)


# What `molmomotion record` records by default: the topics the package's nodes publish and read (relative names
# resolve against the recording's namespace, as the nodes' do) and, for real_arm, the drivers' topics named by its
# launch arguments' defaults (realsense2_camera's camera, franka_ros2's joint states). /clock is a simulator's time
# (sim_node's): a sim recording then plays on its own clock (`molmomotion play` without --clock); a real cell has none.
_REAL_ARM_TOPIC_ARGUMENTS = ("color_topic", "depth_topic", "camera_info_topic", "joint_states", "gripper_joint_states")
RECORD_TOPICS = (
    "camera/color/image_raw", "camera/depth/image_raw", "camera/color/camera_info", "camera/pose",
    *(a.default for a in REAL_ARM_ARGUMENTS if a.name in _REAL_ARM_TOPIC_ARGUMENTS),
    "/tf", "/tf_static", "joint_states", "instruction",
    "forecast/trajectory", "forecast/hypotheses", "forecast/scores", "forecast/markers", "forecast/goal_pose",
    "forecast/status",
    "arm_controller/joint_trajectory", "manipulation/preview", "manipulation/markers", "gripper/command",
    "manipulation/status", "sim/episode", "sim/ground_truth", "/diagnostics", "/clock",
)


def record_topics(namespace: str = "/") -> list[str]:
    """RECORD_TOPICS as absolute names in ``namespace``, without repeats."""
    prefix = "/" + namespace.strip("/") if namespace.strip("/") else ""
    names = [t if t.startswith("/") else f"{prefix}/{t}" for t in RECORD_TOPICS]
    return list(dict.fromkeys(names))


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
    for g in GRAPHS.values():
        if not g.arguments:
            continue
        lines += ["", f"### Launch arguments of `{g.name}`", "",
                  f"`ros2 launch {PACKAGE} {g.name}.launch.py name:=value` or `molmomotion launch {g.name} "
                  "name:=value` (both also take `namespace`).", "",
                  "| argument | default | sets | description |", "|---|---|---|---|"]
        for a in g.arguments:
            sets = [f"{n}.{p}" for n, p, *_ in a.params] + [f"remap {n}: {t}" for n, t in a.remaps] + \
                [f"starts {n}" for n in a.enables]
            default = f"`{a.default_text}`" if a.default_text else '`""`'
            lines.append(f"| `{a.name}` | {default} | {', '.join(sets)} | {a.description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(parameters_markdown(), end="")
