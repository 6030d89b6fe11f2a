"""Local processes against Ray: episodes per second of ``molmomotion sim-eval --agent oracle``, side by side.

Starts a Ray head on 127.0.0.1 with as many CPUs as there are workers (``ray start --head``, its own ports and
temporary folder; stopped at the end), then runs the same suite with ``--executor local --workers N`` and with
``--executor ray --ray-address 127.0.0.1:PORT``, alternating, each run a fresh ``molmomotion`` process as a
user would start it. ``--private`` adds a third column: ``--executor ray`` without an address (a Ray instance
started for the run). Checks that every run wrote the same results (timing and executor fields aside).

Reports, per executor, the median over the repeats of episodes per second over the whole command (start-up
included) and over the evaluation alone (the ``wall_time_s`` in the results: joining Ray and starting its
workers count, Python's start-up does not), and Ray's ratio to local. The issue's target: Ray within 15 %
of local.

Usage::

    .venv/bin/python bench/bench_executor.py                          # main suite, 25 per family, 2 workers
    .venv/bin/python bench/bench_executor.py --episodes 5 --repeats 1 --private

Writes ``bench/results/executor.json``.
"""

from __future__ import annotations

import argparse
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

from molmomotion_ros.execution import LOOPBACK_ENV, loopback_ray_head  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "executor.json"
IGNORED = {"wall_time_s", "mean_wall_time_s", "timestamp", "git_revision", "executor", "workers"}


def comparable(document):
    if isinstance(document, dict):
        return {k: comparable(v) for k, v in document.items() if k not in IGNORED}
    if isinstance(document, list):
        return [comparable(v) for v in document]
    return document


def run_once(mode: str, args: argparse.Namespace, address: str | None, out: Path) -> dict:
    command = [sys.executable, "-m", "molmomotion_ros.cli", "sim-eval", "--agent", "oracle", "--suite", args.suite,
               "--episodes", str(args.episodes), "--workers", str(args.workers), "--no-progress", "--out", str(out)]
    if mode != "local":
        command += ["--executor", "ray"]
    if mode == "ray":
        command += ["--ray-address", address]
    if args.batch_size:
        command += ["--batch-size", str(args.batch_size)]
    env = {**os.environ, **LOOPBACK_ENV}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall_time_s = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{mode}: sim-eval failed ({done.returncode}):\n{done.stderr[-3000:]}")
    document = json.loads(out.read_text())
    episodes = len(document["episodes"])
    return {"mode": mode, "wall_time_s": round(wall_time_s, 3),
            "evaluation_wall_time_s": document["meta"]["wall_time_s"],
            "episodes_per_s": round(episodes / wall_time_s, 3),
            "evaluation_episodes_per_s": round(episodes / document["meta"]["wall_time_s"], 3),
            "executor": document["meta"]["executor"], "episodes": episodes, "document": document}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="main", help="suite name or file (default: main)")
    parser.add_argument("--episodes", type=int, default=25, help="episodes per family (default: 25)")
    parser.add_argument("--workers", type=int, default=2, help="workers, and the Ray head's CPUs (default: 2)")
    parser.add_argument("--batch-size", type=int, help="--batch-size for every run (default: the CLI's)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per executor, alternating (default: 3)")
    parser.add_argument("--private", action="store_true",
                        help="also time --executor ray without an address (a Ray instance started per run)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"report JSON (default: {RESULTS})")
    args = parser.parse_args(argv)

    modes = ["local", "ray"] + (["ray-private"] if args.private else [])
    runs: list[dict] = []
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp, loopback_ray_head(args.workers, {"PYTHONPATH": pythonpath}) as address:
        print(f"Ray head at {address} with {args.workers} CPUs", flush=True)
        for repeat in range(args.repeats):
            for mode in modes:
                run = run_once(mode, args, address, Path(tmp) / f"{mode}-{repeat}.json")
                print(f"  {mode:12s} run {repeat + 1}: {run['episodes']} episodes, {run['wall_time_s']:.1f} s "
                      f"({run['episodes_per_s']:.2f} ep/s; evaluation {run['evaluation_wall_time_s']:.1f} s, "
                      f"{run['evaluation_episodes_per_s']:.2f} ep/s)", flush=True)
                runs.append(run)
    reference = comparable(runs[0]["document"])
    same = all(comparable(r["document"]) == reference for r in runs)

    summary = {}
    for mode in modes:
        mine = [r for r in runs if r["mode"] == mode]
        summary[mode] = {
            "episodes_per_s": statistics.median(r["episodes_per_s"] for r in mine),
            "evaluation_episodes_per_s": statistics.median(r["evaluation_episodes_per_s"] for r in mine),
            "wall_time_s": [r["wall_time_s"] for r in mine],
            "evaluation_wall_time_s": [r["evaluation_wall_time_s"] for r in mine],
            "executor": mine[0]["executor"],
        }
    for mode in modes[1:]:
        for key in ("episodes_per_s", "evaluation_episodes_per_s"):
            summary[mode][f"{key}_vs_local"] = round(summary[mode][key] / summary["local"][key], 3)
    report = {
        "benchmark": "executor",
        "suite": args.suite, "episodes_per_family": args.episodes, "episodes": runs[0]["episodes"],
        "workers": args.workers, "repeats": args.repeats, "batch_size": args.batch_size,
        "identical_results": same,
        "summary": summary,
        "target": "ray episodes/s within 15 % of local (ratio >= 0.85)",
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
                    "load_average_1m": round(os.getloadavg()[0], 2)},
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"\n{runs[0]['episodes']} oracle episodes, {args.workers} workers, median of {args.repeats}:")
    print(f"{'executor':12s}  {'ep/s (command)':>15s}  {'ep/s (evaluation)':>18s}  vs local")
    for mode in modes:
        row = summary[mode]
        ratio = "" if mode == "local" else \
            f"{row['episodes_per_s_vs_local']:.2f} / {row['evaluation_episodes_per_s_vs_local']:.2f}"
        print(f"{mode:12s}  {row['episodes_per_s']:15.2f}  {row['evaluation_episodes_per_s']:18.2f}  {ratio}")
    print(f"identical results: {same}; wrote {args.out}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
