"""Cut a stream of PCM chunks into utterances with an energy voice-activity detector.

A 20 ms frame is speech when its RMS level is above ``energy_threshold_dbfs``. An utterance starts
at the first speech frame and ends once ``min_silence_s`` of non-speech has followed (the hangover
keeps the gaps between words inside one utterance). Each emitted utterance keeps ``pre_roll_s`` of
the audio before its onset and the hangover after it, because pocketsphinx needs silence around a
command (~0.3 s before, ~0.5 s after) to place its first and last words. Bursts shorter than
``min_speech_s`` (clicks, knocks) are dropped; speech longer than ``max_utterance_s`` is cut and
emitted with ``truncated=True``.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

from .audio import SAMPLE_RATE_HZ, as_pcm16, frame_dbfs

FRAME_S = 0.02


@dataclass(frozen=True)
class SegmenterConfig:
    sample_rate_hz: int = SAMPLE_RATE_HZ
    energy_threshold_dbfs: float = -40.0  # frame RMS above this is speech (dB re int16 full scale)
    min_silence_s: float = 0.5  # non-speech that ends an utterance (hangover)
    min_speech_s: float = 0.2  # shorter bursts are not utterances
    max_utterance_s: float = 10.0  # longer speech is cut here
    pre_roll_s: float = 0.3  # audio kept before the onset


@dataclass(frozen=True)
class Utterance:
    pcm: np.ndarray  # (N,) int16 at the segmenter's rate: pre-roll + speech + hangover
    start_sample: int  # stream index of pcm[0]
    speech_s: float  # from the first to the last speech frame
    truncated: bool = False  # cut at max_utterance_s


class UtteranceSegmenter:
    """Streaming: ``feed(chunk)`` returns the utterances that ended inside it; ``flush()`` ends the stream."""

    def __init__(self, config: SegmenterConfig | None = None):
        self.config = config or SegmenterConfig()
        self.frame_samples = int(round(FRAME_S * self.config.sample_rate_hz))
        self.reset()

    def reset(self) -> None:
        cfg = self.config
        self._pending = np.zeros(0, np.int16)  # samples not yet making a whole frame
        self._pre_roll: collections.deque[np.ndarray] = collections.deque(
            maxlen=max(1, int(round(cfg.pre_roll_s / FRAME_S))))
        self._frames: list[np.ndarray] = []  # the current utterance (pre-roll included)
        self._in_speech = False
        self._speech_frames = 0  # frames from onset to the last speech frame
        self._silent_run = 0  # non-speech frames since the last speech frame
        self._start_sample = 0
        self._samples_seen = 0  # whole frames consumed, in samples

    def feed(self, chunk) -> list[Utterance]:
        """Consume a chunk of int16 samples (any length); SpeechInputError on a malformed chunk."""
        pcm = np.concatenate([self._pending, as_pcm16(chunk, "audio chunk")])
        n = pcm.size // self.frame_samples
        self._pending = pcm[n * self.frame_samples:]
        if n == 0:
            return []
        frames = pcm[: n * self.frame_samples].reshape(n, self.frame_samples)  # (n, frame_samples)
        levels = frame_dbfs(frames.reshape(-1), self.frame_samples)
        out: list[Utterance] = []
        for frame, level in zip(frames, levels, strict=True):
            utterance = self._step(frame, bool(level > self.config.energy_threshold_dbfs))
            self._samples_seen += self.frame_samples
            if utterance is not None:
                out.append(utterance)
        return out

    def flush(self) -> list[Utterance]:
        """End of stream: emit the utterance in progress (if long enough) and reset."""
        out = []
        if self._in_speech and self._speech_frames * FRAME_S >= self.config.min_speech_s:
            out.append(self._emit(truncated=False))
        self.reset()
        return out

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    def _step(self, frame: np.ndarray, is_speech: bool) -> Utterance | None:
        cfg = self.config
        if not self._in_speech:
            if not is_speech:
                self._pre_roll.append(frame)
                return None
            self._in_speech = True
            self._frames = list(self._pre_roll)
            self._start_sample = self._samples_seen - len(self._frames) * self.frame_samples
            self._pre_roll.clear()
            self._speech_frames, self._silent_run = 0, 0
        self._frames.append(frame)
        if is_speech:
            self._speech_frames += self._silent_run + 1
            self._silent_run = 0
        else:
            self._silent_run += 1
        if self._silent_run * FRAME_S >= cfg.min_silence_s:
            if self._speech_frames * FRAME_S < cfg.min_speech_s:  # a click: forget it
                tail = self._frames[-self._pre_roll.maxlen:]
                self._in_speech, self._frames = False, []
                self._pre_roll.extend(tail)
                return None
            return self._emit(truncated=False)
        if (self._speech_frames + self._silent_run) * FRAME_S >= cfg.max_utterance_s:
            return self._emit(truncated=True)
        return None

    def _emit(self, truncated: bool) -> Utterance:
        utterance = Utterance(pcm=np.concatenate(self._frames), start_sample=self._start_sample,
                              speech_s=self._speech_frames * FRAME_S, truncated=truncated)
        self._in_speech, self._frames = False, []
        self._speech_frames, self._silent_run = 0, 0
        return utterance
