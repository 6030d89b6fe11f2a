"""forecaster_node: RGB-D frames + instruction → forecast point trajectories in the world frame.

Topics (relative names, remappable) and their encodings are documented in
``molmomotion_ros/nodes/forecaster_node.py`` and ``molmomotion_ros/conversions/forecasts.py``.
"""

from .spec import AUTOSTART, NodeSpec, ParamSpec

# T_world_camera default: config/camera.yaml's pose (eye [0.85, 0, 1.3] looking at [0.5, 0, 0.626]) as
# [x, y, z, qx, qy, qz, qw] of the optical frame in the world frame (test/ros/test_forecaster_node.py checks it).
DEFAULT_T_WORLD_CAMERA = [0.85, 0.0, 1.3, 0.686927, 0.686927, -0.167723, -0.167723]
MODES = ("on_instruction", "continuous")
EXTRINSICS_SOURCES = ("parameter", "topic", "tf", "tf2")  # tf2: the older name of tf

FORECASTER_NODE = NodeSpec(
    name="forecaster_node",
    executable="forecaster_node",
    module="molmomotion_ros.nodes.forecaster_node",
    params_file="forecaster_node.yaml",
    parameters=(
        ParamSpec("backend", "fm", "forecaster backend", choices=("fm", "ar", "stationary", "constant-velocity",
                                                                   "molmomotion4b"), read_only=True),
        ParamSpec("device", "auto", "torch device for the model", choices=("auto", "cpu", "cuda"), read_only=True),
        ParamSpec("checkpoint", "", "fm/ar checkpoint path (empty = the shipped one), or molmomotion4b's weights "
                  "folder", read_only=True),
        ParamSpec("torch_threads", 0, "torch CPU threads for inference; 0 = torch's default", range=(0, 64),
                  read_only=True),
        ParamSpec("num_hypotheses", 8, "K, forecast samples per request (fm); ar and baselines give 1",
                  range=(1, 64)),
        ParamSpec("horizon", 32, "F, forecast steps (stride 2 on the 15 fps clock: 32 steps = 4.3 s); the shipped "
                                 "models forecast at most 32", range=(1, 32)),
        ParamSpec("num_points", 8, "P, query points chosen on the target (MolmoMotion uses 8)", range=(1, 64)),
        ParamSpec("grounding", "encoder", "query-point method when no query_points are given",
                  choices=("encoder", "open3d")),
        ParamSpec("fm_steps", 6, "Euler integration steps of the FM sampler (6: same accuracy as 10 on the test "
                                 "set at 60% of the cost)", range=(1, 50), read_only=True),
        ParamSpec("grounding_encoder", "forecaster", "whose grounding heat-maps pick the query points: forecaster "
                                                     "(fm/ar's own head, one encoder pass for grounding and "
                                                     "forecast) or base (the base checkpoint, a second pass)",
                  choices=("forecaster", "base"), read_only=True),
        ParamSpec("seed", 0, "seed of the FM sampler (mixed with each frame's stamp) and of query-point sampling "
                  "(same frame → same forecast)",
                  range=(0, 2**31 - 1), read_only=True),
        ParamSpec("instruction_parser", True, "read each instruction with molmomotion_ros.language: refuse it with "
                                              "the reason (no known object, two at once, an action no task does, "
                                              "...) or give the forecaster its template phrasing"),
        ParamSpec("require_known_object", True, "instruction_parser false: refuse instructions naming none of "
                                                "config/vocabulary.yaml's objects or containers (the shipped models "
                                                "know no others); the parser refuses those itself"),
        ParamSpec("mode", "on_instruction", "on_instruction: forecast once on the first synchronised frame after "
                                            "each new instruction; continuous: every frame, capped at max_rate_hz",
                  choices=MODES),
        ParamSpec("max_rate_hz", 30.0, "continuous mode: most forecasts started per second", range=(0.1, 100.0)),
        ParamSpec("sync_tolerance_s", 0.01, "largest stamp difference between colour, depth and camera_info of "
                                            "one frame (s)", range=(0.0, 1.0)),
        ParamSpec("max_frame_age_s", 1.0, "frames (and camera poses) whose stamp is further than this from the "
                                          "node's clock are refused as stale (s); 0 = no check",
                  range=(0.0, 3600.0)),
        ParamSpec("max_instruction_chars", 500, "longer instructions are refused", range=(1, 500)),
        ParamSpec("instruction_timeout_s", 10.0, "on_instruction mode: wall s an accepted instruction waits for a "
                                                 "usable frame (TF, camera_info, fresh stamps, ...); then the node "
                                                 "gives up on it and reports 'failed' on forecast/status with the "
                                                 "last frame problem; 0 = wait forever", range=(0.0, 3600.0)),
        ParamSpec("world_frame", "world", "frame of every published forecast (REP-103, metres)"),
        ParamSpec("extrinsics_source", "parameter", "where T_world_camera comes from: parameter (T_world_camera), "
                                                    "topic (geometry_msgs/PoseStamped on camera/pose) or tf "
                                                    "(world_frame ← camera_frame at the colour image's stamp, from "
                                                    "/tf + /tf_static; tf2 is a synonym)",
                  choices=EXTRINSICS_SOURCES, read_only=True),
        ParamSpec("camera_frame", "", "extrinsics_source = tf: the camera's optical frame (empty = the camera_info "
                                      "header's frame_id)", read_only=True),
        ParamSpec("tf_timeout_s", 0.2, "extrinsics_source = tf: wall s to wait for the transform at a frame's stamp; "
                                       "without it the frame is dropped with the reason", range=(0.0, 10.0)),
        ParamSpec("T_world_camera", DEFAULT_T_WORLD_CAMERA, "camera optical frame pose in world_frame, "
                                                           "[x, y, z, qx, qy, qz, qw] (m), when "
                                                           "extrinsics_source = parameter"),
        AUTOSTART,
    ),
    managed=True,
)
