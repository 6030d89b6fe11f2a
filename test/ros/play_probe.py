"""The receiving process of the playback tests: what a player's messages look like to another node.

    python play_probe.py OUT.json --chatter 30 --images 6 --latched 2 --late-after 10 --timeout 40

Subscribes, raw (the bytes as published), to /chatter and /camera/image (reliable), /sensor twice (best effort, and
reliable: a reliable request must not match a best-effort offer), and /clock as a node's time source does (keep last
1, best effort); prints ``ready``. After ``--late-after`` chatter messages it subscribes to /latched, transient local:
a late subscriber, which receives the latched messages only if the player offers them transient local. Exits when
every expected message arrived, on SIGINT, or after ``--timeout``, writing each topic's payloads (hex) and monotonic
receive times, the clock values, and when the late subscription was made, to OUT.json.
"""

from __future__ import annotations

import argparse
import json
import signal
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    for name in ("chatter", "images", "latched", "late-after"):
        parser.add_argument(f"--{name}", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=40.0)
    args = parser.parse_args()

    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    rclpy.init()
    node = rclpy.create_node("play_probe")
    received: dict[str, list] = {"chatter": [], "image": [], "latched": [], "sensor": [], "sensor_reliable": []}
    clocks: list[int] = []
    late = {}

    def keep(key: str):
        return lambda data: received[key].append((data.hex(), time.monotonic()))

    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    best_effort = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)
    node.create_subscription(String, "/chatter", keep("chatter"), reliable, raw=True)
    node.create_subscription(Image, "/camera/image", keep("image"), reliable, raw=True)
    node.create_subscription(String, "/sensor", keep("sensor"), best_effort, raw=True)
    node.create_subscription(String, "/sensor", keep("sensor_reliable"), reliable, raw=True)

    def on_clock(data: bytes) -> None:
        stamp = deserialize_message(data, Clock).clock
        clocks.append(stamp.sec * 1_000_000_000 + stamp.nanosec)

    node.create_subscription(Clock, "/clock", on_clock, QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT),
                             raw=True)
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    print("ready", flush=True)
    deadline = time.monotonic() + args.timeout
    while not stop and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
        if args.latched and not late and len(received["chatter"]) >= args.late_after:
            late.update(after=len(received["chatter"]), at=time.monotonic())
            node.create_subscription(String, "/latched", keep("latched"), QoSProfile(
                depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL),
                raw=True)
        if (len(received["chatter"]) >= args.chatter and len(received["image"]) >= args.images
                and len(received["latched"]) >= args.latched):
            break
    with open(args.out, "w") as f:
        json.dump({"received": received, "clock": clocks, "late": late}, f)
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
