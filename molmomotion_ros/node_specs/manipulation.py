"""manipulation_node: forecast + depth frame + joint states → planned arm motions (the forecast-driven planner)."""

from ..robot import ARM_JOINT_NAMES, FINGER_JOINT_NAMES, ROBOT_BASE_M
from .spec import AUTOSTART, NodeSpec, ParamSpec

# The harness's cell: the base stands on the table at config/robot.yaml's position in the world frame.
DEFAULT_ROBOT_BASE_POSE = [*map(float, ROBOT_BASE_M), 0.0, 0.0, 0.0, 1.0]

# How the arm nodes (manipulation_node, policy_node) command the arm and read its joints (nodes/arm_interface.py).
# The action names default to relative names beside today's topics (arm_controller/joint_trajectory,
# gripper/command), so that one namespace or remap convention covers both interfaces; a real cell (franka_ros2)
# sets /fr3_arm_controller/follow_joint_trajectory and /franka_gripper/gripper_action together with its fr3 joint
# names, in one parameter file.
ARM_PARAMETERS = (
    ParamSpec("arm_interface", "topic", "how the arm is commanded: topic = JointTrajectory on "
              "arm_controller/joint_trajectory and Float64 on gripper/command (the simulated graphs); action = "
              "control_msgs FollowJointTrajectory on arm_action and GripperCommand on gripper_action (ros2_control's "
              "joint_trajectory_controller, MoveIt, franka_gripper), each command waiting for its result",
              choices=("topic", "action"), read_only=True),
    ParamSpec("arm_action", "arm_controller/follow_joint_trajectory", "FollowJointTrajectory action of the arm's "
              "controller (arm_interface = action; franka_ros2: /fr3_arm_controller/follow_joint_trajectory)",
              read_only=True),
    ParamSpec("gripper_action", "gripper/gripper_action", "GripperCommand action of the gripper (arm_interface = "
              "action; franka_ros2: /franka_gripper/gripper_action; position = one finger's opening, as "
              "franka_gripper reads it)", read_only=True),
    ParamSpec("gripper_max_effort_n", 40.0, "N, GripperCommand max_effort: the grasp force when closing",
              range=(1.0, 70.0), read_only=True),
    ParamSpec("action_server_timeout_s", 10.0, "wall s configure waits for the action servers (arm_interface = "
              "action); configure fails naming the one missing", range=(0.0, 120.0), read_only=True),
    ParamSpec("arm_joint_names", list(ARM_JOINT_NAMES), "the arm's 7 joint names in the robot's order (planning "
              "and IK order), as joint_states and the controller name them (franka_ros2: fr3_joint1..7)",
              read_only=True),
    ParamSpec("finger_joint_names", list(FINGER_JOINT_NAMES), "the 2 finger joints (franka_ros2: "
              "fr3_finger_joint1, fr3_finger_joint2); a joint_states without them is accepted and the fingers come "
              "from gripper_joint_states, else the last gripper command's outcome", read_only=True),
    ParamSpec("gripper_joint_states", "", "a JointState topic with the finger joints when joint_states lacks them "
              "(franka_ros2: /franka_gripper/joint_states); empty = none", read_only=True),
)

MANIPULATION_NODE = NodeSpec(
    name="manipulation_node",
    executable="manipulation_node",
    module="molmomotion_ros.nodes.manipulation_node",
    params_file="manipulation_node.yaml",
    parameters=(
        ParamSpec("planner_backend", "", "motion planning backend: empty = planner_config's `backend`; ompl = "
                  "OMPL with the perceived point cloud (no MoveIt needed); moveit_py = MoveIt 2's MoveItPy (needs "
                  "ros-$ROS_DISTRO-moveit-py and moveit_config)", choices=("", "ompl", "moveit_py"), read_only=True),
        ParamSpec("planner_config", "", "planner YAML (empty = the package's config/planner.yaml)", read_only=True),
        ParamSpec("moveit_config", "", "MoveItPy's parameter YAML for the moveit_py backend (robot description, "
                  "planning pipelines); empty = planner_config's moveit_py.config", read_only=True),
        ParamSpec("free_velocity_scaling", 0.5, "fraction of the joint velocity limits for free motions",
                  range=(0.01, 1.0)),
        ParamSpec("contact_velocity_scaling", 0.2, "fraction of the joint velocity limits while approaching, "
                  "carrying, placing and pushing", range=(0.01, 1.0)),
        ParamSpec("acceleration_scaling", 0.0, "fraction of the joint acceleration and jerk limits for every motion "
                  "(0 = the motion's velocity scaling)", range=(0.0, 1.0)),
        ParamSpec("workspace_box_m", [], "m, [xmin, xmax, ymin, ymax, zmin, zmax] in the robot base frame that every "
                  "grasp-target goal must lie in (home included); a goal outside fails the forecast with the reason; "
                  "empty = planner_config's workspace", read_only=True),
        ParamSpec("execute", True, "send the planned motions to the arm; false = dry run: plan, publish "
                  "manipulation/preview and manipulation/markers, report \"planned\" and send nothing until "
                  "~/execute is called"),
        ParamSpec("plan_expiry_s", 60.0, "s (node clock): ~/execute refuses a dry-run plan older than this",
                  range=(1.0, 3600.0)),
        ParamSpec("max_joint_state_age_s", 0.5, "s (node clock): joint states received longer ago than this refuse "
                  "planning and each step (a silent driver)", range=(0.01, 60.0)),
        ParamSpec("goal_tolerance_rad", 0.02, "rad, joints this close to a trajectory's end count as arrived",
                  range=(0.001, 0.5)),
        ParamSpec("execution_timeout_factor", 3.0, "a trajectory not finished after this many times its "
                  "duration (+1 s) is aborted", range=(1.0, 20.0)),
        ParamSpec("gripper_settle_s", 0.5, "s (node clock) to wait after a gripper command", range=(0.0, 5.0)),
        ParamSpec("frame_buffer_s", 10.0, "s of depth frames kept to find the one a forecast was made from",
                  range=(0.5, 60.0)),
        ParamSpec("max_frame_offset_s", 0.5, "s; without a depth frame at the forecast's stamp, the nearest one "
                  "this close is used (the scene holds still while the node is idle)", range=(0.0, 5.0)),
        ParamSpec("world_frame", "world", "frame of the incoming forecasts and camera poses (REP-103); a real cell "
                  "without a world frame uses the robot base frame (fr3_link0)"),
        ParamSpec("extrinsics_source", "topic", "where the camera pose comes from: topic (geometry_msgs/PoseStamped "
                  "on camera/pose, in world_frame) or tf (world_frame ← camera_frame at the depth frame's stamp, from "
                  "/tf + /tf_static)", choices=("topic", "tf"), read_only=True),
        ParamSpec("camera_frame", "", "extrinsics_source = tf: the camera's optical frame (empty = the camera_info "
                  "header's frame_id)", read_only=True),
        ParamSpec("tf_timeout_s", 0.2, "extrinsics_source = tf: wall s to wait for the camera transform at a frame's "
                  "stamp; without it the forecast fails with the reason", range=(0.0, 10.0)),
        ParamSpec("robot_base_pose", DEFAULT_ROBOT_BASE_POSE, "pose of the robot base in world_frame, [x, y, z (m), "
                  "qx, qy, qz, qw]; the planner's model puts the base at config/robot.yaml's position, and "
                  "forecasts and camera poses are moved there (a real cell: world_frame fr3_link0 and "
                  "[0, 0, 0, 0, 0, 0, 1])",
                  read_only=True),
        *ARM_PARAMETERS,
        AUTOSTART,
    ),
    managed=True,
)
