"""Helpers for real cross-process ROS 2 tests: an isolated DDS domain per test, node processes
started with the test's own interpreter, and waits on conditions (matching, messages), never on
fixed sleeps."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FASTDDS_PROFILE = ROOT / "config" / "fastdds_fast_discovery.xml"


def isolated_ros_env(domain_id: int | None = None) -> dict[str, str]:
    """Environment for this test's processes: a random domain, discovery on localhost only."""
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain_id if domain_id is not None else random.randint(1, 101))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("ROS_LOCALHOST_ONLY", None)
    if FASTDDS_PROFILE.exists():
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(FASTDDS_PROFILE)
    env["PYTHONUNBUFFERED"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    return env


@contextmanager
def ros_domain(domain_id: int | None = None):
    """Point this process (os.environ) at an isolated domain for the duration of a test."""
    saved = dict(os.environ)
    os.environ.update(isolated_ros_env(domain_id))
    try:
        yield os.environ["ROS_DOMAIN_ID"]
    finally:
        os.environ.clear()
        os.environ.update(saved)


def start_node(module: str, *ros_args: str, env: dict[str, str] | None = None, log_path: Path | None = None
               ) -> subprocess.Popen:
    """Start ``python -m module --ros-args ...`` with this interpreter (the ROS wheels need the
    same venv in the child). Output goes to ``log_path`` (read it in assertion messages)."""
    cmd = [sys.executable, "-m", module]
    if ros_args:
        cmd += ["--ros-args", *ros_args]
    out = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(cmd, env=env or isolated_ros_env(), stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(process: subprocess.Popen, timeout_s: float = 10.0) -> int:
    """SIGINT (what ros2 launch sends), then SIGKILL if it does not exit."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


def wait_until(predicate, timeout_s: float, spin=None, what: str = "condition") -> None:
    """Poll ``predicate`` (spinning ``spin()`` between polls) until true or raise TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if spin is not None:
            spin()
        else:
            time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
