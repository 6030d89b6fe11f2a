"""speech_node: 16 kHz mono PCM or WAV → recognised instruction (pocketsphinx + JSGF grammar)."""

from .spec import AUTOSTART, NodeSpec, ParamSpec

SPEECH_NODE = NodeSpec(
    name="speech_node",
    executable="speech_node",
    module="molmomotion_ros.nodes.speech_node",
    params_file="speech_node.yaml",
    parameters=(
        ParamSpec("sample_rate_hz", 16000, "sample rate of the int16 mono PCM chunks on audio (Hz); fixed",
                  choices=(16000,), read_only=True),
        ParamSpec("vad_energy_threshold_dbfs", -40.0,
                  "a 20 ms frame whose RMS level is above this is speech (dB re int16 full scale)", range=(-90.0, 0.0)),
        ParamSpec("min_silence_s", 0.5, "non-speech after speech that ends an utterance (s)", range=(0.1, 5.0)),
        ParamSpec("min_speech_s", 0.2, "shorter sounds are not utterances (s)", range=(0.0, 5.0)),
        ParamSpec("max_utterance_s", 10.0, "longer speech is cut and decoded (s)", range=(1.0, 60.0)),
        ParamSpec("pre_roll_s", 0.3, "audio kept before an utterance's onset (s)", range=(0.0, 2.0)),
        ParamSpec("min_confidence", 0.25, "smallest word posterior of a recognised instruction [0, 1]",
                  range=(0.0, 1.0)),
        ParamSpec("free_phrasing", False, "experimental: also hear instructions in the speaker's own words (a "
                  "second decode with the wide grammar of the instruction parser's words, read by the parser; about "
                  "twice the decode time; it sometimes overrules a right template sentence or reads other speech as "
                  "a command, see speech/README.md); false: only the template sentences", read_only=True),
        ParamSpec("wav_path", "", "a WAV file to recognise, at activation and whenever it is set while active "
                  "(empty = none)"),
        ParamSpec("vocabulary_file", "", "vocabulary YAML of the grammar (empty = the package's "
                  "config/vocabulary.yaml)", read_only=True),
        ParamSpec("diagnostics_period_s", 2.0, "period of the /diagnostics status (s)", range=(0.1, 60.0)),
        AUTOSTART,
    ),
    managed=True,
)
