"""speech_node across processes with real rclpy (no mocks): espeak-ng commands streamed as
Int16MultiArray chunks, WAV paths by topic and parameter, bad input → WARN diagnostics.

One node serves the module in its own isolated domain; the tests wait on matching and messages,
never on fixed sleeps, and run in file order: the last one stops the node with SIGINT.
"""

from __future__ import annotations

import array
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosutil import (
    ROOT,
    change_state,
    configure_problem,
    lifecycle_state,
    ros_domain,
    set_parameters,
    start_node,
    stop,
    wait_until,
)
from std_msgs.msg import Float32, Int16MultiArray, MultiArrayDimension, String

from molmomotion_ros.speech import read_wav
from molmomotion_ros.speech.synth import synthesize

PARAMS = ROOT / "config" / "speech_node.yaml"
RATE_HZ = 16000
CHUNK_SAMPLES = 1600  # 100 ms
COMMANDS = ("move the red cube on the cyan tray", "stack the blue cube on the yellow block",
            "slide the purple lego backward")
OTHER_SPEECH = "please open the door now"
START_TIMEOUT_S = 20.0
ANSWER_TIMEOUT_S = 40.0  # free phrasing decodes twice; a loaded CI machine took 10 s
STREAM_QOS = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE)


def audio_msg(pcm: np.ndarray, label: str = "samples") -> Int16MultiArray:
    msg = Int16MultiArray()
    msg.layout.dim = [MultiArrayDimension(label=label, size=pcm.size, stride=pcm.size)]
    msg.data = array.array("h", pcm.astype(np.int16).tobytes())
    return msg


class Probe:
    """The test's side of the graph: publishes audio and WAV paths, records what the node says."""

    def __init__(self, context):
        self.node = rclpy.create_node("speech_node_probe", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.messages: dict[str, list] = defaultdict(list)
        for topic, msg_type in (("instruction", String), ("speech/confidence", Float32),
                                ("/diagnostics", DiagnosticArray)):
            self.node.create_subscription(msg_type, topic, lambda m, t=topic: self.messages[t].append(m), 50)
        self.audio_pub = self.node.create_publisher(Int16MultiArray, "audio", STREAM_QOS)
        self.wav_pub = self.node.create_publisher(String, "speech/wav_path", 10)

    def spin(self) -> None:
        self.executor.spin_once(timeout_sec=0.02)

    def wait(self, predicate, what: str, timeout_s: float = ANSWER_TIMEOUT_S) -> None:
        wait_until(predicate, timeout_s, spin=self.spin, what=what)

    def stream(self, pcm: np.ndarray, silence_s: float = 1.0) -> None:
        """``pcm`` with silence around it, in 100 ms chunks, as fast as DDS takes them."""
        gap = np.zeros(int(silence_s * RATE_HZ), np.int16)
        stream = np.concatenate([gap, pcm, gap])
        for i in range(0, stream.size, CHUNK_SAMPLES):
            self.audio_pub.publish(audio_msg(stream[i:i + CHUNK_SAMPLES]))
            self.spin()

    def instructions(self) -> list[str]:
        return [m.data for m in self.messages["instruction"]]

    def warned(self, contains: str) -> bool:
        return any(s.level == DiagnosticStatus.WARN and s.name == "speech_node: speech" and contains in s.message
                   for a in self.messages["/diagnostics"] for s in a.status)

    def set_parameters(self, **values) -> list:
        client = self.node.create_client(SetParameters, "/speech_node/set_parameters")
        try:
            self.wait(client.service_is_ready, "set_parameters service")
            request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg()
                                                        for k, v in values.items()])
            future = client.call_async(request)
            self.wait(future.done, "set_parameters answer")
            return future.result().results
        finally:
            self.node.destroy_client(client)


@dataclass
class Speech:
    process: object
    probe: Probe
    log_path: Path
    wavs: dict[str, Path]

    def log(self) -> str:
        return self.log_path.read_text()


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    folder = tmp_path_factory.mktemp("speech_node")
    wavs = {text: synthesize(text, folder / f"{i}.wav") for i, text in enumerate((*COMMANDS, OTHER_SPEECH))}
    log_path = folder / "speech_node.log"
    with ros_domain():
        process = start_node("molmomotion_ros.nodes.speech_node", "--params-file", str(PARAMS),
                             env=dict(os.environ), log_path=log_path)
        context = rclpy.Context()
        rclpy.init(context=context)
        probe = Probe(context)
        try:
            probe.wait(lambda: probe.audio_pub.get_subscription_count() >= 1 and probe.messages["/diagnostics"],
                       "speech_node on audio and /diagnostics", START_TIMEOUT_S)
            yield Speech(process, probe, log_path, wavs)
        finally:
            probe.node.destroy_node()
            rclpy.try_shutdown(context=context)
            stop(process)


def test_streamed_command_becomes_the_exact_instruction(speech):
    probe = speech.probe
    probe.stream(read_wav(speech.wavs[COMMANDS[0]]))
    probe.wait(lambda: COMMANDS[0] in probe.instructions(), "the instruction", ANSWER_TIMEOUT_S)
    assert probe.instructions() == [COMMANDS[0]], speech.log()
    probe.wait(lambda: probe.messages["speech/confidence"], "a confidence")
    assert 0.25 <= probe.messages["speech/confidence"][-1].data <= 1.0


def test_bad_chunks_warn_and_the_next_command_is_still_recognised(speech):
    probe = speech.probe
    bad = audio_msg(np.zeros(CHUNK_SAMPLES, np.int16), label="channels")
    probe.audio_pub.publish(bad)
    probe.wait(lambda: probe.warned("dimension label must be 'samples'"), "a WARN for the bad label")
    lying = audio_msg(np.zeros(CHUNK_SAMPLES, np.int16))
    lying.layout.dim[0].size = 10
    probe.audio_pub.publish(lying)
    probe.wait(lambda: probe.warned("layout says 10 samples"), "a WARN for the wrong size")
    assert speech.process.poll() is None
    assert "dimension label must be 'samples'" in speech.log()  # logged as a warning too

    probe.stream(read_wav(speech.wavs[COMMANDS[1]]))
    probe.wait(lambda: COMMANDS[1] in probe.instructions(), "the next instruction")


def test_other_speech_is_not_recognised_and_publishes_nothing(speech):
    probe = speech.probe
    before = len(probe.instructions())
    probe.stream(read_wav(speech.wavs[OTHER_SPEECH]))
    probe.wait(lambda: probe.warned("not recognised"), "a WARN for other speech")
    probe.wait(lambda: probe.messages["speech/confidence"][-1].data == 0.0, "confidence 0")
    assert len(probe.instructions()) == before


def test_wav_files_by_topic_and_parameter(speech, tmp_path):
    probe = speech.probe
    probe.wait(lambda: probe.wav_pub.get_subscription_count() >= 1, "speech_node on speech/wav_path")
    probe.wav_pub.publish(String(data=str(speech.wavs[COMMANDS[2]])))
    probe.wait(lambda: probe.instructions()[-1:] == [COMMANDS[2]], "the WAV's instruction (topic)")

    missing = tmp_path / "missing.wav"
    probe.wav_pub.publish(String(data=str(missing)))
    probe.wait(lambda: probe.warned(f"{missing}: no such file"), "a WARN for a missing WAV")

    assert all(r.successful for r in probe.set_parameters(wav_path=str(speech.wavs[COMMANDS[0]])))
    probe.wait(lambda: probe.instructions()[-1:] == [COMMANDS[0]], "the WAV's instruction (parameter)")
    refused = probe.set_parameters(sample_rate_hz=44100)
    assert not refused[0].successful
    assert speech.process.poll() is None


def test_sigint_exits_cleanly(speech):
    assert stop(speech.process) == 0
    assert "Traceback" not in speech.log(), speech.log()


def test_a_bad_vocabulary_leaves_the_node_unconfigured_until_fixed(tmp_path):
    """The recogniser's grammar is built at configure: a bad vocabulary file is a configure failure with the
    reason; with the parameter fixed the node configures, activates and recognises."""
    log_path = tmp_path / "bad.log"
    bad = tmp_path / "missing_vocabulary.yaml"
    with ros_domain():
        process = start_node("molmomotion_ros.nodes.speech_node", "--params-file", str(PARAMS),
                             "-p", f"vocabulary_file:={bad}", env=dict(os.environ), log_path=log_path)
        context = rclpy.Context()
        rclpy.init(context=context)
        probe = Probe(context)
        try:
            probe.wait(lambda: configure_problem(probe.messages["/diagnostics"], "speech_node")
                       or process.poll() is not None, "the configure failure", START_TIMEOUT_S)
            assert process.poll() is None, log_path.read_text()
            assert "vocabulary_file" in configure_problem(probe.messages["/diagnostics"], "speech_node")
            node, spin = probe.node, probe.spin
            assert lifecycle_state(node, "speech_node", spin) == "unconfigured"
            assert set_parameters(node, "speech_node", spin, vocabulary_file="")[0].successful
            assert change_state(node, "speech_node", "configure", spin) and change_state(node, "speech_node",
                                                                                          "activate", spin)
            probe.wait(lambda: probe.audio_pub.get_subscription_count() >= 1, "speech_node on audio")
            assert stop(process) == 0
        finally:
            probe.node.destroy_node()
            rclpy.try_shutdown(context=context)
            stop(process)
    assert "vocabulary_file" in log_path.read_text() and "Traceback" not in log_path.read_text()
