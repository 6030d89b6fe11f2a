"""The launch files, the package CLI (`molmomotion launch`) and the nodes agree on one graph.

ros2 launch is not installable here, so the launch files are checked by reading them: each builds
its graph from molmomotion_ros.graph, whose node list, executables, parameter files and overrides
are checked against setup.py's entry points, config/ and the nodes' declared parameters.
"""

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from molmomotion_ros.graph import GRAPHS, all_nodes
from molmomotion_ros.launcher import node_commands

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
    spec = GRAPHS[graph_name]
    nodes = all_nodes()
    for node, values in spec.overrides.items():
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
    commands = node_commands(spec)
    assert [c.name for c in commands] == list(spec.nodes) + ([spec.runner] if spec.runner else [])
    nodes = all_nodes()
    for command in commands:
        node = nodes[command.name]
        assert command.command[:3] == (sys.executable, "-m", node.module)
        assert str(node.params_path) in command.command
        overrides = {a.split(":=")[0] for a in command.command if ":=" in a}
        assert overrides == set(spec.overrides.get(command.name, {}))


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
