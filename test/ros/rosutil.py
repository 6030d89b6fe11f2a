"""Helpers for real cross-process ROS 2 tests: an isolated DDS domain per test, node processes
started with the test's own interpreter, and waits on conditions (matching, messages), never on
fixed sleeps."""

from __future__ import annotations

import os
import random
import shutil
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


_last_shm_clean = [0.0]


def clean_zombie_shm(every_s: float = 20.0) -> None:
    """Remove the shared-memory segments and ports of Fast DDS participants that died without closing them
    (``fastdds shm clean``: only files whose lock no live process holds). Tests SIGKILL nodes on purpose; their
    leftovers pile up in /dev/shm over a suite and slow or break the next participants' shared-memory transport."""
    if time.monotonic() - _last_shm_clean[0] < every_s:
        return
    _last_shm_clean[0] = time.monotonic()
    tool = Path(sys.prefix) / "bin" / "fastdds"
    tool = str(tool) if tool.exists() else shutil.which("fastdds")
    if tool:
        subprocess.run([tool, "shm", "clean"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30,
                       check=False)


@contextmanager
def ros_domain(domain_id: int | None = None):
    """Point this process (os.environ) at an isolated domain for the duration of a test."""
    clean_zombie_shm()
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


# --- lifecycle (managed nodes): the services a lifecycle manager calls -----------------------------------
TRANSITIONS = {"configure": 1, "cleanup": 2, "activate": 3, "deactivate": 4}  # lifecycle_msgs/msg/Transition ids


def call_service(node, srv_type, name: str, request, spin, timeout_s: float = 30.0):
    """Call ``name`` from ``node`` (spinning ``spin()`` meanwhile) and return the response."""
    client = node.create_client(srv_type, name)
    try:
        wait_until(client.service_is_ready, timeout_s, spin, f"the service {name}")
        future = client.call_async(request)
        wait_until(future.done, timeout_s, spin, f"the answer of {name}")
        return future.result()
    finally:
        node.destroy_client(client)


def lifecycle_state(node, name: str, spin, timeout_s: float = 30.0) -> str:
    """The managed node ``name``'s state label (unconfigured, inactive, active, ...)."""
    from lifecycle_msgs.srv import GetState

    return call_service(node, GetState, f"/{name}/get_state", GetState.Request(), spin, timeout_s).current_state.label


def change_state(node, name: str, transition: str, spin, timeout_s: float = 120.0) -> bool:
    """Ask the managed node ``name`` for a transition (configure, activate, deactivate, cleanup)."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    request = ChangeState.Request(transition=Transition(id=TRANSITIONS[transition]))
    return call_service(node, ChangeState, f"/{name}/change_state", request, spin, timeout_s).success


def set_parameters(node, name: str, spin, **values) -> list:
    """Set parameters of node ``name`` over its set_parameters service; the SetParametersResults."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
    return call_service(node, SetParameters, f"/{name}/set_parameters", request, spin).results


def configure_problem(diagnostics: list, name: str) -> str | None:
    """The reason of the newest ERROR ``"<name>: configure"`` status among received DiagnosticArrays."""
    from diagnostic_msgs.msg import DiagnosticStatus

    for array in reversed(diagnostics):
        for status in array.status:
            if status.name == f"{name}: configure" and status.level == DiagnosticStatus.ERROR:
                return status.message
    return None
