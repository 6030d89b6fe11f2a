"""The other process of test_generated_interfaces.py: a stand-in for a real Franka cell's ROS side,
using only rclpy and the control_msgs/tf2_msgs that set-up builds (or that a ROS install provides).

    python interface_peer.py controllers   # FollowJointTrajectory + GripperCommand action servers
    python interface_peer.py tf            # /tf_static once (latched), then /tf at 50 Hz

Runs until SIGINT. Names follow franka_ros2 (FR3): /fr3_arm_controller/follow_joint_trajectory,
/franka_gripper/gripper_action, frames fr3_link0 -> fr3_hand_tcp and fr3_link0 -> camera_link.
"""

from __future__ import annotations

import json
import sys
import time

import rclpy
from control_msgs.action import FollowJointTrajectory, GripperCommand
from geometry_msgs.msg import TransformStamped
from rclpy.action import ActionServer
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from tf2_msgs.msg import TFMessage

ARM_ACTION = "/fr3_arm_controller/follow_joint_trajectory"
GRIPPER_ACTION = "/franka_gripper/gripper_action"
# tf2_ros's QoS: /tf keeps 100, /tf_static is latched (transient local, keep last 1).
TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
TF_STATIC_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)


def follow_joint_trajectory(node, goal_handle):
    """Like joint_trajectory_controller in outline: abort a goal without joints (INVALID_JOINTS),
    else "execute" it 10x faster than its time_from_start with one feedback per point, then
    SUCCESSFUL with the goal's content echoed as JSON in error_string, so the other side can check
    every field crossed the wire."""
    goal = goal_handle.request
    trajectory = goal.trajectory
    result = FollowJointTrajectory.Result()
    if not trajectory.joint_names:
        result.error_code = FollowJointTrajectory.Result.INVALID_JOINTS
        result.error_string = "no joint names in the goal"
        goal_handle.abort()
        return result
    # Feedback sent before this side has discovered the client's feedback subscription is lost
    # (a real controller streams it, so it does not matter there): wait for it, bounded.
    deadline = time.monotonic() + 10.0
    while node.count_subscribers(f"{ARM_ACTION}/_action/feedback") == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    start = time.monotonic()
    for point in trajectory.points:
        due = start + 0.1 * (point.time_from_start.sec + 1e-9 * point.time_from_start.nanosec)
        time.sleep(max(0.0, due - time.monotonic()))
        feedback = FollowJointTrajectory.Feedback()
        feedback.header.frame_id = trajectory.header.frame_id
        feedback.joint_names = list(trajectory.joint_names)
        feedback.desired = point
        feedback.actual = point
        feedback.error.positions = [0.0] * len(point.positions)
        goal_handle.publish_feedback(feedback)
    result.error_code = FollowJointTrajectory.Result.SUCCESSFUL
    result.error_string = json.dumps({
        "joint_names": list(trajectory.joint_names),
        "points": [[list(p.positions), p.time_from_start.sec, p.time_from_start.nanosec] for p in trajectory.points],
        "path_tolerance": [[t.name, t.position, t.velocity, t.acceleration] for t in goal.path_tolerance],
        "goal_tolerance": [[t.name, t.position, t.velocity, t.acceleration] for t in goal.goal_tolerance],
        "component_path_tolerance": [[t.joint_name, t.component, t.position]
                                     for t in goal.component_path_tolerance],
        "goal_time_tolerance": [goal.goal_time_tolerance.sec, goal.goal_time_tolerance.nanosec],
        "multi_dof_joint_names": list(goal.multi_dof_trajectory.joint_names),
    })
    goal_handle.succeed()
    return result


def gripper_command(goal_handle):
    command = goal_handle.request.command
    feedback = GripperCommand.Feedback(position=command.position, effort=0.0, stalled=False, reached_goal=False)
    goal_handle.publish_feedback(feedback)
    goal_handle.succeed()
    return GripperCommand.Result(position=command.position, effort=command.max_effort, stalled=False,
                                 reached_goal=True)


def transform(parent: str, child: str, x: float, stamp) -> TransformStamped:
    t = TransformStamped()
    t.header.stamp = stamp
    t.header.frame_id = parent
    t.child_frame_id = child
    t.transform.translation.x = x
    t.transform.rotation.w = 1.0
    return t


def main(mode: str) -> None:
    rclpy.init(args=sys.argv)
    node = rclpy.create_node(f"interface_peer_{mode}")
    keep = []
    if mode == "controllers":
        keep.append(ActionServer(node, FollowJointTrajectory, ARM_ACTION,
                                 lambda goal_handle: follow_joint_trajectory(node, goal_handle)))
        keep.append(ActionServer(node, GripperCommand, GRIPPER_ACTION, gripper_command))
    elif mode == "tf":
        static = node.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
        static.publish(TFMessage(transforms=[
            transform("fr3_link0", "camera_link", 0.5, node.get_clock().now().to_msg())]))
        dynamic = node.create_publisher(TFMessage, "/tf", TF_QOS)
        count = [0]

        def tick():
            count[0] += 1
            dynamic.publish(TFMessage(transforms=[
                transform("fr3_link0", "fr3_hand_tcp", 0.001 * count[0], node.get_clock().now().to_msg())]))

        keep.append(node.create_timer(0.02, tick))
        keep.append(static)
    else:
        raise SystemExit(f"unknown mode {mode!r} (controllers | tf)")
    print(f"interface_peer {mode}: ready", flush=True)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "")
