"""Forecast-driven manipulation on a real Panda: forecaster_node + manipulation_node (moveit_py).

    ros2 launch molmomotion_ros real_arm.launch.py camera:=/camera controller:=/panda_arm_controller/joint_trajectory
    (pip route, for inspection without MoveIt: molmomotion launch real_arm)

Needs MoveIt 2 with moveit_py and a running move_group configuration for the Panda; the arm's
trajectories go to the controller topic, the gripper command to gripper:=... (std_msgs/Float64).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration

from molmomotion_ros.launch_support import camera_remappings, launch_description


def generate_launch_description():
    manipulation = [("arm_controller/joint_trajectory", LaunchConfiguration("controller")),
                    ("gripper/command", LaunchConfiguration("gripper")), *camera_remappings()]
    graph = launch_description("real_arm", {"forecaster_node": camera_remappings(),
                                            "manipulation_node": manipulation})
    return LaunchDescription([
        DeclareLaunchArgument("camera", default_value="camera", description="namespace of the RGB-D camera"),
        DeclareLaunchArgument("controller", default_value="/panda_arm_controller/joint_trajectory",
                              description="JointTrajectory topic of the arm's controller"),
        DeclareLaunchArgument("gripper", default_value="/gripper/command",
                              description="gripper opening topic (std_msgs/Float64, metres per finger)"),
        *graph.entities,
    ])
