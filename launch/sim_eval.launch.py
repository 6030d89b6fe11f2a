"""Simulated evaluation through the ROS graph: sim_node, speech_node, forecaster_node,
manipulation_node and the episode runner (which writes the harness's results JSON and ends the launch).

    ros2 launch molmomotion_ros sim_eval.launch.py
    (pip route: molmomotion launch sim_eval --episodes 10)

Episode selection and the output file are episode_runner parameters (config/episode_runner.yaml).
"""

from molmomotion_ros.launch_support import launch_description


def generate_launch_description():
    return launch_description("sim_eval")
