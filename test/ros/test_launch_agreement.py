"""The launch files, the package CLI (`molmomotion launch`) and the nodes agree on one graph.

ros2 launch is not installable here, so the launch files are checked by reading them: each builds
its graph from molmomotion_ros.graph, whose node list, executables, parameter files and overrides
are checked against setup.py's entry points, config/ and the nodes' declared parameters; and by running
them against stand-ins of launch and launch_ros that record what they are given (which actions, which
lifecycle events).
"""

import ast
import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from molmomotion_ros.graph import GRAPHS, all_nodes
from molmomotion_ros.launcher import lifecycle_manager_command, node_commands

ROOT = Path(__file__).resolve().parents[2]


def console_scripts() -> dict[str, str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    entries = [ast.literal_eval(e) for e in value.elts]
                    return {name.strip(): target.strip() for name, target in (e.split("=") for e in entries)}
    raise AssertionError("setup.py has no console_scripts")


def test_every_node_is_an_entry_point_with_a_main():
    scripts = console_scripts()
    for name, spec in all_nodes().items():
        assert scripts.get(spec.executable) == f"{spec.module}:main", name
        assert importlib.util.find_spec(spec.module) is not None, spec.module
        source = Path(importlib.util.find_spec(spec.module).origin).read_text()
        assert "def main(" in source and 'if __name__ == "__main__":' in source, spec.module


@pytest.mark.parametrize("name", sorted(all_nodes()))
def test_params_file_sets_only_declared_valid_parameters(name):
    spec = all_nodes()[name]
    document = yaml.safe_load(spec.params_path.read_text())
    assert list(document) == [spec.name], f"{spec.params_path} must hold exactly the key {spec.name}"
    params = document[spec.name]["ros__parameters"]
    declared = {p.name for p in spec.parameters}
    assert set(params) <= declared, f"undeclared: {sorted(set(params) - declared)}"
    for key, value in params.items():
        assert spec.spec(key).problem(value) is None, spec.spec(key).problem(value)
    for p in spec.parameters:  # the defaults are valid too
        assert p.problem(p.default) is None, p.problem(p.default)


@pytest.mark.parametrize("graph_name", sorted(GRAPHS))
def test_graph_overrides_are_declared_and_valid(graph_name):
    """The graph's own overrides and those its launch arguments set with their defaults."""
    spec = GRAPHS[graph_name]
    nodes = all_nodes()
    for node, values in spec.resolve().overrides.items():
        assert node in spec.nodes or node == spec.runner
        for key, value in values.items():
            if key == "use_sim_time":
                assert isinstance(value, bool)
                continue
            assert nodes[node].spec(key).problem(value) is None


@pytest.mark.parametrize("graph_name", sorted(GRAPHS))
def test_launch_file_builds_its_graph_and_the_cli_starts_the_same_nodes(graph_name):
    path = ROOT / "launch" / f"{graph_name}.launch.py"
    assert path.is_file(), f"missing {path}"
    tree = ast.parse(path.read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "launch_description"]
    assert [ast.literal_eval(c.args[0]) for c in calls] == [graph_name]
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    spec = GRAPHS[graph_name]
    resolved = spec.resolve()
    commands = node_commands(spec)
    assert [c.name for c in commands] == list(resolved.nodes)
    nodes = all_nodes()
    for command in commands:
        node = nodes[command.name]
        assert command.command[:3] == (sys.executable, "-m", node.module)
        assert str(node.params_path) in command.command
        overrides = dict(_flag_values(command.command, "-p"))
        # Managed nodes wait for the launcher's lifecycle manager (the launch files' lifecycle events).
        assert set(overrides) == set(resolved.overrides.get(command.name, {})) | ({"autostart"} if node.managed
                                                                                   else set())
    manager = lifecycle_manager_command(spec)
    assert set(resolved.managed_nodes) == {n for n in resolved.nodes if nodes[n].managed}
    if not resolved.managed_nodes:  # a graph of plain nodes (the simulated cell) needs no manager
        assert manager is None
        return
    assert manager.command[:3] == (sys.executable, "-m", "molmomotion_ros.nodes.lifecycle_manager")
    assert f"node_names:=[{', '.join(resolved.managed_nodes)}]" in manager.command
    if spec.runner:  # the runner waits until the same nodes are active
        assert spec.overrides[spec.runner]["managed_nodes"] == ",".join(spec.managed_nodes)


def test_setup_installs_the_launch_and_config_files():
    text = (ROOT / "setup.py").read_text()
    assert 'glob("launch/*.launch.py")' in text and 'glob("config/*.yaml")' in text


def test_cli_refuses_an_undeclared_parameter_override():
    result = subprocess.run([sys.executable, "-m", "molmomotion_ros.cli", "launch", "sim_eval", "--set",
                             "forecaster_node.no_such_parameter=1"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "no_such_parameter" in result.stderr and result.stderr.count("\n") == 1


def test_cli_refuses_an_out_of_range_value():
    result = subprocess.run([sys.executable, "-m", "molmomotion_ros.cli", "launch", "sim_eval", "--set",
                             "sim_node.camera_rate_hz=500"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "outside" in result.stderr


def test_parameter_docs_are_generated_from_the_specs():
    from molmomotion_ros.graph import parameters_markdown

    assert (ROOT / "docs" / "ros_parameters.md").read_text() == parameters_markdown(), \
        "regenerate: python -m molmomotion_ros.graph > docs/ros_parameters.md"


# --- the launch files run against recording stand-ins of launch / launch_ros --------------------------------
class Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchDescription:
    def __init__(self, entities):
        self.entities = list(entities)


def _stand_ins(monkeypatch, lifecycle_node: bool) -> None:
    """launch and launch_ros modules whose actions, events and handlers record their arguments."""
    def module(name: str, *classes: str, **attrs) -> None:
        mod = types.ModuleType(name)
        for cls in classes:
            setattr(mod, cls, type(cls, (Recorded,), {}))
        for key, value in attrs.items():
            setattr(mod, key, value)
        monkeypatch.setitem(sys.modules, name, mod)

    module("launch", LaunchDescription=LaunchDescription)
    module("launch.actions", "DeclareLaunchArgument", "EmitEvent", "LogInfo", "OpaqueFunction", "RegisterEventHandler")
    module("launch.event_handlers", "OnProcessExit")
    module("launch.events", "Shutdown", matches_action=lambda action: ("matches", action))
    module("launch.substitutions", "LaunchConfiguration")
    module("launch_ros")
    module("launch_ros.actions", "Node", *(("LifecycleNode",) if lifecycle_node else ()))
    module("launch_ros.event_handlers", "OnStateTransition")
    module("launch_ros.events")
    module("launch_ros.events.lifecycle", "ChangeState")


def _run_launch_file(graph_name: str, arguments: dict[str, str] | None = None):
    """The launch file's entities, its OpaqueFunctions run with the declared arguments' defaults and
    ``arguments`` as the launch configurations (as `ros2 launch <file> name:=value` would)."""
    path = ROOT / "launch" / f"{graph_name}.launch.py"
    spec = importlib.util.spec_from_file_location(f"launch_file_{graph_name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entities = module.generate_launch_description().entities
    configurations = {e.args[0]: e.kwargs["default_value"] for e in _named(entities, "DeclareLaunchArgument")}
    unknown = set(arguments or {}) - set(configurations)
    assert not unknown, f"ros2 launch would ignore undeclared arguments {unknown}"
    context = types.SimpleNamespace(launch_configurations={**configurations, **(arguments or {})})
    out = []
    for entity in entities:
        out += entity.kwargs["function"](context) if type(entity).__name__ == "OpaqueFunction" else [entity]
    return out


def _flag_values(command, flag: str) -> list[tuple[str, str]]:
    """The ``name:=value`` pairs that follow ``flag`` (``-p`` or ``-r``) in a node's command."""
    return [tuple(command[i + 1].split(":=", 1)) for i, arg in enumerate(command[:-1]) if arg == flag]


def _named(entities, cls: str):
    return [e for e in entities if type(e).__name__ == cls]


@pytest.mark.parametrize("graph_name", sorted(GRAPHS))
def test_launch_file_configures_and_activates_its_managed_nodes_through_lifecycle_events(graph_name, monkeypatch):
    from lifecycle_msgs.msg import Transition

    _stand_ins(monkeypatch, lifecycle_node=True)
    entities = _run_launch_file(graph_name)
    spec, nodes = GRAPHS[graph_name], all_nodes()
    started = _named(entities, "LifecycleNode") + _named(entities, "Node")
    assert sorted(a.kwargs["name"] for a in started) == sorted(spec.resolve().nodes)
    changes = [e.kwargs["event"] for e in _named(entities, "EmitEvent")
               if type(e.kwargs["event"]).__name__ == "ChangeState"]
    handlers = [e.args[0] for e in _named(entities, "RegisterEventHandler")
                if type(e.args[0]).__name__ == "OnStateTransition"]
    for action in started:
        name = action.kwargs["name"]
        managed = nodes[name].managed
        assert (type(action).__name__ == "LifecycleNode") == managed, name
        assert ({"autostart": False} in action.kwargs["parameters"]) == managed, name
        if not managed:
            continue
        configure = [c for c in changes if c.kwargs["lifecycle_node_matcher"] == ("matches", action)]
        assert [c.kwargs["transition_id"] for c in configure] == [Transition.TRANSITION_CONFIGURE], name
        mine = {h.kwargs["goal_state"]: h.kwargs for h in handlers if h.kwargs["target_lifecycle_node"] is action}
        assert set(mine) == {"inactive", "unconfigured"} and all(h["start_state"] == "configuring"
                                                                 for h in mine.values())
        (activate,) = mine["inactive"]["entities"]
        assert activate.kwargs["event"].kwargs["transition_id"] == Transition.TRANSITION_ACTIVATE
        log, shutdown = mine["unconfigured"]["entities"]
        assert name in log.kwargs["msg"] and type(shutdown.kwargs["event"]).__name__ == "Shutdown"


def test_launch_file_without_lifecycle_node_lets_managed_nodes_start_themselves(monkeypatch):
    _stand_ins(monkeypatch, lifecycle_node=False)
    entities = _run_launch_file("sim_eval")
    assert {a.kwargs["name"] for a in _named(entities, "Node")} == {*GRAPHS["sim_eval"].nodes, "episode_runner"}
    assert all({"autostart": False} not in a.kwargs["parameters"] for a in _named(entities, "Node"))
    assert not [e for e in _named(entities, "EmitEvent") if type(e.kwargs["event"]).__name__ == "ChangeState"]


# --- launch arguments: `ros2 launch real_arm.launch.py name:=value` and `molmomotion launch real_arm name:=value` --
REAL_ARM_CASES = [
    {},
    {"arm_id": "fr4", "base_frame": "table", "execute": "true", "speech": "true", "velocity_scaling": "0.3",
     "color_topic": "/cam/rgb", "depth_topic": "/cam/depth", "planner": "moveit_py",
     "workspace_box_m": "[0.2, 0.8, -0.4, 0.4, 0.0, 0.6]", "instruction_topic": "/operator/instruction"},
]


@pytest.mark.parametrize("arguments", REAL_ARM_CASES, ids=["defaults", "overridden"])
def test_real_arm_launch_file_and_cli_start_the_same_nodes_with_the_same_arguments(arguments, monkeypatch):
    from molmomotion_ros.launcher import ros_value

    _stand_ins(monkeypatch, lifecycle_node=True)
    entities = _run_launch_file("real_arm", arguments)
    launched = {a.kwargs["name"]: a for a in _named(entities, "LifecycleNode") + _named(entities, "Node")}
    commands = {c.name: c.command for c in node_commands(GRAPHS["real_arm"], arguments=arguments)}
    assert set(launched) == set(commands)
    assert ("speech_node" in commands) == (arguments.get("speech") == "true")
    for name, action in launched.items():
        overrides = {k: v for p in action.kwargs["parameters"] if isinstance(p, dict) for k, v in p.items()
                     if k != "autostart"}
        cli = dict(_flag_values(commands[name], "-p"))
        cli.pop("autostart", None)
        assert cli == {key: ros_value(value) for key, value in overrides.items()}, name
        assert _flag_values(commands[name], "-r") == [tuple(r) for r in action.kwargs["remappings"]], name


def test_real_arm_arguments_reach_the_nodes_as_a_franka_cell_names_them():
    resolved = GRAPHS["real_arm"].resolve({"arm_id": "fr3", "velocity_scaling": "0.2"})
    manipulation, forecaster = resolved.overrides["manipulation_node"], resolved.overrides["forecaster_node"]
    assert manipulation["arm_joint_names"] == [f"fr3_joint{i}" for i in range(1, 8)]
    assert manipulation["finger_joint_names"] == ["fr3_finger_joint1", "fr3_finger_joint2"]
    assert manipulation["world_frame"] == forecaster["world_frame"] == "fr3_link0"
    assert manipulation["robot_base_pose"] == [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert manipulation["extrinsics_source"] == forecaster["extrinsics_source"] == "tf"
    assert manipulation["arm_interface"] == "action" and manipulation["execute"] is False  # a dry run by default
    assert manipulation["free_velocity_scaling"] == 0.2 and manipulation["contact_velocity_scaling"] < 0.2
    remaps = dict(resolved.remappings["forecaster_node"])
    assert remaps["camera/depth/image_raw"] == "/camera/camera/aligned_depth_to_color/image_raw"
    assert remaps["camera/color/camera_info"] == "/camera/camera/color/camera_info"
    assert "speech_node" not in resolved.nodes


@pytest.mark.parametrize("argv, message", [
    (["no_such_argument:=1"], "no launch argument 'no_such_argument'; its arguments: namespace, arm_id"),
    (["execute:=maybe"], "execute:='maybe' is not bool"),
    (["planner:=chomp"], "is not one of ompl, moveit_py"),
    (["velocity_scaling"], "NAME:=VALUE"),
])
def test_cli_refuses_a_bad_launch_argument(argv, message):
    result = subprocess.run([sys.executable, "-m", "molmomotion_ros.cli", "launch", "real_arm", *argv],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "launching" not in result.stdout


def test_cli_takes_launch_arguments_after_options_too():
    result = subprocess.run([sys.executable, "-m", "molmomotion_ros.cli", "launch", "real_arm", "--isolated",
                             "execute:=true", "no_such_argument:=1"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "no launch argument 'no_such_argument'" in result.stderr, result.stderr


def test_cli_show_args_lists_every_launch_argument_with_its_default():
    result = subprocess.run([sys.executable, "-m", "molmomotion_ros.cli", "launch", "real_arm", "--show-args"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for argument in GRAPHS["real_arm"].arguments:
        assert f"'{argument.name}':\n        {argument.description}" in result.stdout
        assert f"(default: '{argument.default_text}')" in result.stdout
    assert "dry run" in result.stdout


# --- molmomotion cell-eval: fake_franka + the real_arm graph unchanged but for its launch arguments + the runner --
def test_cell_eval_starts_fake_franka_the_real_arm_graph_as_launched_and_the_runner_on_fake_franka():
    from molmomotion_ros.launcher import CELL_FAKE, cell_eval_processes

    cell = cell_eval_processes({"velocity_scaling": "0.3"}, runner={"episodes_per_family": 2, "out": "x.json"})
    (fake, *arm) = cell.processes
    assert fake == node_commands(GRAPHS["fake_franka"], {"fake_franka": CELL_FAKE})[0]
    # Exactly what `molmomotion launch real_arm execute:=true velocity_scaling:=0.3` starts.
    launched = node_commands(GRAPHS["real_arm"], arguments={"execute": "true", "velocity_scaling": "0.3"})
    assert arm == launched
    assert cell.manager == lifecycle_manager_command(GRAPHS["real_arm"], arguments={"execute": "true"})
    runner = dict(_flag_values(cell.runner.command, "-p"))
    assert runner["simulator"] == "fake_franka" and runner["publish_instruction"] == "true"
    assert runner["managed_nodes"] == "forecaster_node,manipulation_node" and runner["episodes_per_family"] == "2"
    assert _flag_values(cell.runner.command, "-r") == []  # the instruction topic is the forecaster's


def test_cell_eval_runner_follows_a_remapped_instruction_topic():
    from molmomotion_ros.launcher import cell_eval_processes

    cell = cell_eval_processes({"instruction_topic": "/operator/instruction"})
    assert _flag_values(cell.runner.command, "-r") == [("instruction", "/operator/instruction")]


@pytest.mark.parametrize("argv, message", [
    (["arm:=fr3"], "no launch argument 'arm'"),
    (["--set", "fake_franka.no_such=1"], "fake_franka declares no parameter 'no_such'"),
    (["--compare", "/nonexistent/results.json"], "not a readable results file"),
])
def test_cell_eval_refuses_bad_input_before_starting_anything(argv, message):
    result = subprocess.run([sys.executable, "-m", "molmomotion_ros.cli", "cell-eval", *argv],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "launching" not in result.stdout
