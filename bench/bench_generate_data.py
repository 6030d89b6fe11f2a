"""Time motion-dataset generation: oracle rollouts → compressed shards, on every core.

Generates ``--episodes`` train-split episodes per task family (the default settings of
``molmomotion generate-data``: H=1, F=32, P=8) into a temporary folder and reports episodes per
second (worker start-up and shard writing included), the success rate and the bytes per episode.
The target is ≥ 5 episodes/s on 2 cores. It also reports the CPU seconds spent per episode (all
processes): on a machine shared with other jobs, ``cores / cpu_s_per_episode`` is the rate that
idle cores would give.

Usage::

    .venv/bin/python bench/bench_generate_data.py                   # 10 per family, all cores
    .venv/bin/python bench/bench_generate_data.py --episodes 25 --workers 2 --history 3
    .venv/bin/python bench/bench_generate_data.py --keep data/bench  # keep the dataset there

Prints one JSON object (also written to ``--json`` when given).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from molmomotion_sim.dataset import generate_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=10, help="episodes per task family")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: every core)")
    parser.add_argument("--history", type=int, default=1, help="history frames H (1..3)")
    parser.add_argument("--horizon", type=int, default=32, help="future steps F")
    parser.add_argument("--frames-every", type=int, default=0, help="also render every N-th rollout sample")
    parser.add_argument("--keep", type=Path, help="write the dataset here instead of a temporary folder")
    parser.add_argument("--json", type=Path, help="also write the result to this file")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        out = args.keep or Path(tmp) / "train"
        start, cpu_start = time.perf_counter(), _cpu_s()
        manifest = generate_dataset(
            "train", args.episodes, out, history=args.history, horizon=args.horizon, workers=args.workers,
            frames_every=args.frames_every, overwrite=args.keep is not None, progress=False,
        )
        wall_s, cpu_s = time.perf_counter() - start, _cpu_s() - cpu_start
    episodes = manifest["episodes"]
    result = {
        "episodes": episodes,
        "successes": manifest["successes"],
        "skipped": len(manifest["skipped"]),
        "workers": manifest["workers"],
        "cores": os.cpu_count(),
        "episodes_per_s": manifest["episodes_per_s"],
        "wall_time_s": round(wall_s, 2),
        "cpu_s_per_episode": round(cpu_s / max(manifest["episodes"] + len(manifest["skipped"]), 1), 3),
        "bytes_per_episode": round(manifest["bytes"] / max(episodes, 1)),
        "config": {k: manifest["config"][k] for k in ("history", "horizon", "points_per_episode", "frames_every",
                                                      "image_size")},
        "machine": platform.platform(),
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


def _cpu_s() -> float:
    """User + system CPU seconds of this process and its finished children (the workers)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


if __name__ == "__main__":
    raise SystemExit(main())
