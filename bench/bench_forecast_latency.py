"""Forecast latency of the shipped models on this machine (issue bar: FM, K=8, P=8, F=32, 10 steps, p50 ≤ 33 ms).

Usage::

    .venv/bin/python bench/bench_forecast_latency.py                 # fm and ar, 50 calls each, 2 threads
    .venv/bin/python bench/bench_forecast_latency.py --calls 200 --threads 2

One call = the whole ``predict`` (validation, encoder on the 160x120 RGB-D frame, head, frame
conversion) on a rendered harness frame; the instruction embedding is cached after the first call,
as in a running node. Writes results/bench-forecast-latency.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=50, help="timed calls per configuration")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", default="results/bench-forecast-latency.json", help="JSON output path")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from molmomotion_ros.forecasting import make_forecaster
    from molmomotion_sim.tasks import TASKS
    from molmomotion_sim.world import World

    with World() as world:
        task = TASKS["place-in-container"](world)
        task.reset(110_000)
        obs = world.render()
        mask = obs.segmentation == task.target.body_id
        v, u = np.nonzero(mask)
        pick = np.linspace(0, len(u) - 1, 8).astype(int)
        uv = np.c_[u[pick], v[pick]].astype(float)
        pts = obs.camera.deproject(uv, obs.depth_m[v[pick], u[pick]])
    rows = []
    for name, k in (("fm", 8), ("fm", 1), ("ar", 1)):
        forecaster = make_forecaster(name, device="cpu")
        def call(forecaster=forecaster, k=k):
            return forecaster.predict(obs.rgb[None], obs.depth_m[None], obs.camera.K, obs.camera.T_world_cam, uv,
                                      pts[None], task.instruction, horizon=32, num_samples=k)

        for _ in range(3):
            call()
        times = []
        for _ in range(args.calls):
            start = time.perf_counter()
            call()
            times.append((time.perf_counter() - start) * 1000)
        row = {"backend": name, "K": k, "P": 8, "F": 32, "p50_ms": float(np.median(times)),
               "p95_ms": float(np.percentile(times, 95)), "calls": args.calls}
        rows.append(row)
        print(f"{name:>3} K={k}: p50 {row['p50_ms']:.1f} ms, p95 {row['p95_ms']:.1f} ms")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "threads": args.threads, "machine": platform.platform()}, indent=1))


if __name__ == "__main__":
    main()
