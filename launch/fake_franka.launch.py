"""A simulated Franka cell: fake_franka exposes what franka_ros2 (fr3) and realsense2_camera expose on a real
cell, with their default names, so a graph written for the cell runs against the simulator.

    ros2 launch molmomotion_ros fake_franka.launch.py
    (pip route: molmomotion launch fake_franka)

Episodes: set fake_franka's suite/family/seed parameters, then call /fake_franka/reset (config/fake_franka.yaml).
"""

from molmomotion_ros.launch_support import launch_description


def generate_launch_description():
    return launch_description("fake_franka")
