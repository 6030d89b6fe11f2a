"""Why manipulation_node and episode_runner spin a SingleThreadedExecutor: rclpy's MultiThreadedExecutor
(Jazzy, rclpy 7.1) re-yields every task still waiting in its thread pool on each spin, without waiting,
and submits it again. Once callbacks arrive faster than the pool drains them (a loaded CPU), the spin
thread busy-loops on the GIL: the callbacks themselves and everything else in the process slow down and
low-rate messages (an instruction) queue behind thousands of duplicate submissions.

One process, one isolated DDS domain: a publisher floods ``fast`` (std_msgs/Float64, ~400 Hz offered;
each callback does 4 ms of Python work) and sends a timestamped ``slow`` message every 100th; the
subscriber node runs in the executor under test. Usage::

    .venv/bin/python bench/bench_executor_resubmission.py            # both executors, 8 s each

Prints, per executor: messages published (the publisher shares the GIL), callbacks run, thread-pool
submissions, and the slow topic's latency. Writes bench/results/executor_resubmission.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "executor_resubmission.json"


def run_one(kind: str, seconds: float, work_s: float) -> dict:
    import rclpy
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
    from std_msgs.msg import Float64, String

    rclpy.init()
    publisher_node = rclpy.create_node("flood")
    subscriber_node = rclpy.create_node("subscriber")
    counts = {"fast": 0, "slow_latency_s": []}

    def on_fast(_msg) -> None:
        counts["fast"] += 1
        start = time.perf_counter()
        while time.perf_counter() - start < work_s:  # Python work holding the GIL, as a busy node's does
            pass

    def on_slow(msg) -> None:
        counts["slow_latency_s"].append(time.monotonic() - float(msg.data))

    if kind == "multi":
        from rclpy.callback_groups import ReentrantCallbackGroup

        group = ReentrantCallbackGroup()
        executor = MultiThreadedExecutor(num_threads=2)
    else:
        group = None
        executor = SingleThreadedExecutor()
    subscriber_node.create_subscription(Float64, "fast", on_fast, 10, callback_group=group)
    subscriber_node.create_subscription(String, "slow", on_slow, 10, callback_group=group)
    executor.add_node(subscriber_node)
    submissions = [0]
    if kind == "multi":
        submit = executor._executor.submit  # count what the executor hands its pool

        def counting_submit(fn, *args, **kwargs):
            submissions[0] += 1
            return submit(fn, *args, **kwargs)

        executor._executor.submit = counting_submit
    threading.Thread(target=executor.spin, daemon=True).start()
    fast = publisher_node.create_publisher(Float64, "fast", 10)
    slow = publisher_node.create_publisher(String, "slow", 10)
    time.sleep(1.0)  # discovery
    published = slow_sent = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        fast.publish(Float64(data=1.0))
        published += 1
        if published % 100 == 0:
            slow.publish(String(data=repr(time.monotonic())))
            slow_sent += 1
        time.sleep(0.0025)
    time.sleep(2.0)
    latency = sorted(counts["slow_latency_s"])
    return {"executor": kind, "fast_published": published, "fast_callbacks": counts["fast"],
            "pool_submissions": submissions[0] if kind == "multi" else None, "slow_sent": slow_sent,
            "slow_received": len(latency), "slow_latency_max_s": round(latency[-1], 4) if latency else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="flood duration per executor")
    parser.add_argument("--work-ms", type=float, default=4.0, help="Python work per fast callback")
    parser.add_argument("--child", choices=("multi", "single"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.seconds, args.work_ms / 1000)), flush=True)
        os._exit(0)  # skip rclpy teardown with a spinning daemon thread
    env = {**os.environ, "ROS_DOMAIN_ID": str(random.randint(100, 200)), "ROS_LOCALHOST_ONLY": "1"}
    rows = []
    for kind in ("multi", "single"):  # one process each: rclpy's context is per process
        out = subprocess.run([sys.executable, __file__, "--child", kind, "--seconds", str(args.seconds),
                              "--work-ms", str(args.work_ms)], env=env, capture_output=True, text=True, timeout=120)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for row in rows:
        print(f"{row['executor']:>6}: published {row['fast_published']:5d}, callbacks {row['fast_callbacks']:5d}, "
              f"pool submissions {row['pool_submissions'] if row['pool_submissions'] is not None else '-':>6}, "
              f"slow {row['slow_received']}/{row['slow_sent']} (max latency {row['slow_latency_max_s']} s)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"seconds": args.seconds, "work_ms": args.work_ms, "rows": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
