"""sim_node: the PyBullet world as a robot driver (camera, joint states, trajectory execution)."""

from ..graph import NodeSpec, ParamSpec, register

SIM_NODE = register(NodeSpec(
    name="sim_node",
    executable="sim_node",
    module="molmomotion_ros.nodes.sim_node",
    params_file="sim_node.yaml",
    parameters=(
        ParamSpec("camera_rate_hz", 30.0, "rate of the camera topics", range=(0.5, 60.0)),
    ),
))
