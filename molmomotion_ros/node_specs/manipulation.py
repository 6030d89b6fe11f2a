"""manipulation_node: forecast + goal pose + joint states → planned arm JointTrajectory."""

from ..graph import NodeSpec, ParamSpec, register

MANIPULATION_NODE = register(NodeSpec(
    name="manipulation_node",
    executable="manipulation_node",
    module="molmomotion_ros.nodes.manipulation_node",
    params_file="manipulation_node.yaml",
    parameters=(
        ParamSpec("planner_backend", "ompl", "motion planning backend", choices=("ompl", "moveit_py"),
                  read_only=True),
    ),
))
