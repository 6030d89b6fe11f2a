"""A whole simulated episode through the ROS graph: sim_node → forecaster_node → manipulation_node →
sim_node, driven by the episode runner, each a separate process (real rclpy, real PyBullet, the
shipped models), started by `molmomotion launch` exactly as the README's main command does."""

import json
import subprocess
import sys

from rosutil import isolated_ros_env


def test_an_episode_through_the_graph_succeeds_and_writes_the_harness_results(tmp_path):
    out = tmp_path / "graph.json"
    env = isolated_ros_env()
    result = subprocess.run(
        [sys.executable, "-m", "molmomotion_ros.cli", "launch", "sim_eval", "--families", "place-in-container",
         "--episodes", "1", "--out", str(out), "--log-dir", str(tmp_path / "logs"), "--no-progress"],
        env=env, capture_output=True, text=True, timeout=400)
    logs = {p.name: p.read_text()[-1500:] for p in (tmp_path / "logs").glob("*.log")}
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-2000:], logs)
    document = json.loads(out.read_text())
    episodes = document["episodes"]
    assert len(episodes) == 1 and episodes[0]["family"] == "place-in-container"
    assert episodes[0]["success"], (episodes[0]["failure_reason"], logs)
    assert document["meta"]["via"] == "ros-graph"
    assert "place-in-container" in result.stdout and "1 episodes through the ROS graph" in result.stdout
