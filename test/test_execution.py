"""The execution layer (molmomotion_ros.execution): local worker processes and Ray give the same, ordered
results whatever the batch size, a killed worker's batches run again, and ``--executor ray`` without Ray or
without a reachable cluster is one line and exit status 2.

The Ray tests start a head of their own (``ray start --head --block`` on a free loopback port, its own temp
folder) and join it by address, as a user joins a cluster; the head and everything it started are stopped
by process group at the end. Without Ray installed they are skipped; the rest still run.
"""

from __future__ import annotations

import importlib.util
import json
import operator
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from molmomotion_ros.execution import (
    LOOPBACK_ENV,
    ExecutorUnavailableError,
    LocalExecutor,
    RayExecutor,
    WorkerLostError,
    WorkerTask,
    batched,
    default_batch_size,
    free_port,
    loopback_driver_env,
    loopback_ray_head,
    make_executor,
    split_address,
)

REPO = Path(__file__).resolve().parents[1]
TIMING_KEYS = {"wall_time_s", "mean_wall_time_s", "timestamp", "git_revision", "executor", "workers",
               "episodes_per_s", "created"}

# Tasks the workers can import (all stdlib). state = 10, result = 10 * item:
TIMES_TEN = WorkerTask(int, operator.mul, (10,))
# state = the worker's pid, item = a signal: the worker kills itself on every item
SUICIDE = WorkerTask(os.getpid, os.kill)


def error_lines(stderr: str) -> list[str]:
    """stderr without PyBullet's import banner (printed by its C code, not by the CLI)."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("pybullet build time")]


def run_cli(*args: str, env: dict | None = None, timeout_s: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "molmomotion_ros.cli", *args], capture_output=True, text=True,
                          timeout=timeout_s, env={**os.environ, **LOOPBACK_ENV, **(env or {})})


def without_timing(document):
    """A results document or manifest without what may differ between runs of the same work (times, executor)."""
    if isinstance(document, dict):
        return {k: without_timing(v) for k, v in document.items() if k not in TIMING_KEYS}
    if isinstance(document, list):
        return [without_timing(v) for v in document]
    return document


# --- the API, local -----------------------------------------------------------------------------
def test_batches_and_default_batch_size():
    assert batched("abcde", 2) == [[(0, "a"), (1, "b")], [(2, "c"), (3, "d")], [(4, "e")]]
    assert default_batch_size(4, 2) == 1 and default_batch_size(400, 2) == 4 and default_batch_size(40, 2) == 4
    assert default_batch_size(24, 2) == 3
    with pytest.raises(ValueError):
        batched([1], 0)


@pytest.mark.parametrize(("workers", "batch_size"), [(1, None), (2, 1), (2, 3)])
def test_local_results_are_in_input_order_whatever_the_batches(workers, batch_size):
    executor = LocalExecutor(workers, batch_size)
    items = list(range(11))
    assert executor.map(TIMES_TEN, items) == [10 * i for i in items]
    assert list(executor.imap(TIMES_TEN, items)) == [10 * i for i in items]
    assert sorted(executor.imap_unordered(TIMES_TEN, items)) == [(i, 10 * i) for i in items]
    assert executor.describe()["workers"] == workers


def test_local_worker_killed_mid_run_is_replaced_and_its_batches_rerun(tmp_path):
    marker = tmp_path / "killed"
    executor = LocalExecutor(2, 1, kill_once=marker)
    assert executor.map(TIMES_TEN, range(8)) == [10 * i for i in range(8)]
    assert marker.is_file()  # a worker did die
    assert executor.describe()["retried_batches"] >= 1


def test_local_worker_that_keeps_dying_gives_up_after_the_retries():
    with pytest.raises(WorkerLostError, match="died 2 times"):
        LocalExecutor(2, 1, max_retries=1).map(SUICIDE, [signal.SIGKILL] * 2)


def test_bad_executor_requests():
    with pytest.raises(ValueError, match="unknown executor"):
        make_executor("slurm")
    with pytest.raises(ValueError, match="Ray address"):
        make_executor("local", address="auto")
    with pytest.raises(ValueError):
        LocalExecutor(0)
    with pytest.raises(ValueError):
        RayExecutor(cpus_per_worker=0)
    assert split_address("10.1.2.3:6379") == ("10.1.2.3", 6379)
    assert split_address("ray://head:10001") == ("head", 10001) and split_address("ray://head") == ("head", 10001)
    assert split_address("[::1]:6379") == ("::1", 6379)
    for bad in ("head", "head:port", "http://head:80", ":6379", "head:0"):
        with pytest.raises(ExecutorUnavailableError):
            split_address(bad)


# --- the CLI without Ray or without a cluster ---------------------------------------------------
def test_missing_ray_is_one_line_and_exit_status_2(tmp_path):
    stub = tmp_path / "stub" / "ray"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    pythonpath = os.pathsep.join([str(tmp_path / "stub"), os.environ.get("PYTHONPATH", "")])
    result = run_cli("sim-eval", "--suite", "smoke", "--episodes", "1", "--executor", "ray", "--no-progress",
                     "--out", str(tmp_path / "eval.json"), env={"PYTHONPATH": pythonpath})
    lines = error_lines(result.stderr)
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("molmomotion: error: the ray executor needs Ray"), result.stderr
    assert "pip install" in lines[0]
    assert not (tmp_path / "eval.json").exists()


@pytest.mark.parametrize("command", ["sim-eval", "generate-data"])
def test_unreachable_ray_address_is_one_line_and_exit_status_2(tmp_path, command):
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed")
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    out = ["--out", str(tmp_path / "out")]
    start = time.monotonic()
    result = run_cli(command, "--executor", "ray", "--ray-address", address, "--no-progress", *out)
    lines = error_lines(result.stderr)
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith(f"molmomotion: error: cannot reach the Ray cluster at {address}")
    assert time.monotonic() - start < 60
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args", [["--ray-address", "127.0.0.1:6379"], ["--gpus-per-worker", "1"],
                                  ["--executor", "ray", "--ray-address", "http://head:80"],
                                  ["--executor", "dask"], ["--batch-size", "0"]])
def test_bad_execution_options_are_one_line_and_exit_status_2(tmp_path, args):
    result = run_cli("sim-eval", "--suite", "smoke", *args, "--out", str(tmp_path / "eval.json"))
    lines = error_lines(result.stderr)
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("molmomotion: error:"), result.stderr


# --- Ray, on a head started here and joined by address ------------------------------------------
@pytest.fixture(scope="module")
def ray_head():
    """``HOST:PORT`` of a 2-CPU Ray head on 127.0.0.1, stopped (with its workers) after the module's tests.
    This process joins it too (RayExecutor): the loopback settings go into its environment before Ray loads."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (pip install -r requirements/ray.txt)")
    with loopback_driver_env():
        # The head's workers import molmomotion_ros from this checkout, as the CLI subprocesses do.
        pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        with loopback_ray_head(num_cpus=2, env={"PYTHONPATH": pythonpath}) as address:
            yield address


def test_ray_results_match_local_in_input_order(ray_head, tmp_path):
    items = list(range(13))
    expected = [10 * i for i in items]
    executor = RayExecutor(ray_head, batch_size=1)
    assert executor.map(TIMES_TEN, items) == expected
    assert executor.describe()["workers"] == 2  # the head's 2 CPUs, one per worker
    executor = RayExecutor(ray_head, workers=1, batch_size=5)
    assert list(executor.imap(TIMES_TEN, items)) == expected
    assert executor.describe()["batch_size"] == 5


def test_ray_worker_killed_mid_run_is_restarted_and_its_batch_rerun(ray_head, tmp_path):
    marker = tmp_path / "killed"
    executor = RayExecutor(ray_head, batch_size=2, kill_once=marker)
    assert executor.map(TIMES_TEN, range(10)) == [10 * i for i in range(10)]
    killed_pid = int(marker.read_text())
    assert killed_pid != os.getpid()
    with pytest.raises(ProcessLookupError):
        os.kill(killed_pid, 0)  # that worker really is gone


def test_ray_worker_that_keeps_dying_gives_up_after_the_retries(ray_head):
    with pytest.raises(WorkerLostError, match="lost more than 1 time"):
        RayExecutor(ray_head, workers=1, max_retries=1).map(SUICIDE, [signal.SIGKILL])


def test_ray_cluster_too_small_for_a_worker(ray_head):
    with pytest.raises(ExecutorUnavailableError, match="a worker needs 1 CPU.* 1 GPU"):
        RayExecutor(ray_head, gpus_per_worker=1).map(TIMES_TEN, range(2))


@pytest.fixture(scope="module")
def local_eval(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "eval.json"
    result = run_cli("sim-eval", "--suite", "smoke", "--episodes", "1", "--workers", "2", "--no-progress",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text())


def test_sim_eval_on_ray_writes_the_same_results_as_local(ray_head, local_eval, tmp_path):
    out = tmp_path / "eval.json"
    result = run_cli("sim-eval", "--suite", "smoke", "--episodes", "1", "--executor", "ray", "--ray-address",
                     ray_head, "--batch-size", "3", "--no-progress", "--out", str(out))
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    assert without_timing(document) == without_timing(local_eval)
    assert len(document["episodes"]) == 4
    assert document["meta"]["executor"]["name"] == "ray" and document["meta"]["executor"]["address"] == ray_head
    assert local_eval["meta"]["executor"]["name"] == "local"


def test_sim_eval_on_ray_survives_a_killed_worker(ray_head, local_eval, tmp_path):
    out, marker = tmp_path / "eval.json", tmp_path / "killed"
    result = run_cli("sim-eval", "--suite", "smoke", "--episodes", "1", "--executor", "ray", "--ray-address",
                     ray_head, "--no-progress", "--out", str(out), env={"MOLMOMOTION_EXECUTOR_KILL_ONCE": str(marker)})
    assert result.returncode == 0, result.stderr
    assert marker.is_file()
    assert without_timing(json.loads(out.read_text())) == without_timing(local_eval)


def test_generate_data_on_ray_writes_the_same_shards_as_local(ray_head, tmp_path):
    common = ["generate-data", "--split", "train", "--episodes", "1", "--families", "push,stack", "--no-progress"]
    local = run_cli(*common, "--workers", "2", "--out", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr
    on_ray = run_cli(*common, "--executor", "ray", "--ray-address", ray_head, "--out", str(tmp_path / "ray"))
    assert on_ray.returncode == 0, on_ray.stderr
    manifests = [json.loads((tmp_path / name / "manifest.json").read_text()) for name in ("local", "ray")]
    assert without_timing(manifests[0]) == without_timing(manifests[1])
    assert manifests[1]["executor"]["name"] == "ray"
    for shard in manifests[0]["shards"]:
        for key in ("npz", "json"):
            assert (tmp_path / "local" / shard[key]).read_bytes() == (tmp_path / "ray" / shard[key]).read_bytes()
