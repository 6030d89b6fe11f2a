"""Local processes against Ray: episodes per second of ``molmomotion sim-eval --agent oracle``, side by side.

Starts a Ray head on 127.0.0.1 with as many CPUs as there are workers (``ray start --head``, its own ports and
temporary folder; stopped at the end), then runs the same suite with ``--executor local --workers N`` and with
``--executor ray --ray-address 127.0.0.1:PORT``, alternating, each run a fresh ``molmomotion`` process as a
user would start it. ``--private`` adds a third column: ``--executor ray`` without an address (a Ray instance
started for the run). Checks that every run wrote the same results (timing and executor fields aside).

Reports, per executor, the median over the repeats of episodes per second over the whole command (start-up
included) and over the evaluation alone (the ``wall_time_s`` in the results: joining Ray and starting its
workers count, Python's start-up does not), and Ray's ratio to local. The issue's target: Ray within 15 %
of local. On a shared machine wall times swing with the neighbours' load, so it also reports the CPU
seconds each run cost, which they move far less: the command and its worker processes for local; the
command plus everything the Ray head ran meanwhile (its actors, raylet, GCS, agents) for Ray.

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
import resource
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


def head_session(port: str) -> int:
    """The session id of the `ray start --head --port=PORT` process (it leads its own session)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"start" in argv and b"--head" in argv and f"--port={port}".encode() in argv:
            return os.getsid(int(pid))
    raise SystemExit(f"no Ray head process for port {port}")


def session_ticks(sid: int, seen: dict[int, int]) -> None:
    """Record in ``seen`` the CPU ticks (user + system) so far of each live process of session ``sid``."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getsid(int(pid)) != sid:
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ProcessLookupError):
            continue
        seen[int(pid)] = max(seen.get(int(pid), 0), int(fields[11]) + int(fields[12]))


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(mode: str, args: argparse.Namespace, address: str | None, out: Path, head_sid: int | None) -> dict:
    command = [sys.executable, "-m", "molmomotion_ros.cli", "sim-eval", "--agent", "oracle", "--suite", args.suite,
               "--episodes", str(args.episodes), "--workers", str(args.workers), "--no-progress", "--out", str(out)]
    if mode != "local":
        command += ["--executor", "ray"]
    if mode == "ray":
        command += ["--ray-address", address]
    if args.batch_size:
        command += ["--batch-size", str(args.batch_size)]
    env = {**os.environ, **LOOPBACK_ENV}
    load = os.getloadavg()[0]
    # Ray's actors are the raylet's children, which it does not wait for: their CPU time is sampled while they
    # run (every 0.1 s; the last tenth of a second of each is missed), with the head's own processes'.
    before: dict[int, int] = {}
    during: dict[int, int] = {}
    if mode == "ray":
        session_ticks(head_sid, before)
    cpu_before = children_cpu_s()
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
        while process.poll() is None:
            if mode == "ray":
                session_ticks(head_sid, during)
            time.sleep(0.1)
        wall_time_s = time.perf_counter() - start
        stderr.seek(0)
        errors = stderr.read()
    cpu_s = children_cpu_s() - cpu_before
    cpu_s += sum(ticks - before.get(pid, 0) for pid, ticks in during.items()) / os.sysconf("SC_CLK_TCK")
    if process.returncode != 0:
        raise SystemExit(f"{mode}: sim-eval failed ({process.returncode}):\n{errors[-3000:]}")
    document = json.loads(out.read_text())
    episodes = len(document["episodes"])
    return {"mode": mode, "wall_time_s": round(wall_time_s, 3),
            "evaluation_wall_time_s": document["meta"]["wall_time_s"],
            "episodes_per_s": round(episodes / wall_time_s, 3),
            "evaluation_episodes_per_s": round(episodes / document["meta"]["wall_time_s"], 3),
            "cpu_s": round(cpu_s, 2), "cpu_s_per_episode": round(cpu_s / episodes, 4),
            "executor": document["meta"]["executor"], "episodes": episodes, "load_average_1m": round(load, 2),
            "document": document}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="main", help="suite name or file (default: main)")
    parser.add_argument("--episodes", type=int, default=25, help="episodes per family (default: 25)")
    parser.add_argument("--workers", type=int, default=2, help="workers, and the Ray head's CPUs (default: 2)")
    parser.add_argument("--batch-size", type=int, help="--batch-size for every run (default: the CLI's)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per executor, alternating (default: 3)")
    parser.add_argument("--private", action="store_true",
                        help="also time --executor ray without an address (a Ray instance started per run)")
    parser.add_argument("--worker-niceness", type=int,
                        help="the head's RAY_worker_niceness: Ray starts its workers niced (15), which on a machine "
                        "shared with other work costs them CPU share that local workers (nice 0) keep; 0 levels it")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"report JSON (default: {RESULTS})")
    args = parser.parse_args(argv)

    modes = ["local", "ray"] + (["ray-private"] if args.private else [])
    runs: list[dict] = []
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    head_env = {"PYTHONPATH": pythonpath}
    if args.worker_niceness is not None:
        head_env["RAY_worker_niceness"] = str(args.worker_niceness)
    with tempfile.TemporaryDirectory() as tmp, loopback_ray_head(args.workers, head_env) as address:
        print(f"Ray head at {address} with {args.workers} CPUs", flush=True)
        head_sid = head_session(address.rsplit(":", 1)[1])
        for repeat in range(args.repeats):
            for mode in modes:
                run = run_once(mode, args, address, Path(tmp) / f"{mode}-{repeat}.json", head_sid)
                print(f"  {mode:12s} run {repeat + 1}: {run['episodes']} episodes, {run['wall_time_s']:.1f} s "
                      f"({run['episodes_per_s']:.2f} ep/s; evaluation {run['evaluation_wall_time_s']:.1f} s, "
                      f"{run['evaluation_episodes_per_s']:.2f} ep/s; {run['cpu_s']:.1f} CPU-s; "
                      f"load {run['load_average_1m']:.1f})", flush=True)
                runs.append(run)
    reference = comparable(runs[0]["document"])
    same = all(comparable(r["document"]) == reference for r in runs)

    summary = {}
    for mode in modes:
        mine = [r for r in runs if r["mode"] == mode]
        summary[mode] = {
            "episodes_per_s": statistics.median(r["episodes_per_s"] for r in mine),
            "evaluation_episodes_per_s": statistics.median(r["evaluation_episodes_per_s"] for r in mine),
            "cpu_s_per_episode": statistics.median(r["cpu_s_per_episode"] for r in mine),
            "wall_time_s": [r["wall_time_s"] for r in mine],
            "evaluation_wall_time_s": [r["evaluation_wall_time_s"] for r in mine],
            "load_average_1m": [r["load_average_1m"] for r in mine],  # the machine's, as each run started
            "executor": mine[0]["executor"],
        }
    for mode in modes[1:]:
        for key in ("episodes_per_s", "evaluation_episodes_per_s"):
            summary[mode][f"{key}_vs_local"] = round(summary[mode][key] / summary["local"][key], 3)
        # episodes per CPU-second, relative: what the ratio of episodes/s would be on an otherwise idle machine
        summary[mode]["episodes_per_cpu_s_vs_local"] = round(
            summary["local"]["cpu_s_per_episode"] / summary[mode]["cpu_s_per_episode"], 3)
    report = {
        "benchmark": "executor",
        "suite": args.suite, "episodes_per_family": args.episodes, "episodes": runs[0]["episodes"],
        "workers": args.workers, "repeats": args.repeats, "batch_size": args.batch_size,
        "ray_worker_niceness": args.worker_niceness,  # None: Ray's default
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
    print(f"{'executor':12s}  {'ep/s (command)':>15s}  {'ep/s (evaluation)':>18s}  {'CPU-s/ep':>9s}  vs local")
    for mode in modes:
        row = summary[mode]
        ratio = "" if mode == "local" else (
            f"{row['episodes_per_s_vs_local']:.2f} / {row['evaluation_episodes_per_s_vs_local']:.2f} / "
            f"{row['episodes_per_cpu_s_vs_local']:.2f} (ep/s, evaluation ep/s, ep per CPU-s)")
        print(f"{mode:12s}  {row['episodes_per_s']:15.2f}  {row['evaluation_episodes_per_s']:18.2f}  "
              f"{row['cpu_s_per_episode']:9.3f}  {ratio}")
    print(f"identical results: {same}; wrote {args.out}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
