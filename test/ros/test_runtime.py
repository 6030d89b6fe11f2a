"""Every executable runs its node through nodes.runtime.run_node: real processes show one behaviour for all of
them. A bad start parameter (here one outside its range) is one logged error line, no traceback: a plain node
exits with status 2, a managed node stays up, unconfigured, with the reason on /diagnostics (set the parameter
and configure again); SIGINT ends a node cleanly (status 0) and interrupts the episode runner's job (status
130)."""

import json
import subprocess
import sys

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosutil import change_state, configure_problem, lifecycle_state, set_parameters, start_node, stop, wait_until
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory, MultiDOFJointTrajectory

from molmomotion_ros.graph import all_nodes

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _out_of_range(spec):
    p = next(p for p in spec.parameters if p.range is not None)
    value = p.range[1] + 1
    return p.name, (float(value) if isinstance(p.default, float) else int(value))


@pytest.mark.parametrize("name", sorted(n for n, spec in all_nodes().items() if not spec.managed))
def test_a_bad_start_parameter_of_a_plain_node_exits_2_with_one_error_line(name, ros_env):
    spec = all_nodes()[name]
    param, value = _out_of_range(spec)
    result = subprocess.run([sys.executable, "-m", spec.module, "--ros-args", "--params-file", str(spec.params_path),
                             "-p", f"{param}:={value}"], env=ros_env, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    errors = [line for line in output.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and param in errors[0] and f"[{name}]" in errors[0], output[-2000:]
    assert "Traceback" not in output, output[-2000:]


@pytest.mark.parametrize("name", sorted(n for n, spec in all_nodes().items() if spec.managed))
def test_a_bad_start_parameter_leaves_a_managed_node_unconfigured_until_it_is_set(name, ros_env, tmp_path):
    spec = all_nodes()[name]
    param, value = _out_of_range(spec)
    log_path = tmp_path / "node.log"
    process = start_node(spec.module, "--params-file", str(spec.params_path), "-p", f"{param}:={value}",
                         "-p", "autostart:=true", env=ros_env, log_path=log_path)
    rclpy.init()
    node = rclpy.create_node("runtime_test")
    diagnostics = []
    node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)

    def spin():
        rclpy.spin_once(node, timeout_sec=0.05)

    try:
        wait_until(lambda: configure_problem(diagnostics, name) or process.poll() is not None, 120, spin,
                   "the configure failure on /diagnostics")
        assert process.poll() is None, log_path.read_text()
        assert param in configure_problem(diagnostics, name)
        assert lifecycle_state(node, name, spin) == "unconfigured"
        # The refused start value is the problem of every configure until the parameter is set.
        assert not change_state(node, name, "configure", spin)
        assert set_parameters(node, name, spin, **{param: spec.spec(param).default})[0].successful
        assert change_state(node, name, "configure", spin), log_path.read_text()
        assert lifecycle_state(node, name, spin) == "inactive"
        assert stop(process) == 0, log_path.read_text()
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop(process)
    output = log_path.read_text()
    errors = [line for line in output.splitlines() if "[ERROR]" in line]
    assert len(errors) == 2 and all(param in e and f"[{name}]" in e for e in errors), output[-2000:]  # 2 configures
    assert "Traceback" not in output, output[-2000:]


@pytest.mark.parametrize("name", ["manipulation_node", "policy_node"])
def test_sigint_ends_a_node_that_moves_the_arm_cleanly(name, ros_env, tmp_path):
    spec = all_nodes()[name]
    process = start_node(spec.module, "--params-file", str(spec.params_path), env=ros_env,
                         log_path=tmp_path / "node.log")
    rclpy.init()
    node = rclpy.create_node("runtime_test")
    statuses = []
    node.create_subscription(String, "manipulation/status", lambda m: statuses.append(json.loads(m.data)), LATCHED)
    try:
        wait_until(lambda: statuses, 120, lambda: rclpy.spin_once(node, timeout_sec=0.05), "the node's idle status")
        assert statuses[-1]["state"] == "idle"
        assert stop(process) == 0, (tmp_path / "node.log").read_text()
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop(process)
    assert "Traceback" not in (tmp_path / "node.log").read_text()


def test_sigint_interrupts_the_episode_runner_with_status_130(ros_env, tmp_path):
    """The runner waits for sim_node (which never comes here) in its job; Ctrl-C ends the job unfinished."""
    spec = all_nodes()["episode_runner"]
    log_path = tmp_path / "runner.log"
    process = start_node(spec.module, "--params-file", str(spec.params_path), env=ros_env, log_path=log_path)
    rclpy.init()
    node = rclpy.create_node("runtime_test")
    try:
        wait_until(lambda: "episode_runner" in node.get_node_names() or process.poll() is not None, 60,
                   lambda: rclpy.spin_once(node, timeout_sec=0.05), "the runner in the graph")
        assert process.poll() is None, log_path.read_text()
        status = stop(process)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop(process)
    assert status == 130, log_path.read_text()
    assert "Traceback" not in log_path.read_text()


@pytest.mark.parametrize("name", ["manipulation_node", "policy_node"])
def test_deactivating_a_node_that_moves_the_arm_sends_the_hold_and_unsubscribes(name, ros_env, tmp_path):
    """Deactivate stops the arm as ~/stop does (an empty JointTrajectory: the controller holds the current
    position), drops the subscriptions and ~/stop; activate brings them back with the "idle" status."""
    spec = all_nodes()[name]
    log_path = tmp_path / "node.log"
    process = start_node(spec.module, "--params-file", str(spec.params_path), env=ros_env, log_path=log_path)
    rclpy.init()
    node = rclpy.create_node("runtime_test")
    statuses, commands = [], []
    node.create_subscription(String, "manipulation/status", lambda m: statuses.append(json.loads(m.data)), LATCHED)
    node.create_subscription(JointTrajectory, "arm_controller/joint_trajectory", commands.append, 10)
    forecasts = node.create_publisher(MultiDOFJointTrajectory, "forecast/hypotheses", LATCHED)

    def spin():
        rclpy.spin_once(node, timeout_sec=0.05)

    try:
        wait_until(lambda: statuses and forecasts.get_subscription_count() > 0
                   and node.count_publishers("arm_controller/joint_trajectory") > 0, 120, spin, "the active node")
        assert statuses[-1]["state"] == "idle" and lifecycle_state(node, name, spin) == "active"
        wait_until(lambda: f"/{name}/stop" in dict(node.get_service_names_and_types()), 10, spin, "~/stop")
        assert change_state(node, name, "deactivate", spin)
        wait_until(lambda: commands, 10, spin, "the hold")
        hold = commands[-1]
        assert list(hold.points) == [] and hold.joint_names == [f"panda_joint{i}" for i in range(1, 8)]
        assert lifecycle_state(node, name, spin) == "inactive"
        wait_until(lambda: forecasts.get_subscription_count() == 0, 10, spin, "the subscriptions dropped")
        assert f"/{name}/stop" not in dict(node.get_service_names_and_types())

        count = len(statuses)
        assert change_state(node, name, "activate", spin)
        wait_until(lambda: len(statuses) > count and forecasts.get_subscription_count() > 0, 10, spin,
                   "the idle status again")
        assert statuses[-1]["state"] == "idle"
        assert stop(process) == 0, log_path.read_text()
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop(process)
    assert "Traceback" not in log_path.read_text()
