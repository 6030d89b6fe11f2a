"""speech_node: 16 kHz mono PCM or WAV → recognised instruction (pocketsphinx + JSGF grammar)."""

from ..graph import NodeSpec, ParamSpec, register

SPEECH_NODE = register(NodeSpec(
    name="speech_node",
    executable="speech_node",
    module="molmomotion_ros.nodes.speech_node",
    params_file="speech_node.yaml",
    parameters=(
        ParamSpec("sample_rate_hz", 16000, "sample rate of the PCM chunks on audio", choices=(16000,),
                  read_only=True),
    ),
))
