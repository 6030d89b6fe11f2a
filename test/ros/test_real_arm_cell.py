"""The real_arm graph, started as a user starts it (`molmomotion launch real_arm execute:=true`), against the
simulated Franka cell in another process: each fault of the issue ends with its reason on manipulation/status,
no node crashes, and the next instruction is carried out (scripts/cell_faults.py drives the cases); then
graph_interface_check.py and driver_interface_check.py check both sides' interfaces by name and type."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from rosutil import ROOT, isolated_ros_env, stop


def _launch(env, log_dir, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "molmomotion_ros.cli", "launch", *args, "--log-dir", str(log_dir)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)


def _tails(log_dir) -> str:
    return "\n".join(f"--- {log.name}\n{log.read_text()[-1500:]}" for log in sorted(log_dir.rglob("*.log")))


def test_real_arm_faults_on_the_fake_cell_each_end_with_a_reason_and_the_next_instruction_works(tmp_path):
    env = isolated_ros_env()
    # The hand-eye transform is withheld from the start: the first case is a graph that never had it.
    cell = _launch(env, tmp_path / "cell", "fake_franka", "--set", "fake_franka.camera_rate_hz=15",
                   "--set", "fake_franka.fault_hand_eye_missing=true")
    graph = _launch(env, tmp_path / "graph", "real_arm", "execute:=true", "velocity_scaling:=0.5")
    try:
        run = subprocess.run([sys.executable, str(ROOT / "scripts" / "cell_faults.py"), "--tf-missing"], env=env,
                             capture_output=True, text=True, timeout=1500)
        report = run.stdout + run.stderr
        assert run.returncode == 0, f"{report}\n{_tails(tmp_path)}"
        lines = [line for line in report.splitlines() if line.startswith(("ok ", "BAD"))]
        assert len(lines) == 6 and all(line.startswith("ok ") for line in lines), report
        assert cell.poll() is None and graph.poll() is None, f"a process ended early\n{_tails(tmp_path)}"
        # Both sides' interfaces by name and type, from processes that import only rclpy and message packages.
        here = Path(__file__).parent
        for check in ("graph_interface_check.py", "driver_interface_check.py"):
            run = subprocess.run([sys.executable, str(here / check), "--timeout", "60"], env=env,
                                 capture_output=True, text=True, timeout=180)
            report = json.loads(run.stdout)
            assert report["ok"], {k: v for k, v in report["checks"].items() if v is not True}
    finally:
        stop(graph, timeout_s=30.0)
        stop(cell, timeout_s=30.0)
