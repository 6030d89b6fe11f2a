"""`molmomotion launch` brings the managed nodes up through their lifecycle services and reports a node that
fails to configure: its name and reason, the graph stopped, exit status 2 (a real process graph)."""

import os
import re
import subprocess
import sys

from rosutil import isolated_ros_env


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
