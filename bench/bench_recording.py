"""What recording costs: forecast latency with and without `molmomotion record`, messages lost, MB per minute.

The same three processes as bench_ros_forecast_latency.py (this one streams a rendered harness frame at 30 Hz with
camera_info, camera/pose and the instruction; forecaster_node in continuous mode; an independent probe that times
every forecast from its image stamp to its arrival), run for ``--seconds`` per condition in the order off, on, on,
off: without a recorder, and with ``molmomotion record`` on the package's default topics. Side by side: the
forecast latency p50/p95 (pooled per condition), and for the recorded runs each topic's message count in the bag
against what its publisher sent (the frame topics: this process counts what it published, once the forecaster and
the recorder have matched; forecast/trajectory: the probe's count of distinct forecasts, over a reliable
subscription) and the bag's size per minute. Usage::

    .venv/bin/python bench/bench_recording.py                  # 60 s per condition
    .venv/bin/python bench/bench_recording.py --seconds 20     # a quick look

Writes bench/results/recording.json (bars: 0 messages lost; p95 with recording within 10% of without).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_ros_forecast_latency", ROOT / "bench" /
                                               "bench_ros_forecast_latency.py")
latency = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(latency)

def probe(out_path: Path, seconds: float) -> None:
    """Time every distinct forecast for ``seconds`` after the first one, then write them to ``out_path``."""
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from trajectory_msgs.msg import MultiDOFJointTrajectory

    rclpy.init()
    node = rclpy.create_node("recording_bench_probe")
    latencies_ms: list[float] = []
    stamps: set[int] = set()

    def on_forecast(msg: MultiDOFJointTrajectory) -> None:
        arrival_ns = time.time_ns()
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        if stamp_ns not in stamps:
            stamps.add(stamp_ns)
            latencies_ms.append((arrival_ns - stamp_ns) / 1e6)

    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
    node.create_subscription(MultiDOFJointTrajectory, "forecast/trajectory", on_forecast, qos)
    deadline = None
    ready, stop_file = out_path.with_suffix(".ready"), out_path.with_suffix(".stop")
    while not stop_file.exists() and (deadline is None or time.monotonic() < deadline + 30):
        rclpy.spin_once(node, timeout_sec=0.1)
        if deadline is None and latencies_ms:
            deadline = time.monotonic() + seconds
        if deadline is not None and time.monotonic() >= deadline and not ready.exists():
            ready.touch()  # the streamer stops; forecasts still in flight are taken until the stop file
    out_path.write_text(json.dumps({"latencies_ms": latencies_ms, "stamps_ns": sorted(stamps)}))
    node.destroy_node()
    rclpy.try_shutdown()


def stream(done, obs, instruction: str, rate_hz: float, timeout_s: float, subscribers: int) -> dict[str, int]:
    """bench_ros_forecast_latency's frame streamer, but it starts only once every frame topic has ``subscribers``
    matched subscriptions (the forecaster's and the recorder's): what is published before a subscriber matches
    is lost to it by design (sensor-data QoS), not by the recorder. Returns the messages sent per topic."""
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import String

    from molmomotion_ros import conversions

    rclpy.init()
    node = rclpy.create_node("frame_streamer")
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pubs = {"/camera/color/image_raw": node.create_publisher(Image, "camera/color/image_raw", qos_profile_sensor_data),
            "/camera/depth/image_raw": node.create_publisher(Image, "camera/depth/image_raw", qos_profile_sensor_data),
            "/camera/color/camera_info": node.create_publisher(CameraInfo, "camera/color/camera_info",
                                                               qos_profile_sensor_data),
            "/camera/pose": node.create_publisher(PoseStamped, "camera/pose", latched)}
    matched_by = time.monotonic() + 60
    while min(p.get_subscription_count() for p in pubs.values()) < subscribers and time.monotonic() < matched_by:
        time.sleep(0.1)
    time.sleep(0.5)  # matched on both sides (discovery completes per participant)
    node.create_publisher(String, "instruction", latched).publish(String(data=instruction))
    sent = dict.fromkeys(pubs, 0)
    sent["/instruction"] = 1
    frame_id, period_s = obs.camera.frame_id, 1.0 / rate_hz
    variants = latency.noisy_variants(obs)
    deadline = time.monotonic() + timeout_s
    next_s = time.monotonic()
    i = 0
    while not done() and time.monotonic() < deadline:
        stamp = node.get_clock().now().to_msg()
        pubs["/camera/pose"].publish(conversions.pose_stamped(obs.camera.T_world_cam, stamp, "world"))
        pubs["/camera/color/camera_info"].publish(conversions.camera_info_msg(obs.camera, stamp, frame_id))
        rgb, depth_m = variants[i % len(variants)]
        pubs["/camera/depth/image_raw"].publish(conversions.depth_to_msg(depth_m, stamp, frame_id, encoding="16UC1"))
        pubs["/camera/color/image_raw"].publish(conversions.rgb_to_msg(rgb, stamp, frame_id))
        i += 1
        for topic in pubs:
            sent[topic] += 1
        next_s += period_s
        time.sleep(max(0.0, next_s - time.monotonic()))
    time.sleep(1.0)  # the last messages leave before the publishers go
    node.destroy_node()
    rclpy.try_shutdown()
    return sent


def run_condition(record: bool, args, obs, instruction: str, workdir: Path) -> dict:
    workdir.mkdir(parents=True)
    env = dict(os.environ)
    tag = "on" if record else "off"
    logs = {name: open(workdir / f"{tag}-{name}.log", "w") for name in ("node", "recorder")}  # noqa: SIM115
    recorder = None
    bag = workdir / f"bag-{tag}"
    if record:
        nice = ["nice", "-n", str(args.record_nice)] if args.record_nice else []
        recorder = subprocess.Popen([*nice, sys.executable, "-m", "molmomotion_ros.cli", "record", str(bag),
                                     *args.record_args.split()], env=env,
                                    stdout=logs["recorder"], stderr=subprocess.STDOUT, start_new_session=True)
        time.sleep(3.0)  # its subscriptions exist before anything is published
    node = subprocess.Popen([sys.executable, "-m", latency.NODE_MODULE, "--ros-args", "--params-file",
                             str(ROOT / "config" / "forecaster_node.yaml"), "-p", "backend:=fm",
                             "-p", "mode:=continuous", "-p", f"max_rate_hz:={args.rate_hz}",
                             "-p", "num_hypotheses:=8", "-p", "torch_threads:=1", "-p", "extrinsics_source:=topic",
                             "-p", "device:=cpu"],
                            env=env, stdout=logs["node"], stderr=subprocess.STDOUT, start_new_session=True)
    probe_out = workdir / f"probe-{tag}.json"
    prober = subprocess.Popen([sys.executable, __file__, "--probe", str(probe_out), "--seconds", str(args.seconds)],
                              env=env, start_new_session=True)
    start = time.monotonic()
    try:
        # Frames until the probe has timed --seconds of forecasts (the model's load comes first).
        sent = stream(lambda: prober.poll() is not None or node.poll() is not None or
                      probe_out.with_suffix(".ready").exists(), obs, instruction, args.rate_hz, args.seconds + 120,
                      subscribers=2 if record else 1)
        time.sleep(2.0)  # the last forecast and messages in flight reach the probe and the recorder
        probe_out.with_suffix(".stop").touch()
        prober.wait(30)
    finally:
        latency.stop(prober)
        latency.stop(node)
        if recorder is not None:
            latency.stop(recorder)
        for log in logs.values():
            log.close()
    result = json.loads(probe_out.read_text())
    lat = np.asarray(result["latencies_ms"][args.warmup:])
    row = {"recording": record, "wall_s": time.monotonic() - start, "latencies_ms": lat,
           "frames_published": sent["/camera/color/image_raw"],
           "forecasts": int(len(lat)), "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
           "mean_ms": float(lat.mean())}
    if record:
        import yaml

        meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        counts = {t["topic_metadata"]["name"]: t["message_count"] for t in meta["topics_with_message_count"]}
        published = dict(sent)
        published["/forecast/trajectory"] = len(result["stamps_ns"])
        size = sum((bag / p).stat().st_size for p in meta["relative_file_paths"])
        duration_s = meta["duration"]["nanoseconds"] / 1e9
        row.update({"bag_counts": counts, "published": published,
                    "lost": {t: published[t] - counts.get(t, 0) for t in published},
                    "bag_bytes": size, "bag_duration_s": duration_s,
                    "mb_per_min": size / 1e6 / max(duration_s, 1e-9) * 60})
        shutil.rmtree(bag, ignore_errors=True)
    return row


def sim_eval_run(args, workdir: Path) -> dict:
    """A sim_eval graph run (camera 30 Hz) recorded into one bag: each topic's count in the bag against what
    sim_node says it published (its log line at exit), the forecasts against the episodes, MB per minute."""
    import re

    import yaml

    out = workdir / "sim_eval"
    bag, logs = out / "bag", out / "logs"
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "molmomotion_ros.cli", "launch", "sim_eval", "--episodes",
                          str(args.sim_episodes), "--out", str(out / "results.json"), "--log-dir", str(logs),
                          "--no-progress", "--record", str(bag), "--record-one-bag"],
                         capture_output=True, text=True, timeout=3600)
    wall_s = time.monotonic() - start
    if run.returncode != 0:
        sys.exit(f"sim_eval failed ({run.returncode}):\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    match = re.search(r"published messages: (\{.*\})", (logs / "sim_node.log").read_text())
    published = {("/" + k.lstrip("/")): v for k, v in json.loads(match.group(1)).items()}
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in meta["topics_with_message_count"]}
    episodes = json.loads((out / "results.json").read_text())["episodes"]
    size = sum((bag / p).stat().st_size for p in meta["relative_file_paths"])
    duration_s = meta["duration"]["nanoseconds"] / 1e9
    row = {"episodes": len(episodes), "successes": sum(e["success"] for e in episodes), "wall_s": wall_s,
           "bag_duration_s": duration_s, "published_by_sim_node": published,
           "in_bag": {t: counts.get(t, 0) for t in published},
           "lost": {t: published[t] - counts.get(t, 0) for t in published},
           "forecasts_in_bag": counts.get("/forecast/trajectory", 0), "bag_bytes": size,
           "mb_per_min": size / 1e6 / max(duration_s, 1e-9) * 60,
           "topics_in_bag": len(counts), "messages_in_bag": sum(counts.values())}
    shutil.rmtree(out, ignore_errors=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="timed seconds per condition")
    parser.add_argument("--rate-hz", type=float, default=30.0, help="camera frame rate")
    parser.add_argument("--warmup", type=int, default=5, help="forecasts dropped first")
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs: 2 = off, on, on, off (default)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "recording.json"), help="JSON output")
    parser.add_argument("--sim-episodes", type=int, default=4,
                        help="also record a sim_eval graph run of this many episodes per family (camera 30 Hz) and "
                        "check its bag against sim_node's own counts (0: skip; default %(default)s)")
    parser.add_argument("--record-args", default="", metavar="ARGS",
                        help="extra arguments for `molmomotion record` in the recorded runs, e.g. '--compression none'")
    parser.add_argument("--record-nice", type=int, default=0, metavar="N",
                        help="run the recorder at this niceness (`nice -n N`): lower CPU priority than the forecaster")
    parser.add_argument("--probe", metavar="OUT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe(Path(args.probe), args.seconds)
        return
    load_before = os.getloadavg()[0]
    os.environ.update(latency.isolated_env())
    obs, instruction = latency.render_scene()
    workdir = Path(tempfile.mkdtemp(prefix="bench_recording_"))
    # off, on, on, off: a drift in the machine's load over the run weighs on both conditions alike
    order = (False, True, True, False)[: max(2, 2 * args.rounds)] if args.rounds <= 2 else (False, True) * args.rounds
    rows = [run_condition(record, args, obs, instruction, workdir / f"{i}") for i, record in enumerate(order)]
    pooled = {}
    for record in (False, True):
        lat = np.concatenate([r["latencies_ms"] for r in rows if r["recording"] == record])
        pooled[record] = {"forecasts": int(len(lat)), "p50_ms": float(np.percentile(lat, 50)),
                          "p95_ms": float(np.percentile(lat, 95))}
    recorded = [r for r in rows if r["recording"]]
    lost = sum(max(0, v) for r in recorded for v in r["lost"].values())
    sim_eval = sim_eval_run(args, workdir) if args.sim_episodes else None
    document = {"benchmark": "recording", "record_args": args.record_args, "record_nice": args.record_nice,
                "sim_eval": sim_eval,
                "seconds": args.seconds,
                "rate_hz": args.rate_hz, "order": list(order),
                "without_recording": pooled[False], "with_recording": pooled[True],
                "p95_ratio": pooled[True]["p95_ms"] / pooled[False]["p95_ms"], "bar_p95_ratio": 1.10,
                "messages_lost": lost, "mb_per_min": float(np.mean([r["mb_per_min"] for r in recorded])),
                "conditions": [{k: v for k, v in r.items() if k != "latencies_ms"} for r in rows],
                "cpu_count": os.cpu_count(), "machine": platform.platform(),
                "load_average_1min_before_after": [load_before, os.getloadavg()[0]]}
    for row in rows:
        print(f"recording {'on ' if row['recording'] else 'off'}: {row['forecasts']} forecasts, p50 "
              f"{row['p50_ms']:.1f} ms, p95 {row['p95_ms']:.1f} ms, {row['frames_published']} frames at "
              f"{args.rate_hz:.0f} Hz" + (f"; lost {row['lost']}" if row["recording"] else ""))
    print(f"pooled p95 without {pooled[False]['p95_ms']:.1f} ms, with {pooled[True]['p95_ms']:.1f} ms: ratio "
          f"{document['p95_ratio']:.3f} (bar <= 1.10); {lost} messages lost; bag {document['mb_per_min']:.0f} "
          f"MB/min; load average {document['load_average_1min_before_after']}")
    if sim_eval is not None:
        print(f"sim_eval, {sim_eval['episodes']} episodes over {sim_eval['bag_duration_s']:.0f} s: bag vs sim_node's "
              f"counts {sim_eval['in_bag']} vs {sim_eval['published_by_sim_node']} (lost {sim_eval['lost']}); "
              f"{sim_eval['forecasts_in_bag']} forecasts; {sim_eval['mb_per_min']:.0f} MB/min")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1))


if __name__ == "__main__":
    main()
