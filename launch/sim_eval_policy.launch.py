"""Simulated evaluation of a learned closed-loop policy through the ROS graph: sim_node,
forecaster_node (one forecast per instruction, read by a forecast-conditioned policy), policy_node
(shipped checkpoint A unless ``policy_checkpoint`` says otherwise) and the episode runner (the harness's
results JSON; it ends the launch).

    ros2 launch molmomotion_ros sim_eval_policy.launch.py
    (pip route: molmomotion launch sim_eval_policy --episodes 10)

Episode selection and the output file are episode_runner parameters (config/episode_runner.yaml).
"""

from molmomotion_ros.launch_support import launch_description


def generate_launch_description():
    return launch_description("sim_eval_policy")
