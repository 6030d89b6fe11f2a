"""Check, from outside and with nothing but rclpy and the message packages, that a ROS graph exposes a Franka
cell's interfaces as franka_ros2 (Jazzy) and realsense2_camera name them: the action servers, topics and their
types, what the messages hold (joint names, encodings, frames, a camera_info with distortion) and the TF tree.

    python driver_interface_check.py [--timeout 60] [--robot fr3] [--camera /camera/camera]

Prints a JSON report ({"ok": bool, "checks": {name: true | "why not"}}) and exits 0 when every check passes.
Point it at fake_franka (test_fake_franka.py does) or at a real cell: the same checks must pass there.
Imports only the standard library, rclpy and message packages (test_fake_franka.py checks that).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import rclpy
from control_msgs.action import FollowJointTrajectory, GripperCommand  # noqa: F401 (type support for the graph)
from rclpy.action import get_action_names_and_types
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, JointState
from tf2_msgs.msg import TFMessage

LATCHED = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def expected(robot: str, camera: str, arm: str, gripper: str) -> dict:
    arm_joints = [f"{robot}_joint{i}" for i in range(1, 8)]
    fingers = [f"{robot}_finger_joint1", f"{robot}_finger_joint2"]
    return {
        "actions": {f"/{arm}/follow_joint_trajectory": "control_msgs/action/FollowJointTrajectory",
                    f"/{gripper}/gripper_action": "control_msgs/action/GripperCommand"},
        "topics": {"/joint_states": "sensor_msgs/msg/JointState",
                   "/franka/joint_states": "sensor_msgs/msg/JointState",
                   f"/{gripper}/joint_states": "sensor_msgs/msg/JointState",
                   "/tf": "tf2_msgs/msg/TFMessage", "/tf_static": "tf2_msgs/msg/TFMessage",
                   f"{camera}/color/image_raw": "sensor_msgs/msg/Image",
                   f"{camera}/color/camera_info": "sensor_msgs/msg/CameraInfo",
                   f"{camera}/aligned_depth_to_color/image_raw": "sensor_msgs/msg/Image",
                   f"{camera}/aligned_depth_to_color/camera_info": "sensor_msgs/msg/CameraInfo"},
        "arm_joints": arm_joints, "fingers": fingers,
        # child -> parent along the chains a consumer looks up
        "arm_chain": [f"{robot}_hand_tcp", f"{robot}_hand", f"{robot}_link8"]
        + [f"{robot}_link{i}" for i in range(7, -1, -1)],
        "camera_chain": ["camera_color_optical_frame", "camera_color_frame", "camera_link", f"{robot}_link0"],
    }


class Probe:
    def __init__(self):
        self.node = rclpy.create_node("driver_interface_check")
        self.messages: dict[str, list] = {}
        self.frames: dict[str, set] = {}  # child -> parents seen

    def listen(self, topic: str, msg_type, qos) -> None:
        self.messages[topic] = []
        self.node.create_subscription(msg_type, topic, self.messages[topic].append, qos)

    def listen_tf(self) -> None:
        def record(msg: TFMessage) -> None:
            for t in msg.transforms:
                self.frames.setdefault(t.child_frame_id, set()).add(t.header.frame_id)

        self.node.create_subscription(TFMessage, "/tf", record, 100)
        self.node.create_subscription(TFMessage, "/tf_static", record, LATCHED)

    def spin_until(self, predicate, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            rclpy.spin_once(self.node, timeout_sec=0.05)
        return predicate()


def run(args) -> dict:
    want = expected(args.robot, args.camera, args.arm_controller, args.gripper_node)
    probe = Probe()
    checks: dict[str, object] = {}

    def check(name: str, ok: bool, why: str = "") -> None:
        checks[name] = True if ok else (why or "failed")

    # Action servers and topics by name and type (the graph, once discovery has caught up).
    def graph_ready() -> bool:
        actions = dict(get_action_names_and_types(probe.node))
        topics = dict(probe.node.get_topic_names_and_types())
        return all(a in actions for a in want["actions"]) and all(t in topics for t in want["topics"])

    probe.spin_until(graph_ready, args.timeout)
    actions = dict(get_action_names_and_types(probe.node))
    for name, action_type in want["actions"].items():
        check(f"action {name}", actions.get(name) == [action_type], f"found {actions.get(name)}")
    topics = dict(probe.node.get_topic_names_and_types())
    for name, topic_type in want["topics"].items():
        check(f"topic {name}", topics.get(name) == [topic_type], f"found {topics.get(name)}")
    world = [t for t in topics if t.endswith("world")]
    check("no world topic", not world, f"{world}")

    # What the messages hold. Images with the sensor-data QoS (best effort matches any publisher); the
    # publishers' own QoS is checked below.
    camera = args.camera
    for topic, msg_type, qos in (("/joint_states", JointState, 10), ("/franka/joint_states", JointState, 10),
                                 (f"/{args.gripper_node}/joint_states", JointState, 10),
                                 (f"{camera}/color/image_raw", Image, qos_profile_sensor_data),
                                 (f"{camera}/aligned_depth_to_color/image_raw", Image, qos_profile_sensor_data),
                                 (f"{camera}/color/camera_info", CameraInfo, 10),
                                 (f"{camera}/aligned_depth_to_color/camera_info", CameraInfo, 10)):
        probe.listen(topic, msg_type, qos)
    probe.listen_tf()
    arm_chain, camera_chain = want["arm_chain"], want["camera_chain"]

    def heard_all() -> bool:
        chains = all(c in probe.frames for c in arm_chain[:-1] + camera_chain[:-1])
        return chains and all(probe.messages[t] for t in probe.messages)

    probe.spin_until(heard_all, args.timeout)
    for topic, messages in probe.messages.items():
        check(f"messages on {topic}", bool(messages), "none received")

    def last(topic: str):
        return probe.messages[topic][-1] if probe.messages[topic] else None

    arm, fingers = want["arm_joints"], want["fingers"]
    merged = last("/joint_states")
    if merged is not None:
        check("/joint_states names", list(merged.name) == arm + fingers, f"{list(merged.name)}")
        check("/joint_states positions", len(merged.position) == len(merged.name), f"{len(merged.position)}")
    arm_state = last("/franka/joint_states")
    if arm_state is not None:
        check("/franka/joint_states names", sorted(arm_state.name) == sorted(arm), f"{list(arm_state.name)}")
        check("/franka/joint_states velocity and effort",
              len(arm_state.velocity) == len(arm_state.effort) == len(arm), "missing fields")
    finger_state = last(f"/{args.gripper_node}/joint_states")
    if finger_state is not None:
        check("gripper joint_states names", list(finger_state.name) == fingers, f"{list(finger_state.name)}")
    color, depth = last(f"{camera}/color/image_raw"), last(f"{camera}/aligned_depth_to_color/image_raw")
    info = last(f"{camera}/color/camera_info")
    optical = "camera_color_optical_frame"
    if color is not None:
        check("colour encoding rgb8", color.encoding == "rgb8", color.encoding)
        check("colour frame", color.header.frame_id == optical, color.header.frame_id)
        check("colour size", len(color.data) == color.step * color.height and color.step == 3 * color.width,
              f"{color.width}x{color.height} step {color.step}")
    if depth is not None:
        check("aligned depth encoding 16UC1", depth.encoding == "16UC1", depth.encoding)
        check("aligned depth frame", depth.header.frame_id == optical, depth.header.frame_id)
        if color is not None:
            check("aligned depth size = colour size", (depth.width, depth.height) == (color.width, color.height),
                  f"{depth.width}x{depth.height}")
        check("aligned depth in millimetres", depth.step == 2 * depth.width and any(depth.data), "empty or wrong step")
    if info is not None:
        check("camera_info plumb_bob", info.distortion_model == "plumb_bob", info.distortion_model)
        check("camera_info distortion non-zero", len(info.d) == 5 and any(d != 0.0 for d in info.d), f"{list(info.d)}")
        check("camera_info frame", info.header.frame_id == optical, info.header.frame_id)
        check("camera_info K", info.k[0] > 0 and info.k[4] > 0 and info.k[8] == 1.0, f"{list(info.k)}")
        if color is not None:
            check("camera_info size = image size", (info.width, info.height) == (color.width, color.height), "")
    aligned_info = last(f"{camera}/aligned_depth_to_color/camera_info")
    if aligned_info is not None and info is not None:
        check("aligned depth camera_info = colour camera_info",
              (list(aligned_info.k), list(aligned_info.d), aligned_info.header.frame_id)
              == (list(info.k), list(info.d), info.header.frame_id), "")

    # Publisher QoS as the drivers set it: images reliable (realsense's SYSTEM_DEFAULT on Fast DDS), so both
    # reliable and best-effort subscribers match; /tf_static latched.
    for topic in (f"{camera}/color/image_raw", f"{camera}/aligned_depth_to_color/image_raw"):
        infos = probe.node.get_publishers_info_by_topic(topic)
        check(f"{topic} publisher reliable",
              bool(infos) and all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos),
              f"{[i.qos_profile.reliability for i in infos]}")
    infos = probe.node.get_publishers_info_by_topic("/tf_static")
    check("/tf_static publishers latched",
          bool(infos) and all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in infos),
          f"{[i.qos_profile.durability for i in infos]}")

    # The TF tree: each chain links up, every frame has one parent, and there is no world frame.
    for name, chain in (("arm", arm_chain), ("camera", camera_chain)):
        broken = [(child, parent) for child, parent in zip(chain, chain[1:], strict=False)
                  if probe.frames.get(child) != {parent}]
        check(f"TF {name} chain {chain[-1]} -> {chain[0]}", not broken,
              f"child -> parents seen: {[(c, sorted(probe.frames.get(c, set()))) for c, _ in broken]}")
    several = {child: sorted(parents) for child, parents in probe.frames.items() if len(parents) > 1}
    check("TF one parent per frame", not several, f"{several}")
    all_frames = set(probe.frames) | {p for parents in probe.frames.values() for p in parents}
    check("TF no world frame", "world" not in all_frames, "")
    probe.node.destroy_node()
    return {"ok": all(v is True for v in checks.values()), "checks": checks, "frames": sorted(all_frames)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for discovery and messages")
    parser.add_argument("--robot", default="fr3")
    parser.add_argument("--arm-controller", default="fr3_arm_controller")
    parser.add_argument("--gripper-node", default="franka_gripper")
    parser.add_argument("--camera", default="/camera/camera", help="the realsense node: <namespace>/<name>")
    args, ros_args = parser.parse_known_args()
    rclpy.init(args=[sys.argv[0], *ros_args])
    try:
        report = run(args)
    finally:
        rclpy.try_shutdown()
    print(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
