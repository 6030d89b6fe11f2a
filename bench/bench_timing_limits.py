"""Limit sweep of the time parameterisation (issue 4 bar: zero violations over 10,000 random trajectories).

Usage::

    .venv/bin/python bench/bench_timing_limits.py                 # 10,000 random paths, seed 0
    .venv/bin/python bench/bench_timing_limits.py --count 500 --seed 3

Each path has 2-6 waypoints drawn uniformly inside the Panda's joint limits, with a random velocity
scaling in [0.05, 1]; every returned trajectory is checked sample by sample (position, velocity,
acceleration, jerk). Paths the timing refuses are counted separately (a refusal is not a violation).
Writes results/bench-timing-limits.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from molmomotion_ros.planning.limits import JointLimits
from molmomotion_ros.planning.timing import TimingError, time_parameterize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10_000, help="number of random paths")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--out", default="results/bench-timing-limits.json", help="JSON output path")
    args = parser.parse_args()
    limits = JointLimits.from_yaml()
    rng = np.random.default_rng(args.seed)
    violations, refused, durations, times = [], 0, [], []
    for i in tqdm(range(args.count), desc="timing", unit="path", mininterval=2.0):
        scaled = limits.scaled(float(rng.uniform(0.05, 1.0)))
        path = rng.uniform(scaled.position_lower_rad, scaled.position_upper_rad, (int(rng.integers(2, 7)), 7))
        start = time.perf_counter()
        try:
            trajectory = time_parameterize(path, scaled)
        except TimingError:
            refused += 1
            continue
        times.append(time.perf_counter() - start)
        durations.append(trajectory.duration_s)
        problems = trajectory.violations(scaled)
        if problems:
            violations.append({"index": i, "problems": problems})
    report = {"count": args.count, "seed": args.seed, "violations": len(violations), "refused": refused,
              "violation_examples": violations[:10], "median_timing_ms": float(np.median(times) * 1000),
              "median_duration_s": float(np.median(durations))}
    print(f"{args.count} random paths: {len(violations)} with a limit violation, {refused} refused; "
          f"median {report['median_timing_ms']:.1f} ms to time a path")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
