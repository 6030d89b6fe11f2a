"""sim_node: the PyBullet world as a robot driver (camera, joint states, trajectory execution).

Rates are in *simulated* time, so a slower-than-real-time run still gives downstream nodes the
frame spacing a real camera would. ``suite``/``family``/``seed`` are read when ``~/reset`` is
called; family and seed are checked there (not here) so a bad pair is answered with a reason.
``publish_ground_truth`` is read at each reset too (``molmomotion launch ... --record`` turns it on).
"""

from .spec import NodeSpec, ParamSpec

SIM_NODE = NodeSpec(
    name="sim_node",
    executable="sim_node",
    module="molmomotion_ros.nodes.sim_node",
    params_file="sim_node.yaml",
    parameters=(
        ParamSpec("suite", "main", "evaluation suite (name under config/suites or a path) whose TaskOptions "
                  "the next ~/reset uses"),
        ParamSpec("family", "place-in-container", "task family of the next ~/reset (a family of the suite)"),
        ParamSpec("seed", 110_000, "episode seed of the next ~/reset; must lie in the suite's split",
                  range=(0, 129_999)),
        ParamSpec("reset_on_start", True, "reset to (suite, family, seed) at start, so the camera shows a scene"),
        ParamSpec("real_time_factor", 1.0, "simulated seconds per wall-clock second; 0 = as fast as possible",
                  range=(0.0, 50.0)),
        ParamSpec("camera_rate_hz", 30.0, "rate of the camera topics, in simulated time", range=(0.5, 60.0)),
        ParamSpec("joint_state_rate_hz", 100.0, "rate of joint_states, in simulated time", range=(1.0, 240.0)),
        ParamSpec("clock_rate_hz", 100.0, "rate of /clock, in simulated time", range=(1.0, 240.0)),
        ParamSpec("depth_encoding", "32FC1", "camera/depth/image_raw encoding: 32FC1 metres (NaN = no return) "
                  "or 16UC1 millimetres (0 = no return)", choices=("32FC1", "16UC1")),
        ParamSpec("world_frame", "world", "frame of camera/pose (REP-103: the robot base on the table plane)"),
        ParamSpec("diagnostics_period_s", 1.0, "wall-clock period of /diagnostics", range=(0.1, 60.0)),
        ParamSpec("publish_ground_truth", False, "at every reset, run the task's oracle in a world of its own "
                  "(~0.5 s) and publish the target's 15 fps pose trace on sim/ground_truth (latched, stamped with "
                  "the reset's sim time) right after sim/episode: what makes a recording scorable offline; a "
                  "failure is a warning and a diagnostic, the episode runs on"),
    ),
)
