"""The node specifications are plain data that the graph reads: imports point one way (graph → node_specs →
node_specs.spec), so a spec module imports neither the graph nor rclpy, and the registry holds every node."""

import subprocess
import sys

import pytest

from molmomotion_ros import graph, node_specs

SPEC_MODULES = ["episode_runner", "fake_franka", "forecaster", "manipulation", "policy", "sim", "speech"]


@pytest.mark.parametrize("module", SPEC_MODULES)
def test_a_spec_module_imports_neither_the_graph_nor_rclpy(module):
    code = (f"import sys, molmomotion_ros.node_specs.{module}\n"
            "print(sorted(m for m in sys.modules if m == 'molmomotion_ros.graph' or m.split('.')[0] == 'rclpy'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_graph_reads_every_node_spec_once():
    assert graph.all_nodes() == node_specs.NODES
    assert sorted(node_specs.NODES) == ["episode_runner", "fake_franka", "forecaster_node", "manipulation_node",
                                        "policy_node", "sim_node", "speech_node"]
    assert all(name == spec.name for name, spec in node_specs.NODES.items())
    with pytest.raises(KeyError, match="unknown node"):
        graph.node("no_such_node")


def test_each_node_declares_only_its_own_parameters():
    """One node per job: the planner and the policy node share no job-specific parameter, and no node has the
    old `agent` switch."""
    manipulation = {p.name for p in node_specs.NODES["manipulation_node"].parameters}
    policy = {p.name for p in node_specs.NODES["policy_node"].parameters}
    assert "agent" not in manipulation | policy
    assert {"planner_backend", "execute", "goal_tolerance_rad"} <= manipulation
    assert not {n for n in manipulation if n.startswith("policy_")}
    assert {"policy_checkpoint", "frame_timeout_s"} <= policy and not {"planner_backend", "execute"} & policy
    for spec in node_specs.NODES.values():
        assert all(p.description for p in spec.parameters), spec.name


def test_parameter_docs_generate_from_the_module_run_as_a_script():
    done = subprocess.run([sys.executable, "-m", "molmomotion_ros.graph"], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout == graph.parameters_markdown()
    assert "## policy_node" in done.stdout and "## manipulation_node" in done.stdout
