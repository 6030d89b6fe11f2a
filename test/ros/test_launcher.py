"""`molmomotion launch` brings the managed nodes up through their lifecycle services and reports a node that
fails to configure: its name and reason, the graph stopped, exit status 2; the episode runner waits for the
managed nodes' 'active' state (real process graphs)."""

import os
import re
import subprocess
import sys

from rosutil import ROOT, isolated_ros_env, start_node, stop


def test_a_node_failing_to_configure_is_named_with_its_reason_and_the_graph_stopped(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "molmomotion_ros.cli", "launch", "forecaster", "--set",
         "forecaster_node.checkpoint=/nonexistent/forecaster.pt", "--log-dir", str(tmp_path / "logs")],
        env=isolated_ros_env(), capture_output=True, text=True, timeout=180)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    failure = [line for line in result.stderr.splitlines() if "failed to configure" in line]
    assert len(failure) == 1 and "forecaster_node failed to configure" in failure[0], output[-3000:]
    assert "no checkpoint at /nonexistent/forecaster.pt" in failure[0]
    assert "stopping forecaster" in result.stderr
    (pid,) = map(int, re.findall(r"started forecaster_node \(pid (\d+)\)", result.stdout))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError(f"forecaster_node (pid {pid}) still runs after launch returned")
    log = (tmp_path / "logs" / "forecaster_node.log").read_text()
    assert "configure failed" in log and "Traceback" not in log


def test_the_episode_runner_waits_for_active_and_names_a_node_that_is_not(tmp_path):
    """The runner's first episode waits for every managed node's 'active' (GetState), not for a status: a
    forecaster left unconfigured (autostart false, no lifecycle manager) is named with its state."""
    env = isolated_ros_env()
    sim = start_node("molmomotion_ros.nodes.sim_node", "--params-file", str(ROOT / "config/sim_node.yaml"),
                     "-p", "reset_on_start:=false", env=env, log_path=tmp_path / "sim.log")
    forecaster = start_node("molmomotion_ros.nodes.forecaster_node", "--params-file",
                            str(ROOT / "config/forecaster_node.yaml"), "-p", "autostart:=false", env=env,
                            log_path=tmp_path / "forecaster.log")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "molmomotion_ros.nodes.episode_runner", "--ros-args", "--params-file",
             str(ROOT / "config/episode_runner.yaml"), "-p", "managed_nodes:=forecaster_node",
             "-p", "startup_timeout_s:=20.0", "-p", f"out:={tmp_path / 'out.json'}", "-p", "progress:=false"],
            env=env, capture_output=True, text=True, timeout=120)
    finally:
        stop(forecaster)
        stop(sim)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    errors = [line for line in output.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and "forecaster_node (unconfigured)" in errors[0], output[-2000:]
    assert not (tmp_path / "out.json").exists()


def test_sigterm_stops_the_graph_as_ctrl_c_does(tmp_path):
    """Service managers, `docker stop` and `timeout` send SIGTERM: the launcher stops its nodes before it exits
    (with Python's default SIGTERM it exited at once and left them running)."""
    import signal
    import time

    launcher = subprocess.Popen(
        [sys.executable, "-m", "molmomotion_ros.cli", "launch", "forecaster", "--log-dir", str(tmp_path / "logs")],
        env=isolated_ros_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        pid = None
        while pid is None:
            line = launcher.stdout.readline()
            assert line, "the launcher ended before starting forecaster_node"
            found = re.findall(r"started forecaster_node \(pid (\d+)\)", line)
            pid = int(found[0]) if found else None
        log = tmp_path / "logs" / "forecaster_node.log"
        deadline = time.monotonic() + 120
        while "ready:" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "ready:" in log.read_text(), log.read_text()[-2000:]
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=30) == 0
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            pass
        else:
            raise AssertionError(f"forecaster_node (pid {pid}) still runs after the launcher took SIGTERM")
    finally:
        if launcher.poll() is None:
            launcher.kill()


def test_a_namespace_and_remappings_apply_to_every_node_of_the_graph(tmp_path):
    """`--namespace cell1 --remap instruction:=task/instruction`: the nodes, their topics and services move into
    the namespace, the remapped topic is used, and the lifecycle manager (in the namespace too) activates them."""
    import json
    import signal
    import time

    env = isolated_ros_env()
    launcher = subprocess.Popen(
        [sys.executable, "-m", "molmomotion_ros.cli", "launch", "forecaster", "--namespace", "cell1",
         "--remap", "instruction:=task/instruction", "--log-dir", str(tmp_path / "logs")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        log = tmp_path / "logs" / "forecaster_node.log"
        deadline = time.monotonic() + 120
        while "ready:" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "ready:" in log.read_text(), log.read_text()[-2000:]  # activated by the namespaced manager
        probe = subprocess.run([sys.executable, "-c", (
            "import json, time, rclpy\n"
            "rclpy.init(); n = rclpy.create_node('probe'); time.sleep(2.0)\n"
            "for _ in range(20): rclpy.spin_once(n, timeout_sec=0.1)\n"
            "print(json.dumps({'nodes': n.get_fully_qualified_node_names(),"
            " 'topics': [t for t, _ in n.get_topic_names_and_types()]}))")],
            env=env, capture_output=True, text=True, timeout=60)
        graph = json.loads(probe.stdout.strip().splitlines()[-1])
        assert "/cell1/forecaster_node" in graph["nodes"], graph
        assert "/cell1/task/instruction" in graph["topics"] and "/cell1/forecast/trajectory" in graph["topics"], graph
        assert "/instruction" not in graph["topics"] and "/cell1/instruction" not in graph["topics"], graph
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=30) == 0
    finally:
        if launcher.poll() is None:
            launcher.kill()
