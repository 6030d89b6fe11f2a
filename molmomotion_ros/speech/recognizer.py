"""Offline speech → instruction with pocketsphinx 5 and the task grammar.

The decoder searches only the JSGF grammar of :mod:`.grammar`, so a result is always one of the
sentences the tasks speak — or "not recognised" with the reason:

- ``no speech``: the audio never rises above ``min_speech_dbfs``;
- ``no hypothesis``: the grammar search reached no final state (typical of noise and of speech that
  is not an instruction);
- ``incomplete``: the best path stops inside a sentence (the last word was lost to silence). The
  search is on a knife edge there: the same command resampled from 44.1 kHz lost or kept its last
  word. So such a decode is redone once with a little seeded Gaussian dither (``retry_dither_lsb``,
  a few LSB: inaudible, but it moves the features) and the retry is kept if it is a whole sentence;
  on 80 espeak-ng commands this turned the one incomplete result into an exact one;
- ``low confidence``: some word's posterior is below ``min_confidence``.

**Confidence** is the smallest word posterior probability among the hypothesis' *argument words*
(``Grammar.argument_words``: colours, objects, containers and the words that pick a direction or
relation, e.g. "left", "behind"): pocketsphinx's ``bestpath`` pass builds a word lattice of the
grammar-constrained search and runs forward-backward over it; each word of the best path gets the
posterior of its lattice node (``Decoder.seg()`` → ``Segment.prob``). Fixed template words are left
out because the lattice splits their posterior among pronunciation variants ("to" = T UW | T IH |
T AH), which gave correct commands 0.2 on "to". It says how sure the decoder is between grammar
sentences; it does not flag speech that is close to a grammar sentence but not in it ("push the
green box forward" comes out as "... block ..."), and acoustically confusable arguments (espeak's
"purple" heard as "blue") can still score high — hence four checks, not one.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .audio import SAMPLE_RATE_HZ, SpeechInputError, as_pcm16, frame_dbfs, read_wav, resample, to_int16
from .grammar import Grammar, GrammarError, load_grammar, normalise

log = logging.getLogger(__name__)

SEARCH_NAME = "instructions"
# Pronunciations CMUdict lacks: the unrounded "duck" of General American (and of espeak-ng's en-us,
# with which the default D AH K lost "duck" in 10 of 40 en-us commands: heard as "block" or dropped at the end).
EXTRA_PRONUNCIATIONS: tuple[tuple[str, str], ...] = (("duck(2)", "D AA K"),)


class RecognitionStatus(str, enum.Enum):
    RECOGNISED = "recognised"
    NO_SPEECH = "no speech"
    NO_HYPOTHESIS = "no hypothesis"
    INCOMPLETE = "incomplete"
    LOW_CONFIDENCE = "low confidence"


@dataclass(frozen=True)
class RecognizerConfig:
    vocabulary_file: str = ""  # "" → the package's config/vocabulary.yaml
    min_confidence: float = 0.25  # smallest word posterior accepted (in-grammar commands measured ≥ 0.32)
    min_speech_dbfs: float = -50.0  # a 20 ms frame must reach this level for the audio to hold speech
    pre_pad_s: float = 0.3  # digital silence added before the audio (pocketsphinx needs a lead-in)
    post_pad_s: float = 0.5  # and after it (otherwise the last word is often lost)
    silence_prob: float = 1e-4  # pocketsphinx -silprob; lower keeps silence from swallowing the last word
    extra_pronunciations: tuple[tuple[str, str], ...] = EXTRA_PRONUNCIATIONS
    retry_dither_lsb: float = 4.0  # std (int16 LSB) of the dither of the retry of an incomplete decode; 0 = no retry
    retry_seed: int = 0


@dataclass(frozen=True)
class RecognitionResult:
    status: RecognitionStatus
    text: str  # the instruction when recognised, else ""
    confidence: float  # [0, 1], see the module docstring; 0 without a hypothesis
    hypothesis: str = ""  # what the decoder heard, even when refused
    reason: str = ""  # why it was not recognised; "" when it was
    audio_s: float = 0.0  # duration of the decoded audio (padding excluded)
    decode_s: float = 0.0  # wall time of the decode
    word_posteriors: tuple[tuple[str, float], ...] = field(default_factory=tuple)

    @property
    def recognised(self) -> bool:
        return self.status is RecognitionStatus.RECOGNISED


class Recognizer:
    """Grammar-constrained pocketsphinx decoder; thread-safe (one decode at a time)."""

    def __init__(self, config: RecognizerConfig | None = None, grammar: Grammar | None = None):
        from pocketsphinx import Decoder

        self.config = config or RecognizerConfig()
        self.grammar = grammar or load_grammar(self.config.vocabulary_file)
        self._pattern = self.grammar.pattern()
        # lm=None: the default n-gram model gets synthesized commands wrong; only the grammar is searched.
        self._decoder = Decoder(samprate=SAMPLE_RATE_HZ, loglevel="FATAL", lm=None, silprob=self.config.silence_prob)
        for word, phones in self.config.extra_pronunciations:
            self._decoder.add_word(word, phones, update=False)
        missing = sorted(w for w in self.grammar.words() if self._decoder.lookup_word(w) is None)
        if missing:
            raise GrammarError(f"no pronunciation in the dictionary for: {', '.join(missing)}")
        self._decoder.add_jsgf_string(SEARCH_NAME, self.grammar.jsgf())
        self._decoder.activate_search(SEARCH_NAME)
        self._lock = threading.Lock()

    def recognize_wav(self, path: str | Path) -> RecognitionResult:
        """Any integer-PCM WAV (converted to 16 kHz mono); SpeechInputError if unreadable/unsupported."""
        return self.recognize_pcm(read_wav(path, SAMPLE_RATE_HZ))

    def recognize_pcm(self, pcm, sample_rate_hz: int = SAMPLE_RATE_HZ) -> RecognitionResult:
        """(N,) int16 mono PCM → result; SpeechInputError for a malformed array."""
        pcm = as_pcm16(pcm, "pcm")
        if sample_rate_hz != SAMPLE_RATE_HZ:
            pcm = to_int16(resample(pcm, sample_rate_hz, SAMPLE_RATE_HZ))
        audio_s = pcm.size / SAMPLE_RATE_HZ
        levels = frame_dbfs(pcm, int(0.02 * SAMPLE_RATE_HZ))
        if levels.size == 0 or levels.max() < self.config.min_speech_dbfs:
            peak = f"{levels.max():.0f} dBFS" if levels.size else "no whole 20 ms frame"
            return self._refused(RecognitionStatus.NO_SPEECH, f"no speech: loudest frame {peak} "
                                 f"< {self.config.min_speech_dbfs:.0f} dBFS", audio_s=audio_s)
        padded = np.concatenate([np.zeros(int(self.config.pre_pad_s * SAMPLE_RATE_HZ), np.int16), pcm,
                                 np.zeros(int(self.config.post_pad_s * SAMPLE_RATE_HZ), np.int16)])
        t0 = time.perf_counter()
        text, words = self._decode(padded)
        if text and not self._pattern.match(text) and self.config.retry_dither_lsb > 0:
            rng = np.random.default_rng(self.config.retry_seed)
            dithered = to_int16(padded + rng.normal(0.0, self.config.retry_dither_lsb, padded.size))
            retry_text, retry_words = self._decode(dithered)
            if self._pattern.match(retry_text):
                text, words = retry_text, retry_words
        decode_s = time.perf_counter() - t0
        timing = {"audio_s": audio_s, "decode_s": decode_s}
        if not text:
            return self._refused(RecognitionStatus.NO_HYPOTHESIS, "no hypothesis: the speech matches no instruction",
                                 **timing)
        # Fillers and silences (<sil>, [NOISE], <s>) carry no meaning; "white(2)" is an alternative pronunciation.
        posteriors = tuple((w.split("(")[0], p) for w, p in words if not w.startswith(("<", "[")))
        arguments = [(w, p) for w, p in posteriors if w in self.grammar.argument_words] or list(posteriors)
        confidence = float(min((p for _, p in arguments), default=0.0))
        common = {"hypothesis": text, "confidence": confidence, "word_posteriors": posteriors, **timing}
        if not self._pattern.match(text):
            return self._refused(RecognitionStatus.INCOMPLETE, f"incomplete: {text!r} is not a whole instruction",
                                 **common)
        if confidence < self.config.min_confidence:
            weakest = min(arguments, key=lambda wp: wp[1])
            return self._refused(RecognitionStatus.LOW_CONFIDENCE,
                                 f"low confidence: {confidence:.2f} < {self.config.min_confidence:.2f} "
                                 f"(weakest word {weakest[0]!r}) in {text!r}", **common)
        return RecognitionResult(RecognitionStatus.RECOGNISED, text, **common)

    def _decode(self, pcm: np.ndarray) -> tuple[str, tuple[tuple[str, float], ...]]:
        """One grammar decode: (normalised hypothesis or "", (word, posterior) per segment)."""
        with self._lock:
            d = self._decoder
            d.start_utt()
            d.process_raw(pcm.tobytes(), full_utt=True)
            d.end_utt()
            hyp = d.hyp()
            if hyp is None:
                return "", ()
            return normalise(hyp.hypstr), tuple((s.word, float(s.prob)) for s in d.seg())

    @staticmethod
    def _refused(status: RecognitionStatus, reason: str, **kw) -> RecognitionResult:
        kw.setdefault("confidence", 0.0)
        return RecognitionResult(status, "", reason=reason, **kw)


__all__ = ["Recognizer", "RecognizerConfig", "RecognitionResult", "RecognitionStatus", "SpeechInputError"]
