"""Check, from outside and with nothing but rclpy, that the running real_arm graph uses a Franka cell's interfaces
by their driver names and types: what forecaster_node and manipulation_node subscribe to (the RealSense topics,
joint states, TF), which action servers manipulation_node is a client of, and what they publish and serve.

    python graph_interface_check.py [--timeout 60] [--robot fr3] [--camera /camera/camera] [--namespace /]

Prints a JSON report ({"ok": bool, "checks": {name: true | "why not"}}) and exits 0 when every check passes.
The counterpart of driver_interface_check.py (the cell's side); test_real_arm_cell.py runs both.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import rclpy
from rclpy.action import get_action_client_names_and_types_by_node


def expected(robot: str, camera: str) -> dict:
    image, info, tf = "sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo", "tf2_msgs/msg/TFMessage"
    camera_topics = {f"{camera}/color/image_raw": image, f"{camera}/aligned_depth_to_color/image_raw": image,
                     f"{camera}/color/camera_info": info}
    return {
        "forecaster_node": {
            "subscribes": {**camera_topics, "/instruction": "std_msgs/msg/String", "/tf": tf, "/tf_static": tf},
            "publishes": {"/forecast/hypotheses": "trajectory_msgs/msg/MultiDOFJointTrajectory",
                          "/forecast/trajectory": "trajectory_msgs/msg/MultiDOFJointTrajectory",
                          "/forecast/status": "std_msgs/msg/String",
                          "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray"},
        },
        "manipulation_node": {
            "subscribes": {f"{camera}/aligned_depth_to_color/image_raw": image, f"{camera}/color/camera_info": info,
                           "/joint_states": "sensor_msgs/msg/JointState",
                           "/franka_gripper/joint_states": "sensor_msgs/msg/JointState",
                           "/forecast/hypotheses": "trajectory_msgs/msg/MultiDOFJointTrajectory",
                           "/forecast/status": "std_msgs/msg/String", "/tf": tf, "/tf_static": tf},
            "publishes": {"/manipulation/status": "std_msgs/msg/String",
                          "/manipulation/preview": "trajectory_msgs/msg/JointTrajectory",
                          "/manipulation/markers": "visualization_msgs/msg/MarkerArray"},
            "action_clients": {f"/{robot}_arm_controller/follow_joint_trajectory":
                               "control_msgs/action/FollowJointTrajectory",
                               "/franka_gripper/gripper_action": "control_msgs/action/GripperCommand"},
            "services": {"/manipulation_node/stop": "std_srvs/srv/Trigger",
                         "/manipulation_node/execute": "std_srvs/srv/Trigger"},
        },
    }


def run(args) -> dict:
    rclpy.init()
    node = rclpy.create_node("graph_interface_check")
    want = expected(args.robot, args.camera)
    checks: dict[str, object] = {}

    def found(name: str) -> dict:
        kinds = {"subscribes": node.get_subscriber_names_and_types_by_node,
                 "publishes": node.get_publisher_names_and_types_by_node,
                 "services": node.get_service_names_and_types_by_node}
        have = {}
        for kind, query in kinds.items():
            try:
                have[kind] = dict(query(name, args.namespace))
            except Exception:  # noqa: BLE001  (the node is not discovered yet)
                have[kind] = {}
        try:
            have["action_clients"] = dict(get_action_client_names_and_types_by_node(node, name, args.namespace))
        except Exception:  # noqa: BLE001
            have["action_clients"] = {}
        return have

    def complete() -> bool:
        for name, kinds in want.items():
            have = found(name)
            if any(topic not in have[kind] for kind, topics in kinds.items() for topic in topics):
                return False
        return True

    deadline = time.monotonic() + args.timeout
    while not complete() and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    for name, kinds in want.items():
        have = found(name)
        for kind, entries in kinds.items():
            for entry, entry_type in entries.items():
                got = have[kind].get(entry)
                checks[f"{name} {kind} {entry}"] = True if got == [entry_type] else f"found {got}"
    world = [t for t, _ in node.get_topic_names_and_types() if "world" in t]
    checks["no world topic"] = True if not world else f"{world}"
    node.destroy_node()
    rclpy.try_shutdown()
    return {"ok": all(v is True for v in checks.values()), "checks": checks}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for discovery")
    parser.add_argument("--robot", default="fr3", help="franka_ros2 robot_type (joint and controller prefix)")
    parser.add_argument("--camera", default="/camera/camera", help="realsense2_camera's namespace/name")
    parser.add_argument("--namespace", default="/", help="the graph's namespace")
    report = run(parser.parse_args())
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
