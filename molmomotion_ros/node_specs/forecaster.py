"""forecaster_node: RGB-D frames + instruction → forecast point trajectories in the world frame."""

from ..graph import NodeSpec, ParamSpec, register

FORECASTER_NODE = register(NodeSpec(
    name="forecaster_node",
    executable="forecaster_node",
    module="molmomotion_ros.nodes.forecaster_node",
    params_file="forecaster_node.yaml",
    parameters=(
        ParamSpec("backend", "fm", "forecaster backend", choices=("fm", "ar", "stationary", "constant-velocity",
                                                                   "molmomotion4b"), read_only=True),
        ParamSpec("device", "auto", "torch device for the model", choices=("auto", "cpu", "cuda"), read_only=True),
        ParamSpec("num_hypotheses", 8, "K, forecast samples per request (fm); ar and baselines give 1",
                  range=(1, 64)),
        ParamSpec("world_frame", "world", "frame of every published forecast (REP-103, metres)"),
    ),
))
