"""The success-rate experiment's graph on local processes and on Ray, and what the full grid would take on a cluster.

1. **The issue's small grid, local vs Ray, on this machine**: the grid of ``test/test_execution_grid.py`` (variants
   A, B × steps 5, 10 × 2 seeds × 8 test episodes per family of 8 samples, one demonstration per family and split)
   run by ``molmomotion experiment success-rate`` as a user runs it, each run a fresh command with a fresh ``--out``
   (its demonstrations included): ``--executor local --workers N`` and ``--executor ray --ray-address`` of a head
   started here with N CPUs, alternating. Reports the command's wall time and each stage's (from ``runs.jsonl``), and
   checks that every run wrote the same table.
2. **Per-task costs at the real grid's scale**, measured in this process on one torch thread: a recorded
   demonstration (oracle v2, a frame every 2 samples, the FM forecast at t0), a shard's fixed cost, merging,
   encoding a frame (frozen fm encoder) and caching its trunk (fine-tuning), a head step at batch 64 (the current
   recipe: footprint, corrective labels) and a fine-tuning step at batch 16 (each with its validation pass), loading
   a recording and saving encodings, a test
   episode of the shipped A.pt and C.pt (150 samples), and a worker's start-up on each executor.
3. **A projection** (stated as one: computed, not measured) of the full grid — variants A, B, C, D × steps 1k, 2k,
   5k, 10k, 20k × 3 seeds × 100 test episodes per family (4 families), 400 train and 10 validation demonstrations
   per family — with a frozen encoder and with the post-trunk layers fine-tuned, on a 64-core cluster (64 workers
   of 1 CPU, as fast as this machine's cores) and, for comparison, on these cores: each stage's tasks placed
   greedily on the workers in the order the graph sends them, plus each stage's worker start-up.

Usage::

    .venv/bin/python bench/bench_grid.py                 # 2 workers, 2 repeats of each executor
    .venv/bin/python bench/bench_grid.py --repeats 1 --skip-costs   # keeps the file's costs and projection

Writes ``bench/results/grid_executor.json``.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # molmomotion_ros from this checkout, as the CLI runs use it

from molmomotion_ros.execution import LOOPBACK_ENV, loopback_driver_env, loopback_ray_head  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "grid_executor.json"
TINY = ["--variants", "A,B", "--steps", "5,10", "--seeds", "2", "--episodes", "8", "--train-episodes", "1",
        "--val-episodes", "1", "--frames-every", "8", "--batch-size", "8", "--eval-every", "5", "--max-samples", "8",
        "--no-progress"]
FAMILIES = ("place-in-container", "place-relative", "push", "stack")
FULL = {"variants": ("A", "B", "C", "D"), "steps": (1000, 2000, 5000, 10000, 20000), "seeds": 3,
        "test_episodes_per_family": 100, "train_episodes_per_family": 400, "val_episodes_per_family": 10,
        "eval_every": 250, "families": 4}
ENCODERS = {"A": "fm", "B": "base", "C": "fm", "D": "scratch"}


# --- 1. the tiny grid ----------------------------------------------------------------------------
def tiny_grid(workers: int, repeats: int, env: dict) -> dict:
    runs: dict[str, list[dict]] = {"local": [], "ray": []}
    tables = set()
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="bench-grid-") as tmp, \
            loopback_ray_head(num_cpus=workers, env={"PYTHONPATH": pythonpath}) as address:
        for repeat in range(repeats):
            for name, args in (("local", ["--workers", str(workers)]),
                               ("ray", ["--executor", "ray", "--ray-address", address])):
                out = Path(tmp) / f"{name}-{repeat}"
                start = time.perf_counter()
                result = subprocess.run([sys.executable, "-m", "molmomotion_ros.cli", "experiment", "success-rate",
                                         *TINY, *args, "--out", str(out)], capture_output=True, text=True,
                                        env={**os.environ, **LOOPBACK_ENV, **env})
                wall = time.perf_counter() - start
                if result.returncode != 0:
                    raise SystemExit(f"{name} run failed:\n{result.stderr[-3000:]}")
                invocation = json.loads((out / "runs.jsonl").read_text().splitlines()[-1])
                tables.add((out / "success_rate.md").read_text())
                runs[name].append({"command_s": round(wall, 2), "graph_s": invocation["wall_s"],
                                   "stages_s": {k: v["wall_s"] for k, v in invocation["stages"].items()}})
                print(f"tiny grid {name} #{repeat + 1}: {wall:.1f} s (graph {invocation['wall_s']:.1f} s; "
                      + ", ".join(f"{k} {v['wall_s']:.1f}" for k, v in invocation["stages"].items()) + ")",
                      flush=True)
    summary = {name: {"command_s_median": statistics.median(r["command_s"] for r in rows),
                      "graph_s_median": statistics.median(r["graph_s"] for r in rows),
                      "stages_s_median": {k: statistics.median(r["stages_s"][k] for r in rows)
                                          for k in rows[0]["stages_s"]}} for name, rows in runs.items()}
    return {"grid": " ".join(TINY), "workers": workers, "repeats": repeats, "runs": runs, "median": summary,
            "ray_over_local_command": round(summary["ray"]["command_s_median"] / summary["local"]["command_s_median"],
                                            3),
            "same_table_every_run": len(tables) == 1}


# --- 2. per-task costs -----------------------------------------------------------------------------
def task_costs(workers: int, env: dict) -> dict:
    import numpy as np
    import torch

    from molmomotion_policies.demos import DemoConfig, Demos, record_demos
    from molmomotion_policies.experiment import GraphWorker, merge_demos, run_test_episode
    from molmomotion_policies.model import GoalConditionedPolicy, PolicyConfig
    from molmomotion_policies.train import TrainConfig, cached_trunk, encode_demos, save_npy, train_policy
    from molmomotion_sim.seeds import split_seeds

    torch.set_num_threads(1)
    costs: dict = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench-grid-costs-"))

    def timed(label, fn):
        start = time.perf_counter()
        value = fn()
        costs[label] = round(time.perf_counter() - start, 3)
        print(f"{label}: {costs[label]:.2f} s", flush=True)
        return value

    one = timed("demo_shard_1_episode_s", lambda: record_demos(
        DemoConfig("train", 1, families=("push",), frames_every=2, forecast=True), progress=False))
    demos = timed("demo_shard_8_episodes_s", lambda: record_demos(
        DemoConfig("train", 2, families=FAMILIES, frames_every=2, forecast=True), progress=False))
    costs["demo_episode_s"] = round((costs["demo_shard_8_episodes_s"] - costs["demo_shard_1_episode_s"]) / 7, 3)
    costs["demo_shard_overhead_s"] = round(max(0.0, costs["demo_shard_1_episode_s"] - costs["demo_episode_s"]), 3)
    costs["frames_per_episode"] = round(len(demos) / demos.num_episodes, 1)
    del one
    config = DemoConfig("train", 2, families=FAMILIES, frames_every=2, forecast=True)
    timed("merge_and_save_8_episodes_s", lambda: merge_demos(config, [demos]).save(tmp / "merged.npz"))
    costs["merge_per_frame_s"] = round(costs["merge_and_save_8_episodes_s"] / len(demos), 6)
    demos = Demos.load(tmp / "merged.npz")

    timed("demos_load_s", lambda: Demos.load(tmp / "merged.npz"))
    costs["demos_load_per_frame_s"] = round(costs["demos_load_s"] / len(demos), 6)
    model = GoalConditionedPolicy(PolicyConfig.for_variant("A"))
    encoding = timed("encode_frames_s", lambda: encode_demos(model, demos, progress=False))
    costs["encode_per_frame_s"] = round(costs["encode_frames_s"] / len(demos), 5)
    timed("encoding_save_and_load_s", lambda: (save_npy(tmp / "enc.npy", encoding), np.load(tmp / "enc.npy")))
    costs["encode_merge_per_frame_s"] = round(costs["encoding_save_and_load_s"] / len(demos), 7)
    timed("trunk_cache_frames_s", lambda: cached_trunk(model, demos, tmp / "trunk", progress=False))
    costs["trunk_per_frame_s"] = round(costs["trunk_cache_frames_s"] / len(demos), 5)

    def seconds(policy: PolicyConfig, steps: int, batch: int) -> float:
        """Wall time of ``steps`` steps and one validation pass on every frame (the encodings already cached)."""
        run = train_policy(policy, demos, demos, tmp / f"run-{policy.finetune}-{steps}",
                           TrainConfig(steps=(steps,), batch_size=batch, eval_every=10 * steps, state_noise_m=0.015,
                                       state_noise_rad=0.1), progress=False, encoding_cache=tmp / "enc")
        return steps / run.steps_per_s

    for name, policy, short, long, batch in (
            ("head", PolicyConfig.for_variant("A", footprint=True), 200, 1000, 64),
            ("finetune", PolicyConfig.for_variant("A", footprint=True, finetune="post_trunk"), 5, 25, 16)):
        t_short, t_long = seconds(policy, short, batch), seconds(policy, long, batch)
        step = (t_long - t_short) / (long - short)
        costs[f"{name}_step_s"] = round(step, 5)
        costs[f"{name}_validation_per_frame_s"] = round(max(0.0, t_short - short * step) / len(demos), 6)
        print(f"{name}: {1 / step:.1f} steps/s, validation {costs[f'{name}_validation_per_frame_s'] * 1e3:.3f} ms "
              "per frame", flush=True)

    worker = GraphWorker()
    from molmomotion_policies.agent import AgentConfig
    from molmomotion_policies.controller import shipped_policy

    try:
        for variant in ("A", "C"):
            checkpoint = str(shipped_policy(variant))
            run_test_episode(worker, checkpoint, AgentConfig(), "push", split_seeds("test", 1)[0])  # load, warm up
            start = time.perf_counter()
            results = [run_test_episode(worker, checkpoint, AgentConfig(), family, seed)
                       for family in FAMILIES for seed in split_seeds("test", 2)]
            costs[f"test_episode_{variant}_s"] = round((time.perf_counter() - start) / len(results), 3)
            print(f"test episode {variant}: {costs[f'test_episode_{variant}_s']:.2f} s "
                  f"({sum(r.success for r in results)}/{len(results)} solved)", flush=True)
    finally:
        worker.close()
    costs["worker_start_s"] = worker_start(workers, env)
    costs["test_episode_per_variant_s"] = {v: costs["test_episode_C_s" if v == "C" else "test_episode_A_s"]
                                           for v in FULL["variants"]}
    return costs


def worker_start(workers: int, env: dict) -> dict:
    """Seconds from a stage's start to its first result on fresh workers (spawn or actor, imports, torch): a
    stage of ``workers`` tasks that have nothing to do (shards already recorded)."""
    from molmomotion_policies.demos import DemoConfig
    from molmomotion_policies.experiment import DemoShardJob, _close_worker, _new_worker, _run_job
    from molmomotion_ros.execution import LocalExecutor, RayExecutor, WorkerTask

    done = Path(tempfile.mkdtemp(prefix="bench-grid-noop-")) / "done.npz"
    done.write_bytes(b"")
    jobs = [DemoShardJob(DemoConfig("train", 1), str(done))] * workers
    # The init argument is the workers' log level: 30 and 40 (WARNING, ERROR) make two tasks that cannot share
    # workers, so the second map below starts fresh actors on a Ray already joined.
    task = WorkerTask(_new_worker, _run_job, (30,), _close_worker, name="noop")
    out = {}
    start = time.perf_counter()
    LocalExecutor(workers, 1).map(task, jobs)
    out["local"] = round(time.perf_counter() - start, 2)
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    with loopback_driver_env():
        with loopback_ray_head(num_cpus=workers, env={"PYTHONPATH": pythonpath, **env}) as address:
            executor = RayExecutor(address, batch_size=1)
            with executor.session():
                executor.map(WorkerTask(_new_worker, _run_job, (30,), _close_worker), jobs[:1])  # Ray connected
                start = time.perf_counter()
                executor.map(WorkerTask(_new_worker, _run_job, (40,), _close_worker), jobs)  # fresh actors
                out["ray"] = round(time.perf_counter() - start, 2)
    print(f"worker start-up: local {out['local']:.1f} s, ray {out['ray']:.1f} s", flush=True)
    return out


# --- 3. the projection -----------------------------------------------------------------------------
def makespan(durations: list[float], workers: int) -> float:
    """Wall time of independent tasks sent in this order to ``workers`` workers, each taking the next task when free."""
    free = [0.0] * min(workers, max(1, len(durations)))
    heapq.heapify(free)
    end = 0.0
    for duration in durations:
        start = heapq.heappop(free)
        end = max(end, start + duration)
        heapq.heappush(free, start + duration)
    return end


def project(costs: dict, workers: int, finetune: bool, start_s: float) -> dict:
    """Each stage's wall time on ``workers`` workers from the measured per-task costs (see the module docstring)."""
    f, families = FULL, FULL["families"]
    frames_per_episode = costs["frames_per_episode"]
    train_eps, val_eps = f["train_episodes_per_family"] * families, f["val_episodes_per_family"] * families
    val_frames = val_eps * frames_per_episode
    from molmomotion_policies.experiment import DEMO_SHARD_EPISODES as shard

    shards = [min(shard, n - s) for n in (f["train_episodes_per_family"], f["val_episodes_per_family"])
              for _ in range(families) for s in range(0, n, shard)]
    shard_s = [costs["demo_shard_overhead_s"] + n * costs["demo_episode_s"] for n in shards]
    stages = {"demos": makespan(shard_s, workers),
              "demos-merge": makespan([train_eps * frames_per_episode * costs["merge_per_frame_s"],
                                       val_eps * frames_per_episode * costs["merge_per_frame_s"]], workers)}
    encoders = {ENCODERS[v] for v in f["variants"] if ENCODERS[v] != "scratch"}
    scratch = f["seeds"] if "D" in f["variants"] else 0
    recordings = (train_eps * frames_per_episode, val_eps * frames_per_episode)
    load_s = recordings[0] * costs["demos_load_per_frame_s"]  # a worker's first task loads the recording
    if finetune:  # one task per (encoder, recording): its trunk outputs (fm and base share the trunk: counted twice)
        durations = [n * costs["trunk_per_frame_s"] for _ in range(len(encoders) + scratch) for n in recordings]
        stages["encode"] = load_s + makespan(durations, workers)
        step, validation = costs["finetune_step_s"], costs["finetune_validation_per_frame_s"]
    else:  # shards of ENCODE_SHARD_FRAMES frames, then one merge per (encoder, recording)
        from molmomotion_policies.experiment import ENCODE_SHARD_FRAMES as size

        durations = [min(size, n - s) * costs["encode_per_frame_s"] for _ in range(len(encoders) + scratch)
                     for n in map(round, recordings) for s in range(0, n, size)]
        stages["encode"] = load_s + makespan(durations, workers)
        stages["encode-merge"] = makespan([n * costs["encode_merge_per_frame_s"]
                                           for _ in range(len(encoders) + scratch) for n in recordings], workers)
        step, validation = costs["head_step_s"], costs["head_validation_per_frame_s"]
    last = f["steps"][-1]
    validations = last // f["eval_every"]
    run_s = last * step + validations * val_frames * validation
    runs = len(f["variants"]) * f["seeds"]
    stages["train"] = load_s + makespan([run_s] * runs, workers)
    episodes_per_cell = f["test_episodes_per_family"] * families
    cells = runs * len(f["steps"])
    per_batch = max(1, min(4, cells * episodes_per_cell // (workers * 4)))
    durations = [per_batch * costs["test_episode_per_variant_s"][v] for v in f["variants"] for _ in range(f["seeds"])
                 for _ in f["steps"] for _ in range(episodes_per_cell // per_batch)]
    stages["eval"] = makespan(durations, workers)
    # The stages share their workers (an executor session): the first stage, with more shards than workers, starts
    # them all; none is started again.
    total = sum(stages.values()) + start_s
    return {"workers": workers, "stages_s": {k: round(v, 1) for k, v in stages.items()}, "worker_start_s": start_s,
            "total_s": round(total, 1), "total_h": round(total / 3600, 2),
            "training_run_s": round(run_s, 1), "test_episodes": cells * episodes_per_cell,
            "cpu_hours": round((sum(d for d in durations) + runs * run_s) / 3600, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="runs of the tiny grid per executor (alternating)")
    parser.add_argument("--cluster-cores", type=int, default=64)
    parser.add_argument("--skip-costs", action="store_true", help="only the tiny grid")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    env = {"HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    document = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": {
        "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
        "load_average_at_start": os.getloadavg()}, "command": " ".join(sys.argv)}
    document["tiny_grid"] = tiny_grid(args.workers, args.repeats, env)
    if args.skip_costs and args.out.is_file():  # the costs and projection of the run that measured them
        earlier = json.loads(args.out.read_text())
        for key in ("task_costs", "projection"):
            if key in earlier:
                document[key] = {**earlier[key], "measured": earlier.get("measured_costs", earlier["created"])}
        document["measured_costs"] = earlier.get("measured_costs", earlier["created"])
    if not args.skip_costs:
        costs = task_costs(args.workers, env)
        document["task_costs"] = costs
        projections = {}
        for name, finetune in (("frozen_encoder", False), ("finetuned_encoder", True)):
            projections[name] = {
                f"cluster_{args.cluster_cores}_cores_ray": project(costs, args.cluster_cores, finetune,
                                                                   costs["worker_start_s"]["ray"]),
                f"this_machine_{args.workers}_cores_local": project(costs, args.workers, finetune,
                                                                    costs["worker_start_s"]["local"])}
        document["projection"] = {
            "what": "a projection from the measured per-task costs, not a measurement: the full grid's tasks placed "
                    "greedily on the workers stage by stage (the graph's order), each stage paying one worker "
                    "start-up; cluster cores assumed as fast as this machine's; shared-storage traffic and Ray's "
                    "per-task overhead beyond the start-up not counted (the tiny grid's ray/local ratio bounds it)",
            "grid": FULL, **projections}
    document["bench_wall_s"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1) + "\n")
    print(json.dumps({k: document[k] for k in ("tiny_grid", "projection") if k in document}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
