"""fake_franka: the PyBullet world behind the interfaces a real Franka cell exposes (franka_ros2 + realsense2_camera).

Names, types, QoS and semantics follow the drivers' defaults (see the node's module docstring); the
parameters below are the drivers' own settings where they have one (rates, tolerances, the hand's speed
and epsilons) and the cell's calibration (hand-eye transform, lens distortion).
"""

from .spec import NodeSpec, ParamSpec

# A RealSense D4xx colour sensor's size of plumb_bob coefficients (k1, k2, p1, p2, k3); every unit reports its own.
REALSENSE_LIKE_DISTORTION = [-0.0553, 0.0632, -0.0004, 0.0007, -0.0201]

# camera_link in fr3_link0 for the simulator's camera (config/camera.yaml with color_offset_m's default), as a
# hand-eye calibration would report it; a test recomputes it from config/camera.yaml.
SIM_CAMERA_HAND_EYE = [0.85, 0.015, 0.674, -0.519204, 0.0, 0.854651, 0.0]

FAKE_FRANKA = NodeSpec(
    name="fake_franka",
    executable="fake_franka",
    module="molmomotion_ros.nodes.fake_franka_node",
    params_file="fake_franka.yaml",
    parameters=(
        ParamSpec("suite", "main", "evaluation suite whose TaskOptions the next ~/reset uses"),
        ParamSpec("family", "place-in-container", "task family of the next ~/reset (a family of the suite)"),
        ParamSpec("seed", 110_000, "episode seed of the next ~/reset; must lie in the suite's split",
                  range=(0, 129_999)),
        ParamSpec("reset_on_start", True, "reset to (suite, family, seed) at start, so the camera shows a scene"),
        ParamSpec("clock", "system", "stamps and timing: system = wall-clock stamps at real time, no /clock, as "
                  "a real cell; sim = simulated-time stamps and /clock at real_time_factor (set use_sim_time on the "
                  "other nodes)", choices=("system", "sim"), read_only=True),
        ParamSpec("real_time_factor", 1.0, "simulated seconds per wall-clock second with clock=sim (0 = as fast as "
                  "possible); clock=system always runs at 1", range=(0.0, 50.0)),
        ParamSpec("robot", "fr3", "franka_ros2 robot_type: the prefix of joint and link names (fr3_joint1, "
                  "fr3_link0, fr3_hand_tcp)", read_only=True),
        ParamSpec("arm_controller", "fr3_arm_controller", "name of the joint_trajectory_controller: its action is "
                  "<name>/follow_joint_trajectory, its topic <name>/joint_trajectory", read_only=True),
        ParamSpec("gripper_node", "franka_gripper", "name of the franka_gripper node: <name>/gripper_action, "
                  "<name>/joint_states, <name>/stop", read_only=True),
        ParamSpec("camera_namespace", "camera", "realsense2_camera's camera_namespace", read_only=True),
        ParamSpec("camera_name", "camera", "realsense2_camera's camera_name (topics <namespace>/<name>/..., frames "
                  "<name>_link, <name>_color_optical_frame)", read_only=True),
        ParamSpec("hand_eye", list(SIM_CAMERA_HAND_EYE), "the calibration's static transform <robot>_link0 -> "
                  "<camera_name>_link as [x, y, z, qx, qy, qz, qw] (m); the simulated camera is placed there. "
                  "Default: where config/camera.yaml puts the simulator's camera", read_only=True),
        ParamSpec("color_offset_m", [0.0, 0.015, 0.0], "<camera_name>_link -> <camera_name>_color_frame translation "
                  "(the colour sensor beside the depth module, as a D4xx reports it)", read_only=True),
        ParamSpec("distortion", list(REALSENSE_LIKE_DISTORTION), "plumb_bob D = [k1, k2, p1, p2, k3] of the "
                  "colour camera; the raw images are rendered with it", read_only=True),
        ParamSpec("camera_rate_hz", 30.0, "colour, aligned depth and camera_info rate (rendered only while "
                  "subscribed)", range=(0.5, 60.0)),
        ParamSpec("arm_joint_state_rate_hz", 100.0, "franka/joint_states (joint_state_broadcaster; 1 kHz on a "
                  "real FR3)", range=(1.0, 240.0)),
        ParamSpec("joint_state_rate_hz", 30.0, "joint_states, arm and fingers (joint_state_publisher; "
                  "franka.launch.py's joint_state_rate)", range=(1.0, 240.0)),
        ParamSpec("gripper_state_rate_hz", 15.0, "<gripper_node>/joint_states (franka_gripper state_publish_rate)",
                  range=(1.0, 240.0)),
        ParamSpec("tf_rate_hz", 20.0, "/tf of the moving joints (robot_state_publisher publish_frequency)",
                  range=(1.0, 240.0)),
        ParamSpec("action_monitor_rate_hz", 20.0, "FollowJointTrajectory feedback rate (joint_trajectory_controller "
                  "action_monitor_rate)", range=(1.0, 240.0), read_only=True),
        ParamSpec("gripper_feedback_rate_hz", 30.0, "GripperCommand feedback rate (franka_gripper "
                  "feedback_publish_rate)", range=(1.0, 240.0), read_only=True),
        ParamSpec("goal_time_s", 0.0, "constraints.goal_time: extra time after the last point to get within the goal "
                  "tolerance (0 = wait indefinitely)", range=(0.0, 60.0)),
        ParamSpec("stopped_velocity_tolerance", 0.01, "constraints.stopped_velocity_tolerance (rad/s) at the goal",
                  range=(0.0, 10.0)),
        ParamSpec("trajectory_tolerance_rad", 0.0, "constraints.<joint>.trajectory for every joint: path tolerance "
                  "(0 = not checked)", range=(0.0, 10.0)),
        ParamSpec("goal_tolerance_rad", 0.0, "constraints.<joint>.goal for every joint (0 = not checked)",
                  range=(0.0, 10.0)),
        ParamSpec("start_tolerance_rad", 0.05, "the fake's guard: a goal whose first point is farther than this plus "
                  "what the joint can travel in the point's time_from_start is rejected (a real FR3 would stop "
                  "with a reflex error)", range=(0.0, 10.0)),
        ParamSpec("gripper_speed_m_s", 0.1, "franka_gripper default_speed (width per second)", range=(0.001, 0.2)),
        ParamSpec("grasp_epsilon_inner_m", 0.005, "franka_gripper default_grasp_epsilon.inner", range=(0.0, 0.08)),
        ParamSpec("grasp_epsilon_outer_m", 0.005, "franka_gripper default_grasp_epsilon.outer", range=(0.0, 0.08)),
        ParamSpec("grasp_force_n", 40.0, "force of a grasp whose GripperCommand max_effort is 0", range=(1.0, 70.0)),
        # Fault injection (not on a real cell; each takes effect at once and ends when set back).
        ParamSpec("fault_push_rad", 0.0, "an external push: fault_push_after_s into every arm goal, joint 1 is "
                  "driven this far off the commanded path until the goal ends, so a path tolerance (the goal's "
                  "path_tolerance or trajectory_tolerance_rad; franka_ros2 sets none) aborts it with "
                  "PATH_TOLERANCE_VIOLATED (0 = none)", range=(-1.0, 1.0)),
        ParamSpec("fault_push_after_s", 0.3, "s into an arm goal (controller clock) when fault_push_rad starts",
                  range=(0.0, 60.0)),
        ParamSpec("fault_stop_joint_states", False, "stop publishing joint_states, franka/joint_states and the "
                  "gripper's joint_states (a hung driver: stale joint states)"),
        ParamSpec("fault_stop_tf", False, "stop publishing /tf (robot_state_publisher gone: the moving links' "
                  "transforms go stale)"),
        ParamSpec("fault_hand_eye_missing", False, "withdraw the hand-eye static transform <robot>_link0 -> "
                  "<camera_name>_link (its latched publisher is destroyed: nodes that join later never get it; "
                  "false publishes it again)"),
        ParamSpec("fault_distortion_model", "", "publish camera_info with this distortion model instead of plumb_bob "
                  "(D padded or cut to its length; the images stay plumb_bob); empty = none",
                  choices=("", "equidistant", "rational_polynomial")),
    ),
)
