"""The publisher process of the recording tests: known counts and payloads on topics of several types and QoS.

    python record_talker.py --strings 40 --latched 3 --images 20 --tf 20 --later 5

``/latched`` (std_msgs/String, reliable + transient-local) is published at once, before any recorder listens.
``/chatter`` (String), ``/camera/color/image_raw`` (sensor_msgs/Image) and ``/tf`` (tf2_msgs/TFMessage), all reliable
and volatile, wait until a subscriber has matched, then publish and wait until it acknowledged every message.
``/sensor`` (String, best effort) publishes alongside. ``/later`` (String) gets its publisher only after all that,
for a recorder's periodic discovery to find. Prints ``published`` when done, then waits for SIGINT.

``--stream N --stream-hz H`` instead publishes N images (stamp i, payload image_bytes(i)) at H Hz once a subscriber
matched, printing ``sent <count>`` after each: a recording to kill mid-run.
"""

from __future__ import annotations

import argparse
import time

IMAGE_TOPIC = "/camera/color/image_raw"


def image_bytes(i: int, width: int, height: int) -> bytes:
    return bytes((7 * i + k) % 251 for k in range(3 * width * height))


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("strings", "latched", "images", "tf", "sensor", "later"):
        parser.add_argument(f"--{name}", type=int, default=0)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--height", type=int, default=6)
    parser.add_argument("--stream", type=int, default=0)
    parser.add_argument("--stream-hz", type=float, default=100.0)
    args = parser.parse_args()

    import rclpy
    from geometry_msgs.msg import TransformStamped
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import String
    from tf2_msgs.msg import TFMessage

    rclpy.init()
    node = rclpy.create_node("record_talker")

    def reliable(depth: int, latched: bool = False) -> QoSProfile:
        return QoSProfile(depth=max(depth, 1), reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)

    latched = node.create_publisher(String, "/latched", reliable(args.latched, latched=True))
    for i in range(args.latched):
        latched.publish(String(data=f"latched {i}"))
    publishers = {
        "/chatter": (node.create_publisher(String, "/chatter", reliable(args.strings)),
                     [String(data=f"chatter {i}") for i in range(args.strings)]),
        IMAGE_TOPIC: (node.create_publisher(Image, IMAGE_TOPIC, reliable(max(args.images, args.stream))), []),
        "/tf": (node.create_publisher(TFMessage, "/tf", reliable(args.tf)), []),
    }
    for i in range(args.images):
        msg = Image(height=args.height, width=args.width, encoding="rgb8", step=3 * args.width,
                    data=image_bytes(i, args.width, args.height))
        msg.header.stamp.sec, msg.header.frame_id = i, "camera"
        publishers[IMAGE_TOPIC][1].append(msg)
    for i in range(args.tf):
        transform = TransformStamped(child_frame_id="tool")
        transform.header.frame_id = "world"
        transform.transform.translation.x = float(i)
        transform.transform.rotation.w = 1.0
        publishers["/tf"][1].append(TFMessage(transforms=[transform]))
    sensor = node.create_publisher(String, "/sensor", QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT))

    def wait_for_subscriber(publisher, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while publisher.get_subscription_count() < 1:
            if time.monotonic() > deadline:
                raise SystemExit(f"no subscriber on {publisher.topic_name} after {timeout_s:.0f} s")
            rclpy.spin_once(node, timeout_sec=0.05)

    if args.stream:
        stream = publishers[IMAGE_TOPIC][0]
        wait_for_subscriber(stream)
        try:
            for i in range(args.stream):
                msg = Image(height=args.height, width=args.width, encoding="rgb8", step=3 * args.width,
                            data=image_bytes(i, args.width, args.height))
                msg.header.stamp.sec, msg.header.frame_id = i, "camera"
                stream.publish(msg)
                print(f"sent {i + 1}", flush=True)
                time.sleep(1.0 / args.stream_hz)
        except KeyboardInterrupt:  # stopped mid-stream: the test has what it needs
            node.destroy_node()
            rclpy.try_shutdown()
            return

    active = [(p, msgs) for p, msgs in publishers.values() if msgs]
    for publisher, _ in active:
        wait_for_subscriber(publisher)
    if args.sensor:
        wait_for_subscriber(sensor)
    for publisher, msgs in active:
        for msg in msgs:
            publisher.publish(msg)
    for i in range(args.sensor):
        sensor.publish(String(data=f"sensor {i}"))
    for publisher, _ in active:
        if not publisher.wait_for_all_acked(rclpy.duration.Duration(seconds=10)):
            raise SystemExit(f"{publisher.topic_name}: not every message was acknowledged")
    if args.later:
        later = node.create_publisher(String, "/later", reliable(args.later))
        wait_for_subscriber(later)
        for i in range(args.later):
            later.publish(String(data=f"later {i}"))
        later.wait_for_all_acked(rclpy.duration.Duration(seconds=10))
    print("published", flush=True)
    try:
        while rclpy.ok():
            rclpy.spin_once(node, timeout_sec=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
