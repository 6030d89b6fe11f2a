"""Time the evaluation harness: ``molmomotion sim-eval --agent oracle`` on 100 test episodes.

Runs the first 25 test-split episodes of each of the four task families (the ``main`` suite cut to
25 per family) with 2 worker processes, as a user would — a fresh ``molmomotion`` process, start-up
included — and reports episodes per second and total wall time.

Usage::

    .venv/bin/python bench/bench_oracle_eval.py                  # 25 per family, 2 workers
    .venv/bin/python bench/bench_oracle_eval.py --episodes 5 --workers 1 --out results/bench-small.json

Writes ``results/bench-oracle-eval.json`` (timings, machine, success table) and keeps the
evaluation's own per-episode JSON next to it (``results/bench-oracle-eval-episodes.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path


def cli_command() -> list[str]:
    """The installed ``molmomotion`` console script of this interpreter, else ``python -m``."""
    script = Path(sys.executable).with_name("molmomotion")
    if script.is_file():
        return [str(script)]
    found = shutil.which("molmomotion")
    return [found] if found else [sys.executable, "-m", "molmomotion_ros.cli"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="main", help="suite file or shipped suite name (default: main)")
    parser.add_argument("--episodes", type=int, default=25, help="episodes per family (default: 25)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default: 2)")
    parser.add_argument("--out", type=Path, default=Path("results/bench-oracle-eval.json"),
                        help="benchmark JSON (default: results/bench-oracle-eval.json)")
    args = parser.parse_args(argv)

    episodes_out = args.out.with_name(args.out.stem + "-episodes.json")
    command = [*cli_command(), "sim-eval", "--agent", "oracle", "--suite", args.suite,
               "--episodes", str(args.episodes), "--workers", str(args.workers), "--out", str(episodes_out),
               "--no-progress"]
    print("$ " + " ".join(command), flush=True)
    start = time.perf_counter()
    completed = subprocess.run(command)
    wall_time_s = time.perf_counter() - start
    if completed.returncode != 0:
        print(f"sim-eval failed with exit status {completed.returncode}", file=sys.stderr)
        return completed.returncode

    evaluation = json.loads(episodes_out.read_text())
    n_episodes = len(evaluation["episodes"])
    episode_wall_s = [e["wall_time_s"] for e in evaluation["episodes"]]
    report = {
        "benchmark": "oracle-eval",
        "command": command,
        "episodes": n_episodes,
        "workers": args.workers,
        "wall_time_s": round(wall_time_s, 3),
        "evaluation_wall_time_s": evaluation["meta"]["wall_time_s"],  # inside the CLI, without start-up
        "episodes_per_s": round(n_episodes / wall_time_s, 3),
        "mean_episode_wall_time_s": round(sum(episode_wall_s) / n_episodes, 3),
        "success_rate": evaluation["summary"][-1]["rate"],
        "summary": evaluation["summary"],
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor(), "cpu_count": os.cpu_count()},
        "git_revision": evaluation["meta"].get("git_revision"),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{n_episodes} episodes with {args.workers} workers: {wall_time_s:.1f} s wall, "
          f"{report['episodes_per_s']:.2f} episodes/s (mean {report['mean_episode_wall_time_s']:.2f} s per episode "
          f"per worker); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
