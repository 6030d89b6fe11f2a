"""policy_node: instruction + camera frames + joint states → a learned closed-loop policy's arm motions."""

from .manipulation import ARM_PARAMETERS
from .spec import AUTOSTART, NodeSpec, ParamSpec

POLICY_NODE = NodeSpec(
    name="policy_node",
    executable="policy_node",
    module="molmomotion_ros.nodes.policy_node",
    params_file="policy_node.yaml",
    parameters=(
        ParamSpec("policy_checkpoint", "A", "a shipped policy (A: encoder from the motion forecaster, B: from the "
                  "base grounding model, C: A + the forecast as input, which needs forecast/hypotheses) or a "
                  "checkpoint path", read_only=True),
        ParamSpec("policy_setpoint_rise_s", 1.0 / 240.0, "s over which each 15 fps set-point is approached (one "
                  "physics step: the simulated demonstrations' step changes; on a real arm raise it, up to 1/15 s "
                  "= linear interpolation)", range=(0.001, 0.066)),
        ParamSpec("frame_timeout_s", 5.0, "wall s to wait for a camera frame newer than the last chunk (or, "
                  "forecast-conditioned, for the forecast) before the episode fails", range=(0.1, 120.0)),
        ParamSpec("frame_buffer_s", 10.0, "s of colour and depth frames kept; also how long before an instruction "
                  "published before this node became active its forecast may have been made (a forecaster active "
                  "sooner may answer a latched instruction before this node hears it)", range=(0.5, 60.0)),
        ParamSpec("instruction_parser", True, "read each instruction with molmomotion_ros.language: refuse it with "
                  "the reason on manipulation/status, or give the policy its template phrasing"),
        ParamSpec("max_frame_offset_s", 0.5, "s; a forecast-conditioned policy takes a forecast made at most this "
                  "long before the instruction reached the node", range=(0.0, 5.0)),
        *ARM_PARAMETERS,
        AUTOSTART,
    ),
    managed=True,
)
