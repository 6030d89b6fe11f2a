"""episode_runner: drives a simulator (sim_node, fake_franka) episode by episode through the ROS graph and writes
the results."""

from .spec import NodeSpec, ParamSpec

EPISODE_RUNNER = NodeSpec(
    name="episode_runner",
    executable="episode_runner",
    module="molmomotion_ros.nodes.episode_runner",
    params_file="episode_runner.yaml",
    parameters=(
        ParamSpec("suite", "main", "evaluation suite (name under config/suites or a path)", read_only=True),
        ParamSpec("episodes_per_family", 10, "episodes per family (0 = the suite's own counts)", range=(0, 100_000),
                  read_only=True),
        ParamSpec("families", "", "comma-separated families of the suite to run (empty = all)", read_only=True),
        ParamSpec("out", "results/graph-eval.json", "results JSON (the harness's format)", read_only=True),
        ParamSpec("episode_timeout_s", 180.0, "wall-clock seconds an episode may take before it counts as failed",
                  range=(5.0, 3600.0)),
        ParamSpec("simulator", "sim_node", "the simulator node whose ~/reset, ~/success and suite/family/seed "
                  "parameters drive the episodes: sim_node, or fake_franka (the simulated Franka cell)",
                  read_only=True),
        ParamSpec("publish_instruction", False, "publish each episode's instruction (from the reset's answer) on "
                  "instruction; false: the simulator publishes it (sim_node); true for fake_franka, which like a "
                  "real cell publishes none", read_only=True),
        ParamSpec("settle_s", 1.0, "seconds to wait after a motion before judging success: of /clock when the "
                  "simulator publishes one, else of the wall clock", range=(0.0, 10.0)),
        ParamSpec("progress", True, "show a progress bar"),
        ParamSpec("managed_nodes", "forecaster_node,manipulation_node", "comma-separated managed nodes that must "
                  "report 'active' (lifecycle GetState) before the first episode (each graph sets its own)",
                  read_only=True),
        ParamSpec("startup_timeout_s", 180.0, "wall-clock seconds to wait for the simulator's services and the "
                  "managed nodes' 'active' state (they load their models while configuring)", range=(1.0, 3600.0),
                  read_only=True),
    ),
)
