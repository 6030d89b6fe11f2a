#!/usr/bin/env python3
"""A forecast subscriber written against nothing but rclpy and standard messages.

    python examples/forecast_listener.py [--count 1] [--timeout 60] [--json out.json]

Prints each forecast on ``forecast/trajectory`` (trajectory_msgs/MultiDOFJointTrajectory: joints
``point_i``, ``points[0]`` = the query points at t0, then one point per future step; world frame,
metres): its frame, stamp, the t0 centroid and where the points end up. Copy it into your own node.
"""

import argparse
import json
import sys
import time

import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from trajectory_msgs.msg import MultiDOFJointTrajectory


def centroid(point):
    xyz = [(t.translation.x, t.translation.y, t.translation.z) for t in point.transforms]
    return [sum(c) / len(xyz) for c in zip(*xyz, strict=True)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1, help="forecasts to receive before exiting")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait in all")
    parser.add_argument("--json", help="write the received forecasts' summaries here")
    args = parser.parse_args()
    rclpy.init()
    node = Node("forecast_listener")
    received = []

    def on_forecast(msg):
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        summary = {"frame_id": msg.header.frame_id, "stamp_s": stamp, "joints": list(msg.joint_names),
                   "steps": len(msg.points) - 1, "start_m": centroid(msg.points[0]),
                   "end_m": centroid(msg.points[-1]), "received_wall_s": time.time()}
        received.append(summary)
        print(f"forecast at t0 = {stamp:.3f} s in {summary['frame_id']!r}: {len(msg.joint_names)} points, "
              f"{summary['steps']} steps, centroid {[round(v, 3) for v in summary['start_m']]} → "
              f"{[round(v, 3) for v in summary['end_m']]} m", flush=True)

    # The forecaster publishes reliable + transient-local: a late subscriber still gets the last one.
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(MultiDOFJointTrajectory, "forecast/trajectory", on_forecast, qos)
    deadline = time.monotonic() + args.timeout
    while rclpy.ok() and len(received) < args.count and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(received, f)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0 if len(received) >= args.count else 1


if __name__ == "__main__":
    sys.exit(main())
