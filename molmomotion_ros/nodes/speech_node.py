"""speech_node: spoken commands → ``instruction`` (std_msgs/String), offline, with the task grammar.

Audio encoding on ``audio`` (std_msgs/Int16MultiArray): **16 kHz, mono, signed 16-bit PCM**, one
chunk per message, any length (20–100 ms is typical), samples in ``data``, ``data_offset`` 0, and
``layout.dim`` either empty or one dimension labelled ``"samples"`` whose ``size`` equals
``len(data)``. The rate is fixed (``sample_rate_hz`` accepts 16000 only). A chunk that breaks this
is dropped with a logged warning and a WARN on ``/diagnostics``; the stream goes on.

Interfaces:
- sub ``audio``: streamed PCM, cut into utterances by an energy VAD (see ``speech/segmenter.py``);
- sub ``speech/wav_path`` (std_msgs/String) and parameter ``wav_path``: a WAV file to recognise
  (any integer-PCM rate/channels; converted). There is no standard service type with a string
  request, hence a topic and a parameter;
- pub ``instruction`` (std_msgs/String): only recognised instructions: a complete grammar sentence, or with
  ``free_phrasing`` the canonical phrasing of what the speaker said in their own words (the instruction
  parser's reading of the wide grammar's words; see ``speech/recognizer.py``);
- pub ``speech/confidence`` (std_msgs/Float32): for every decoded utterance/file, the smallest word
  posterior in [0, 1] (0 when nothing was recognised);
- pub ``/diagnostics``: WARN with the reason for unrecognised speech or bad input, else OK.

Threads: the subscription callback only validates a chunk and runs the (cheap) segmenter; decoding
runs on one worker thread fed through a queue, so chunks keep arriving while a command is decoded.

A managed node (:mod:`.lifecycle`): configure checks the parameters, builds the recogniser (pocketsphinx and
the grammar of ``vocabulary_file``; a bad one leaves the node unconfigured with the reason) and the
publishers; activate subscribes, starts the decoder thread and the periodic status (and recognises
``wav_path`` if set); deactivate stops them (an utterance being decoded finishes, unpublished); cleanup
releases the recogniser.
"""

from __future__ import annotations

import ctypes
import dataclasses
import queue
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Float32, Int16MultiArray, String

from ..node_specs.speech import SPEECH_NODE
from ..speech import (
    GrammarError,
    RecognitionResult,
    Recognizer,
    RecognizerConfig,
    SegmenterConfig,
    SpeechInputError,
    UtteranceSegmenter,
)
from .lifecycle import ManagedNode
from .params import ParameterValueError
from .runtime import run_node

SAMPLES_LABEL = "samples"
QUEUE_DEPTH = 8  # utterances/files waiting for the decoder; more means the decoder cannot keep up
SEGMENTER_PARAMS = ("vad_energy_threshold_dbfs", "min_silence_s", "min_speech_s", "max_utterance_s", "pre_roll_s")

INSTRUCTION_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)


def pcm_from_msg(msg: Int16MultiArray) -> np.ndarray:
    """Int16MultiArray chunk → (N,) int16; SpeechInputError when it breaks the topic's encoding."""
    dims = list(msg.layout.dim)
    if msg.layout.data_offset != 0:
        raise SpeechInputError(f"audio chunk: data_offset must be 0, got {msg.layout.data_offset}")
    if len(dims) > 1:
        raise SpeechInputError(f"audio chunk: expected mono (one dimension), got {len(dims)} dimensions "
                               f"({', '.join(d.label for d in dims)})")
    if dims and dims[0].label != SAMPLES_LABEL:
        raise SpeechInputError(f"audio chunk: dimension label must be {SAMPLES_LABEL!r}, got {dims[0].label!r}")
    if dims and dims[0].size != len(msg.data):
        raise SpeechInputError(f"audio chunk: layout says {dims[0].size} samples, data holds {len(msg.data)}")
    return np.asarray(msg.data, dtype=np.int16)


@dataclass(frozen=True)
class _Job:
    source: str  # "audio" or the WAV path
    pcm: np.ndarray | None = None  # for audio utterances


# pocketsphinx 5.1.1 now and then crashes (SIGSEGV) freeing a decoder as the process ends (1 run in 4 of
# test_runtime's configure-then-Ctrl-C), which turns a clean Ctrl-C into a core dump. So a decoder is built
# once per grammar and lives as long as the process (a dict with one reference nobody drops, which
# interpreter shutdown cannot free); cleanup + configure with an unchanged vocabulary file skips the rebuild.
_RECOGNIZERS: dict[tuple, Recognizer] = {}
ctypes.pythonapi.Py_IncRef(ctypes.py_object(_RECOGNIZERS))


def _process_recognizer(config: RecognizerConfig) -> Recognizer:
    """A recogniser with ``config``; its decoder is shared by every configure of the same grammar."""
    vocabulary = Path(config.vocabulary_file) if config.vocabulary_file else None
    mtime = vocabulary.stat().st_mtime_ns if vocabulary is not None and vocabulary.is_file() else None
    key = (config.vocabulary_file, mtime)  # what the decoder is built from
    if key not in _RECOGNIZERS:
        _RECOGNIZERS[key] = Recognizer(config)
    recognizer = _RECOGNIZERS[key]
    # Thresholds act only after decoding; a runtime min_confidence change replaced the config, and the
    # next configure must start from its own parameters, not from that change.
    recognizer.config = config
    if config.free_phrasing:
        recognizer.prepare_free_phrasing()  # built once, here, so configure reports a failure and its time
    return recognizer


class SpeechNode(ManagedNode):
    def __init__(self) -> None:
        super().__init__(SPEECH_NODE)
        self._recognizer: Recognizer | None = None
        self._segmenter_lock = threading.Lock()
        self._segmenter: UtteranceSegmenter | None = None
        self._jobs: queue.Queue[_Job | None] = queue.Queue(QUEUE_DEPTH)
        self._worker: threading.Thread | None = None
        self._diag_timer = None
        self._status_lock = threading.Lock()
        self._status = ("OK", "waiting for speech", {})

    # --- lifecycle ------------------------------------------------------------------------------------
    def configure(self) -> None:
        try:
            self._recognizer = _process_recognizer(RecognizerConfig(
                vocabulary_file=self._params["vocabulary_file"], min_confidence=self._params["min_confidence"],
                free_phrasing=self._params["free_phrasing"]))
        except GrammarError as err:
            raise ParameterValueError(f"{SPEECH_NODE.name}: vocabulary_file: {err}") from err
        # Reliable + transient-local like every instruction publisher of the graph (sim_node, the
        # episode runner): the forecaster subscribes that way so a late joiner gets the last one.
        self._instruction_pub = self.create_lifecycle_publisher(String, "instruction", INSTRUCTION_QOS)
        self._confidence_pub = self.create_lifecycle_publisher(Float32, "speech/confidence", 10)

    def activate(self) -> None:
        with self._segmenter_lock:
            self._segmenter = UtteranceSegmenter(self._segmenter_config())
        self._status = ("OK", "waiting for speech", {})
        # Depth 200 chunks ≈ 4 s of 20 ms chunks: a burst is buffered, not dropped.
        self.while_active(self.create_subscription(Int16MultiArray, "audio", self._on_audio, 200))
        self.while_active(self.create_subscription(String, "speech/wav_path", lambda msg: self._submit(_Job(msg.data)),
                                                   10))
        self._diag_timer = self.while_active(self.create_timer(self._params["diagnostics_period_s"],
                                                               self._publish_status))
        self._jobs = queue.Queue(QUEUE_DEPTH)
        self._worker = threading.Thread(target=self._decode_loop, args=(self._jobs,), name="speech-decoder",
                                        daemon=True)
        self._worker.start()
        if self._params["wav_path"]:
            self._submit(_Job(self._params["wav_path"]))
        self.get_logger().info(f"listening on {self.resolve_topic_name('audio')} (16 kHz mono int16); grammar of "
                               f"{self._recognizer.grammar.size()} instructions")

    def deactivate(self) -> None:
        """Stop the decoding thread (an utterance being decoded finishes first)."""
        if self._worker is None:
            return
        while True:
            try:
                self._jobs.put_nowait(None)
                break
            except queue.Full:
                try:
                    self._jobs.get_nowait()
                except queue.Empty:
                    pass
        self._worker.join(timeout=5.0)
        self._worker = self._diag_timer = None

    def cleanup(self) -> None:
        self._recognizer = None

    # --- callbacks: convert, hand over -----------------------------------------------------------
    def _on_audio(self, msg: Int16MultiArray) -> None:
        try:
            pcm = pcm_from_msg(msg)
            with self._segmenter_lock:
                utterances = self._segmenter.feed(pcm)
        except SpeechInputError as err:
            self._warn(str(err), {"source": "audio"})
            return
        for utterance in utterances:
            if utterance.truncated:
                self.get_logger().warning(f"utterance cut at max_utterance_s={self._params['max_utterance_s']} s")
            self._submit(_Job("audio", utterance.pcm))

    def apply_parameter(self, name: str, value) -> None:
        if name in SEGMENTER_PARAMS:
            with self._segmenter_lock:  # a new VAD setting starts from a clean state
                self._segmenter = UtteranceSegmenter(self._segmenter_config())
        elif name == "min_confidence":
            self._recognizer.config = dataclasses.replace(self._recognizer.config, min_confidence=float(value))
        elif name == "wav_path" and value and self.state == "active":
            self._submit(_Job(value))
        elif name == "diagnostics_period_s" and self._diag_timer is not None:
            self._diag_timer.timer_period_ns = int(float(value) * 1e9)

    def _submit(self, job: _Job) -> None:
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            self._warn(f"decoder busy: dropped {'an utterance' if job.pcm is not None else job.source}",
                       {"queue_depth": QUEUE_DEPTH})

    # --- the decoding thread ---------------------------------------------------------------------
    def _decode_loop(self, jobs: queue.Queue) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            try:
                if job.pcm is not None:
                    result = self._recognizer.recognize_pcm(job.pcm)
                else:
                    result = self._recognizer.recognize_wav(Path(job.source).expanduser())
            except SpeechInputError as err:
                self._warn(str(err), {"source": job.source})
                continue
            except Exception as err:  # noqa: BLE001  a decoder failure must not end the thread: report it, go on
                self.get_logger().error(f"decoding {job.source} failed: {err!r}")
                self._set_status("ERROR", f"decoder failure: {err!r}", {"source": job.source})
                continue
            self._publish_result(job.source, result)

    def _publish_result(self, source: str, result: RecognitionResult) -> None:
        values = {"source": source, "status": result.status.value, "confidence": f"{result.confidence:.3f}",
                  "hypothesis": result.hypothesis, "audio_s": f"{result.audio_s:.2f}",
                  "decode_s": f"{result.decode_s:.3f}",
                  "path": result.source}
        if rclpy.ok():
            self._confidence_pub.publish(Float32(data=float(result.confidence)))
        if not result.recognised:
            self._warn(f"not recognised: {result.reason}", values)
            return
        heard = f", heard {result.hypothesis!r}" if result.hypothesis != result.text else ""
        self.get_logger().info(f"instruction: {result.text!r} ({result.source}{heard}, confidence "
                               f"{result.confidence:.2f}, {result.decode_s * 1000:.0f} ms)")
        if rclpy.ok():
            self._instruction_pub.publish(String(data=result.text))
        self._set_status("OK", f"recognised: {result.text}", values)

    # --- diagnostics -----------------------------------------------------------------------------
    def _warn(self, message: str, values: dict) -> None:
        self.get_logger().warning(message)
        self._set_status("WARN", message, values)

    def _set_status(self, level: str, message: str, values: dict) -> None:
        with self._status_lock:
            self._status = (level, message, values)
        self._publish_status()

    def _publish_status(self) -> None:
        with self._status_lock:
            level, message, values = self._status
        self.diag("speech", level, message, values)

    def _segmenter_config(self) -> SegmenterConfig:
        p = self._params
        return SegmenterConfig(energy_threshold_dbfs=p["vad_energy_threshold_dbfs"], min_silence_s=p["min_silence_s"],
                               min_speech_s=p["min_speech_s"], max_utterance_s=p["max_utterance_s"],
                               pre_roll_s=p["pre_roll_s"])


def main(args=None) -> None:
    run_node(SPEECH_NODE.name, SpeechNode, args)


if __name__ == "__main__":
    main()
