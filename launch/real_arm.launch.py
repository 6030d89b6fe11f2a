"""Forecast-driven manipulation on a Franka FR3 cell: forecaster_node + manipulation_node (+ speech_node).

    ros2 launch franka_bringup franka.launch.py robot_type:=fr3 robot_ip:=<ip> load_gripper:=true
    ros2 launch realsense2_camera rs_launch.py align_depth.enable:=true
    ros2 run tf2_ros static_transform_publisher --frame-id fr3_link0 --child-frame-id camera_link <hand-eye>
    ros2 launch molmomotion_ros real_arm.launch.py                 # dry run: plans and previews, never moves
    ros2 launch molmomotion_ros real_arm.launch.py execute:=true   # moves the arm
    (pip route: molmomotion launch real_arm execute:=true; against the simulated cell: molmomotion cell-eval)

Every argument (`ros2 launch molmomotion_ros real_arm.launch.py -s`, `molmomotion launch real_arm --show-args`)
is declared in molmomotion_ros/graph.py; the defaults are franka_ros2's and realsense2_camera's names.
"""

from molmomotion_ros.launch_support import launch_description


def generate_launch_description():
    return launch_description("real_arm")
