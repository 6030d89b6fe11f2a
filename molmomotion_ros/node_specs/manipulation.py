"""manipulation_node: forecast + depth frame + joint states → planned arm motions (the forecast-driven planner)."""

from .spec import AUTOSTART, NodeSpec, ParamSpec

MANIPULATION_NODE = NodeSpec(
    name="manipulation_node",
    executable="manipulation_node",
    module="molmomotion_ros.nodes.manipulation_node",
    params_file="manipulation_node.yaml",
    parameters=(
        ParamSpec("planner_backend", "ompl", "motion planning backend: OMPL with the perceived point cloud, or "
                  "MoveIt 2's moveit_py on a real arm", choices=("ompl", "moveit_py"), read_only=True),
        ParamSpec("planner_config", "", "planner YAML (empty = the package's config/planner.yaml)", read_only=True),
        ParamSpec("free_velocity_scaling", 0.5, "fraction of the joint velocity limits for free motions",
                  range=(0.01, 1.0)),
        ParamSpec("contact_velocity_scaling", 0.2, "fraction of the joint velocity limits while approaching, "
                  "carrying, placing and pushing", range=(0.01, 1.0)),
        ParamSpec("execute", True, "publish the planned motions to the controller (false: plan and report only)"),
        ParamSpec("goal_tolerance_rad", 0.02, "rad, joints this close to a trajectory's end count as arrived",
                  range=(0.001, 0.5)),
        ParamSpec("execution_timeout_factor", 3.0, "a trajectory not finished after this many times its "
                  "duration (+1 s) is aborted", range=(1.0, 20.0)),
        ParamSpec("gripper_settle_s", 0.5, "s (node clock) to wait after a gripper command", range=(0.0, 5.0)),
        ParamSpec("frame_buffer_s", 10.0, "s of depth frames kept to find the one a forecast was made from",
                  range=(0.5, 60.0)),
        ParamSpec("max_frame_offset_s", 0.5, "s; without a depth frame at the forecast's stamp, the nearest one "
                  "this close is used (the scene holds still while the node is idle)", range=(0.0, 5.0)),
        ParamSpec("world_frame", "world", "frame the forecast, camera pose and planning use (REP-103)"),
        AUTOSTART,
    ),
    managed=True,
)
