"""End-to-end ROS latency of forecaster_node: image stamp → forecast received in another process.

Three processes on one isolated DDS domain (localhost discovery):
  * this one publishes a rendered harness frame (place-in-container, test seed 110000: rgb8, 16UC1
    depth, camera_info, camera/pose) at ``--rate-hz`` with a fresh stamp each time, plus the
    instruction once (reliable, transient-local);
  * ``forecaster_node`` (fm, K=8, mode continuous, extrinsics from camera/pose);
  * an independent subscriber (rclpy + standard messages only) that records, per forecast on
    ``forecast/trajectory``, its arrival time minus its header stamp (the image's stamp t0).

The first ``--warmup`` forecasts are dropped. Latency includes waiting for the worker: in
continuous mode a frame that arrives while a forecast runs waits in the one-slot mailbox (a newer
frame supersedes it), so p95 measures what a consumer sees, not just compute. Usage::

    .venv/bin/python bench/bench_ros_forecast_latency.py                    # 150 forecasts, 1 torch thread
    .venv/bin/python bench/bench_ros_forecast_latency.py --forecasts 300 --threads 2

Writes bench/results/ros_forecast_latency.json (bar: p95 ≤ 100 ms on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NODE_MODULE = "molmomotion_ros.nodes.forecaster_node"
# In the node's OK diagnostic: image stamp → worker start, pipeline compute, image stamp → trajectory published.
NODE_TIMINGS = ("stamp_to_start_ms", "compute_ms", "stamp_to_publish_ms")


def isolated_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(random.randint(102, 200)), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    env.pop("ROS_LOCALHOST_ONLY", None)
    profile = ROOT / "config" / "fastdds_fast_discovery.xml"
    if profile.exists():
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    return env


def subscriber(out_path: Path, count: int, warmup: int, timeout_s: float) -> None:
    """Record arrival − stamp of ``warmup + count`` forecasts, then write them to ``out_path``."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from trajectory_msgs.msg import MultiDOFJointTrajectory

    rclpy.init()
    node = rclpy.create_node("forecast_latency_probe")
    latencies_ms: list[float] = []
    stamps: list[int] = []

    def on_forecast(msg: MultiDOFJointTrajectory) -> None:
        arrival_ns = time.time_ns()
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        if stamps and stamp_ns == stamps[-1]:
            return  # the transient-local replay of a forecast already counted
        stamps.append(stamp_ns)
        latencies_ms.append((arrival_ns - stamp_ns) / 1e6)

    node_timings: dict[str, list[float]] = {key: [] for key in NODE_TIMINGS}

    def on_diagnostics(msg: DiagnosticArray) -> None:  # the node's OK status (1 Hz) carries its timings
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if status.name == "forecaster_node: forecast" and "compute_ms" in values:
                for key in NODE_TIMINGS:
                    node_timings[key].append(float(values[key]))

    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
    node.create_subscription(MultiDOFJointTrajectory, "forecast/trajectory", on_forecast, qos)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    deadline = time.monotonic() + timeout_s
    while len(latencies_ms) < warmup + count and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    out_path.write_text(json.dumps({"latencies_ms": latencies_ms[warmup:], "stamps_ns": stamps[warmup:],
                                    "node_timings_ms": {key: v[1:] for key, v in node_timings.items()}}))
    node.destroy_node()
    rclpy.try_shutdown()


def render_scene():
    from molmomotion_sim.tasks import TASKS
    from molmomotion_sim.world import World

    with World() as world:
        task = TASKS["place-in-container"](world)
        task.reset(110_000)
        return world.render(world.camera), task.instruction


def noisy_variants(obs, count: int = 30, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` copies of the frame with sensor-like noise (RGB ±2 levels, depth ±1 mm), so no two
    consecutive frames are identical, as from a real camera: the forecaster keeps the last frame's
    encoding, and a bench repeating one frame would time the cache, not the model."""
    rng = np.random.default_rng(seed)
    variants = []
    for _ in range(count):
        rgb = np.clip(obs.rgb.astype(np.int16) + rng.integers(-2, 3, obs.rgb.shape), 0, 255).astype(np.uint8)
        depth = obs.depth_m + rng.integers(-1, 2, obs.depth_m.shape) * 1e-3
        variants.append((rgb, depth.astype(np.float32)))
    return variants


def publish_until(done, obs, instruction: str, rate_hz: float, timeout_s: float) -> int:
    """Publish noisy copies of the frame at ``rate_hz`` with fresh stamps until ``done()``; returns frames sent."""
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import String

    from molmomotion_ros import conversions

    rclpy.init()
    node = rclpy.create_node("frame_streamer")
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pub_color = node.create_publisher(Image, "camera/color/image_raw", qos_profile_sensor_data)
    pub_depth = node.create_publisher(Image, "camera/depth/image_raw", qos_profile_sensor_data)
    pub_info = node.create_publisher(CameraInfo, "camera/color/camera_info", qos_profile_sensor_data)
    pub_pose = node.create_publisher(PoseStamped, "camera/pose", latched)
    node.create_publisher(String, "instruction", latched).publish(String(data=instruction))
    frame_id, period_s, sent = obs.camera.frame_id, 1.0 / rate_hz, 0
    variants = noisy_variants(obs)
    deadline = time.monotonic() + timeout_s
    next_s = time.monotonic()
    while not done() and time.monotonic() < deadline:
        stamp = node.get_clock().now().to_msg()
        pub_pose.publish(conversions.pose_stamped(obs.camera.T_world_cam, stamp, "world"))
        pub_info.publish(conversions.camera_info_msg(obs.camera, stamp, frame_id))
        rgb, depth_m = variants[sent % len(variants)]
        pub_depth.publish(conversions.depth_to_msg(depth_m, stamp, frame_id, encoding="16UC1"))
        pub_color.publish(conversions.rgb_to_msg(rgb, stamp, frame_id))
        sent += 1
        next_s += period_s
        time.sleep(max(0.0, next_s - time.monotonic()))
    node.destroy_node()
    rclpy.try_shutdown()
    return sent


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--forecasts", type=int, default=150, help="timed forecasts (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=10, help="forecasts dropped first")
    parser.add_argument("--rate-hz", type=float, default=30.0, help="camera frame rate")
    parser.add_argument("--threads", type=int, default=1, help="the node's torch CPU threads (config: 1)")
    parser.add_argument("--hypotheses", type=int, default=8, help="K")
    parser.add_argument("--backend", default="fm", help="forecaster backend")
    parser.add_argument("--grounding-encoder", default="forecaster", choices=("forecaster", "base"),
                        help="the node's grounding_encoder (base: a second encoder pass per frame)")
    parser.add_argument("--timeout-s", type=float, default=300.0, help="give up after this long")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "ros_forecast_latency.json"),
                        help="JSON output path")
    parser.add_argument("--subscriber", metavar="OUT", help=argparse.SUPPRESS)  # internal: the probe process
    args = parser.parse_args()
    if args.subscriber:
        subscriber(Path(args.subscriber), args.forecasts, args.warmup, args.timeout_s)
        return

    load_before = os.getloadavg()[0]  # other work on the machine inflates every figure: recorded
    os.environ.update(isolated_env())
    env = dict(os.environ)
    obs, instruction = render_scene()
    workdir = Path(tempfile.mkdtemp(prefix="bench_ros_forecast_"))
    node_log = open(workdir / "node.log", "w")  # noqa: SIM115
    node = subprocess.Popen([sys.executable, "-m", NODE_MODULE, "--ros-args", "--params-file",
                             str(ROOT / "config" / "forecaster_node.yaml"), "-p", f"backend:={args.backend}",
                             "-p", "mode:=continuous", "-p", f"max_rate_hz:={args.rate_hz}",
                             "-p", f"num_hypotheses:={args.hypotheses}", "-p", f"torch_threads:={args.threads}",
                             "-p", f"grounding_encoder:={args.grounding_encoder}",
                             "-p", "extrinsics_source:=topic", "-p", "device:=cpu"],
                            env=env, stdout=node_log, stderr=subprocess.STDOUT, start_new_session=True)
    probe_out = workdir / "latencies.json"
    probe = subprocess.Popen([sys.executable, __file__, "--subscriber", str(probe_out), "--forecasts",
                              str(args.forecasts), "--warmup", str(args.warmup), "--timeout-s", str(args.timeout_s)],
                             env=env, start_new_session=True)
    start = time.monotonic()
    try:
        frames = publish_until(lambda: probe.poll() is not None or node.poll() is not None, obs, instruction,
                               args.rate_hz, args.timeout_s)
        probe.wait(30)
    finally:
        stop(probe)
        stop(node)
        node_log.close()
    elapsed_s = time.monotonic() - start
    result = json.loads(probe_out.read_text()) if probe_out.exists() else {"latencies_ms": []}
    latencies = np.asarray(result["latencies_ms"])
    if len(latencies) < args.forecasts:
        sys.exit(f"only {len(latencies)} forecasts arrived; node log:\n{(workdir / 'node.log').read_text()[-3000:]}")
    row = {
        "benchmark": "ros_forecast_latency", "backend": args.backend, "K": args.hypotheses, "P": 8, "F": 32,
        "mode": "continuous", "grounding_encoder": args.grounding_encoder, "rate_hz": args.rate_hz,
        "torch_threads": args.threads,
        "forecasts": int(len(latencies)), "frames_published": frames,
        "forecast_rate_hz": float(len(latencies) / max(elapsed_s, 1e-9)),
        "p50_ms": float(np.percentile(latencies, 50)), "p95_ms": float(np.percentile(latencies, 95)),
        "max_ms": float(latencies.max()), "mean_ms": float(latencies.mean()),
        "node_p50_ms": {key: float(np.median(v)) if v else None for key, v in result["node_timings_ms"].items()},
        "bar_p95_ms": 100.0, "cpu_count": os.cpu_count(), "machine": platform.platform(),
        "load_average_1min_before_after": [load_before, os.getloadavg()[0]],
        "node_log_tail": (workdir / "node.log").read_text().splitlines()[-5:],
    }
    print(f"{args.backend} K={args.hypotheses}: {row['forecasts']} forecasts, p50 {row['p50_ms']:.1f} ms, "
          f"p95 {row['p95_ms']:.1f} ms, max {row['max_ms']:.1f} ms ({row['forecast_rate_hz']:.1f} forecasts/s, "
          f"{frames} frames at {args.rate_hz:.0f} Hz); node p50 {row['node_p50_ms']}; "
          f"load average {row['load_average_1min_before_after']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
