"""The success-rate experiment and eval-forecast through the execution layer (issue 20, slice 2).

The issue's small grid (variants A, B × steps 5, 10 × 2 training seeds × 8 test episodes per family, 4 families; one
train and one validation demonstration per family with a frame every 8 samples, 8-sample episodes) run by
``molmomotion experiment success-rate`` as a user runs it: on local worker processes, on a Ray head started here
(``--executor ray --ray-address``), on Ray with a worker killed in the middle of an evaluation batch, and locally
with the driver killed (SIGKILL) after its first cells were written and then ``--resume``d. Every run gives the
local run's table, episode for episode. The Ray head is started as in ``test_execution.py`` (``loopback_ray_head``:
127.0.0.1, its own ports and temporary folder, stopped by process group); without Ray those tests are skipped.

The grid tests take minutes on 2 cores (``slow``; ``bash scripts/test.sh``, what CI runs, includes them).
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
    LocalExecutor,
    RayExecutor,
    WorkerTask,
    loopback_driver_env,
    loopback_ray_head,
    probe_storage,
    storage_problems,
)

REPO = Path(__file__).resolve().parents[1]
EPISODES = 8 * 4  # per cell: 8 per family
GRID = ["--variants", "A,B", "--steps", "5,10", "--seeds", "2", "--episodes", "8", "--train-episodes", "1",
        "--val-episodes", "1", "--frames-every", "8", "--batch-size", "8", "--eval-every", "5",
        "--max-samples", "8", "--no-progress"]
CELLS = 2 * 2 * 2  # variants × steps × seeds
RUNS = 2 * 2  # variants × seeds

# Tasks the workers can import (stdlib only): state = the worker's pid; run = pid | 0 = the pid.
PID = WorkerTask(os.getpid, operator.or_)
# state = an expression; run = eval(expression, item): sleeps item["t"] seconds and returns it.
SLEEP = WorkerTask(str, eval, ("__import__('time').sleep(t) or t",), name="sleep")


def run_cli(*args: str, env: dict | None = None, timeout_s: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "molmomotion_ros.cli", *args], capture_output=True, text=True,
                          timeout=timeout_s, env={**os.environ, **LOOPBACK_ENV, **(env or {})})


def grid(out: Path, demos: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    result = run_cli("experiment", "success-rate", *GRID, "--demo-cache", str(demos), "--out", str(out), *extra,
                     env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def episodes(out: Path) -> dict[str, list[dict]]:
    """Every cell's episodes without their wall times (the one field that differs between runs of the same work)."""
    cells = {}
    for path in sorted((out / "evals").glob("*.json")):
        if not path.name.startswith("."):
            cells[path.stem] = [{k: v for k, v in e.items() if k != "wall_time_s"}
                                for e in json.loads(path.read_text())["episodes"]]
    return cells


def histories(out: Path) -> dict[str, list[dict]]:
    return {p.parent.name: json.loads(p.read_text())["history"] for p in sorted((out / "runs").glob("*/train.json"))}


def assert_same_grid(out: Path, reference: Path) -> None:
    assert (out / "success_rate.md").read_text() == (reference / "success_rate.md").read_text()
    expected = episodes(reference)
    assert len(expected) == CELLS and all(len(cell) == EPISODES for cell in expected.values())
    assert episodes(out) == expected
    assert histories(out) == histories(reference)
    summary, reference_summary = (json.loads((d / "success_rate.json").read_text()) for d in (out, reference))
    for key in ("rows", "val_curves", "paired", "bars", "failure_reasons"):
        assert summary[key] == reference_summary[key], key


def last_invocation(out: Path) -> dict:
    return json.loads((out / "runs.jsonl").read_text().splitlines()[-1])


@pytest.fixture(scope="module")
def ray_head():
    """``HOST:PORT`` of a Ray head on 127.0.0.1 with 2 CPUs and one declared GPU (Ray schedules by what is
    declared: training tasks land on the GPU-holding worker, and torch there sees no CUDA, so they train on the
    CPU as the local run does) for this module's tests (stopped, with its workers, after)."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (pip install -r requirements/ray.txt)")
    with loopback_driver_env():
        pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        with loopback_ray_head(num_cpus=2, num_gpus=1, env={"PYTHONPATH": pythonpath}) as address:
            yield address


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    """One folder of recorded demonstrations for every grid of the module (recorded by the first run)."""
    return tmp_path_factory.mktemp("demos")


@pytest.fixture(scope="module")
def local_grid(tmp_path_factory, demos) -> Path:
    out = tmp_path_factory.mktemp("local") / "grid"
    result = grid(out, demos, "--workers", "2")
    assert f"start: 0 of {CELLS} cells finished (skipped), {CELLS} to run" in result.stderr
    run = last_invocation(out)
    assert run["executor"] == "local" and run["cells"] == {"total": CELLS, "skipped": 0, "run": CELLS}
    assert run["stages"]["eval"]["workers"] == 2
    assert run["stages"]["train"]["gpus_per_task"] == 0  # no GPU on this machine: training asks for none
    assert {d["device"] for d in train_documents(out)} == {"cpu"}
    assert not (out / ".storage-probe").exists()
    return out


def train_documents(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*/train.json"))]


# --- executor sessions and the fault hook (stdlib tasks: fast) -----------------------------------
def test_local_session_keeps_its_workers_across_runs_and_stages():
    executor = LocalExecutor(2, 1)
    with executor.session():
        assert executor.map(PID, [0] * 6) and os.getpid() not in executor.map(PID, [0] * 2)
        pool, workers = executor._pool, set(executor._pool._processes)
        assert executor.map(WorkerTask(os.getpid, max), [0] * 6)  # the same workers' state, another run function
        assert executor._pool is pool and set(executor._pool._processes) == workers
        assert executor.map(WorkerTask(int, max, (7,)), [0, 0]) == [7, 7]  # another state: new workers
        assert executor._pool is not pool
    assert executor._pool is None  # the session's end stopped them


def test_inline_session_keeps_its_state_across_runs():
    born = WorkerTask(time.monotonic, max)  # state = when the worker was made; run = max(state, 0) = that time
    executor = LocalExecutor(1)
    with executor.session():
        first = executor.map(born, [0, 0])
        assert executor.map(born, [0]) == first[:1] and first[0] == first[1]
    assert executor.map(born, [0]) != first[:1]  # outside a session: a new state every run


def test_kill_hook_spares_other_tasks_and_kills_mid_batch(tmp_path):
    marker = tmp_path / "killed"
    executor = LocalExecutor(2, 1, kill_once=marker, kill_task="sleep", kill_after_s=0.3)
    assert executor.map(PID, [0] * 4) and not marker.exists()  # another task: spared
    items = [{"t": 0.05}, {"t": 1.0}, {"t": 0.05}, {"t": 1.0}]
    assert executor.map(SLEEP, items) == [0.05, 1.0, 0.05, 1.0]  # a one-second batch was killed and sent again
    assert marker.is_file() and executor.describe()["retried_batches"] >= 1


def test_ray_session_keeps_its_actors_across_runs(ray_head):
    executor = RayExecutor(ray_head, batch_size=1)
    with executor.session():
        # state = when the actor was made; run = max(state, 0), then min(state, 1e12): that time, from each actor
        first = set(executor.map(WorkerTask(time.time, max), [0] * 6))
        assert len(first) == 2  # two actors (the head's two CPUs), each sent batches from the start
        assert set(executor.map(WorkerTask(time.time, min), [1e12] * 6)) == first  # another run, the same actors
        assert len(executor._actors) == 2
    assert executor._actors == []


@pytest.mark.slow
def test_demonstrations_and_encodings_made_in_shards_are_the_whole_bit_for_bit(tmp_path):
    import numpy as np

    from molmomotion_policies.demos import DemoConfig, Demos, record_demos
    from molmomotion_policies.experiment import DemoMergeJob, GraphWorker, demo_shards, encode_jobs
    from molmomotion_policies.model import GoalConditionedPolicy, PolicyConfig
    from molmomotion_policies.train import encode_demos, encoding_paths

    config = DemoConfig("train", 3, families=("push", "stack"), frames_every=4, forecast=False)
    shards = demo_shards(config, tmp_path, size=2)
    assert [(job.config.families, job.config.seed_start, job.config.episodes_per_family) for job in shards] == [
        (("push",), 0, 2), (("push",), 2, 1), (("stack",), 0, 2), (("stack",), 2, 1)]
    worker = GraphWorker()
    try:
        for job in shards:
            job.run(worker)
        merged = DemoMergeJob(config, tuple(job.path for job in shards), str(tmp_path / "merged.npz")).run(worker)
        assert not list((tmp_path / "shards").iterdir())  # merged, the shards are gone
        one, sharded = record_demos(config, progress=False), Demos.load(merged)
        for key, value in vars(one).items():
            if isinstance(value, np.ndarray):
                other = getattr(sharded, key)
                assert value.dtype == other.dtype and np.array_equal(value, other, equal_nan=True), key
            else:
                assert getattr(sharded, key) == value, key

        policy = PolicyConfig.for_variant("A")
        jobs, merges = encode_jobs(policy, merged, config.key(), tmp_path / "enc", shard_frames=64)
        assert len(jobs) == -(-len(one) // 64) > 1 and len(merges) == 1
        for job in [*jobs, *merges]:
            job.run(worker)
    finally:
        worker.close()
    cached = np.load(encoding_paths(policy, config.key(), tmp_path / "enc")[0])
    assert np.array_equal(cached, encode_demos(GoalConditionedPolicy(policy), one, progress=False))
    assert encode_jobs(policy, merged, config.key(), tmp_path / "enc") == ([], [])  # cached: nothing to do


# --- the experiment grid -----------------------------------------------------------------------------
@pytest.mark.slow
def test_grid_on_ray_gives_the_local_table_episode_for_episode(ray_head, local_grid, demos, tmp_path):
    out = tmp_path / "grid"
    grid(out, demos, "--executor", "ray", "--ray-address", ray_head, "--episodes-per-batch", "3")
    assert_same_grid(out, local_grid)
    run = last_invocation(out)
    assert run["executor"] == "ray" and run["stages"]["eval"]["address"] == ray_head
    assert run["stages"]["eval"]["batch_size"] == 3 and run["stages"]["train"]["tasks"] == RUNS
    # --train-gpus auto: the cluster has a GPU, so each training task held it (one at a time) ...
    assert run["stages"]["train"]["gpus_per_task"] == 1 and run["stages"]["train"]["workers"] == 1
    assert run["stages"]["eval"]["workers"] == 2  # ... and the evaluation around it none
    # ... and trained where torch could (no CUDA behind the declared GPU here: the CPU, hence the same table)
    assert [(d["ray_gpu_ids"], d["device"]) for d in train_documents(out)] == [(["0"], "cpu")] * RUNS
    assert not (out / ".storage-probe").exists()  # every node saw --out (one node here), and the probe is gone
    meta = json.loads(next((out / "evals").glob("A-s0-*.json")).read_text())["meta"]
    assert meta["executor"]["name"] == "ray" and len(meta["config_hash"]) == 16


def test_training_gpus_the_workers_lack_are_refused_before_any_work(ray_head, tmp_path):
    for executor in (["--workers", "1"], ["--executor", "ray", "--ray-address", ray_head]):
        out = tmp_path / executor[1]
        result = run_cli("experiment", "success-rate", *GRID, "--out", str(out), "--train-gpus", "2", *executor)
        assert result.returncode == 2, result.stderr[-2000:]
        assert "error: each training task is to hold 2 GPU(s), but the" in result.stderr
        assert not (out / "demos").exists() and not (out / "runs").exists()


def test_storage_probe_names_a_node_that_does_not_share_the_folder(tmp_path):
    shared, elsewhere = tmp_path / "shared", tmp_path / "elsewhere"
    shared.mkdir()
    (shared / "driver").write_text("token")
    good = probe_storage(str(shared), "token", "node-a")
    assert good["read"] == "token" and good["error"] is None
    assert storage_problems(str(shared), "token", [good]) == []
    # a node whose path is another disk: it neither sees the driver's token nor can write where the driver reads
    lost = probe_storage(str(elsewhere), "token", "node-b")
    assert lost["error"] and "FileNotFoundError" in lost["error"]
    assert storage_problems(str(shared), "token", [good, lost]) == [
        f"node {lost['host']} (node-b) cannot write there: {lost['error']}"]
    # a node that sees a stale token, or writes where the driver does not read
    elsewhere.mkdir()
    (elsewhere / "driver").write_text("other run")
    stale = probe_storage(str(elsewhere), "token", "node-c")
    assert storage_problems(str(shared), "token", [stale]) == [
        f"node {stale['host']} (node-c) does not see this machine's files there"]
    (elsewhere / "driver").write_text("token")
    unseen = probe_storage(str(elsewhere), "token", "node-d")
    assert storage_problems(str(shared), "token", [unseen]) == [
        f"this machine does not see the files node {unseen['host']} (node-d) writes there"]


@pytest.mark.slow
def test_grid_on_ray_survives_a_worker_killed_mid_task(ray_head, local_grid, demos, tmp_path):
    out, marker = tmp_path / "grid", tmp_path / "killed"
    grid(out, demos, "--executor", "ray", "--ray-address", ray_head,
         env={"MOLMOMOTION_EXECUTOR_KILL_ONCE": str(marker), "MOLMOMOTION_EXECUTOR_KILL_TASK": "eval",
              "MOLMOMOTION_EXECUTOR_KILL_AFTER_S": "0.1"})
    killed_pid = int(marker.read_text())  # an actor died 0.1 s into an evaluation batch (building its world)...
    with pytest.raises(ProcessLookupError):
        os.kill(killed_pid, 0)
    assert_same_grid(out, local_grid)  # ...was restarted, its batch ran again, and nothing changed


@pytest.mark.slow
def test_grid_driver_killed_then_resumed_runs_only_the_missing_cells(local_grid, demos, tmp_path):
    out = tmp_path / "grid"
    command = [sys.executable, "-m", "molmomotion_ros.cli", "experiment", "success-rate", *GRID, "--demo-cache",
               str(demos), "--out", str(out), "--workers", "2", "--episodes-per-batch", "1"]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                              env={**os.environ, **LOOPBACK_ENV})
    try:
        deadline = time.monotonic() + 300
        while not ((out / "evals").is_dir() and episodes(out)):
            assert driver.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(driver.pid, signal.SIGKILL)  # the driver dies after its first cells were written
        driver.wait()
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)  # the run's own session: the worker processes it left behind
        except ProcessLookupError:
            pass
        driver.stderr.close()
    written = len(episodes(out))
    assert 1 <= written < CELLS
    assert not (out / "success_rate.md").exists()

    refused = run_cli("experiment", "success-rate", *GRID, "--demo-cache", str(demos), "--out", str(out))
    assert refused.returncode == 2 and "--resume" in refused.stderr  # a folder with an experiment needs --resume

    result = grid(out, demos, "--workers", "2", "--resume")
    assert f"resume: {written} of {CELLS} cells finished (skipped), {CELLS - written} to run; {RUNS} of {RUNS} " \
           "training runs finished, 0 to run" in result.stderr
    run = last_invocation(out)
    assert run["resume"] and run["cells"] == {"total": CELLS, "skipped": written, "run": CELLS - written}
    assert run["training_runs"] == {"total": RUNS, "skipped": RUNS, "run": 0} and "train" not in run["stages"]
    assert_same_grid(out, local_grid)


def test_executor_flags_of_the_experiment_are_checked_before_anything_runs(tmp_path):
    for args in (["--ray-address", "127.0.0.1:6379"], ["--episodes-per-batch", "0"], ["--executor", "dask"]):
        result = run_cli("experiment", "success-rate", *GRID, *args, "--out", str(tmp_path / "out"))
        lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("pybullet")]
        assert result.returncode == 2 and len(lines) == 1 and "error" in lines[0], result.stderr
    assert not (tmp_path / "out").exists()


# --- eval-forecast -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def forecast_data(tmp_path_factory) -> Path:
    from molmomotion_sim.dataset import generate_dataset

    out = tmp_path_factory.mktemp("forecast-data")
    generate_dataset("test", 2, out, families=["push", "stack"], workers=1, progress=False)
    return out


def forecast_report(out: Path) -> dict:
    """The report without what depends on where and how fast it ran (latencies, executor)."""
    report = json.loads((out / "forecast-eval.json").read_text())
    report.pop("executor")
    for summary in report["summary"].values():
        summary.pop("latency_ms_p50")
    return report


@pytest.mark.slow
def test_eval_forecast_gives_the_serial_report_on_workers_and_on_ray(forecast_data, ray_head, tmp_path):
    common = ["eval-forecast", "--data", str(forecast_data), "--models", "fm,stationary", "--samples", "2",
              "--no-progress"]
    serial = run_cli(*common, "--workers", "1", "--out", str(tmp_path / "serial"))
    assert serial.returncode == 0, serial.stderr[-3000:]
    expected = forecast_report(tmp_path / "serial")
    assert expected["episodes"] == 4 and expected["summary"]["fm"]["k1"]
    for name, args in (("local", ["--workers", "2", "--batch-size", "1"]),
                       ("ray", ["--executor", "ray", "--ray-address", ray_head])):
        result = run_cli(*common, *args, "--out", str(tmp_path / name))
        assert result.returncode == 0, result.stderr[-3000:]
        assert forecast_report(tmp_path / name) == expected, name
        assert json.loads((tmp_path / name / "forecast-eval.json").read_text())["executor"]["name"] == name
        overlays = (tmp_path / name / "forecast-overlays.png").read_bytes()
        assert overlays == (tmp_path / "serial" / "forecast-overlays.png").read_bytes()
