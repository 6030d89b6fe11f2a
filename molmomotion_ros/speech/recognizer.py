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

**Free phrasing** (``free_phrasing``): people say "could you nudge the red cube to the left" rather than a
template sentence, and the template search forces such speech into some template sentence, often another
command. A second decoder searches the wide grammar of :mod:`.phrase_grammar` (every word the instruction
parser knows, in the frames people use) and :func:`molmomotion_ros.language.parse_instruction` reads what it
heard. The template path's answer stands unless the wide reading has evidence of free phrasing: it parses to a
*different* command, holds at least ``free_min_off_template_words`` words the template grammar cannot produce,
and its argument words reach ``free_min_confidence``. A wide reading replaces a refusal of the template path
when it parses and is that sure; heard but refused by the parser, the status is ``not understood`` with the
parser's reason. Both thresholds were chosen by ``scripts/tune_speech_free_phrasing.py`` on development
rewordings and voices (a wrong command costs 3, a refusal 1); held-out sets and voices never took part. A
result of this path has ``source == "phrases"`` and, as ``text``, the parser's canonical phrasing of the
command (the template sentence the template path would have returned for it).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from molmomotion_ros import language
from molmomotion_ros.vocabulary import Vocabulary, default_vocabulary

from .audio import SAMPLE_RATE_HZ, SpeechInputError, as_pcm16, frame_dbfs, read_wav, resample, to_int16
from .grammar import Grammar, GrammarError, load_grammar, normalise
from .phrase_grammar import PhraseGrammar, build_phrase_grammar

log = logging.getLogger(__name__)

SEARCH_NAME = "instructions"
PHRASES_SEARCH_NAME = "phrasings"
GRAMMAR_SOURCE = "grammar"  # RecognitionResult.source: the template grammar's sentence
PHRASES_SOURCE = "phrases"  # the wide grammar's words, read by the instruction parser
# Pronunciations CMUdict lacks: the unrounded "duck" of General American (and of espeak-ng's en-us,
# with which the default D AH K lost "duck" in 10 of 40 en-us commands: heard as "block" or dropped at the end).
EXTRA_PRONUNCIATIONS: tuple[tuple[str, str], ...] = (("duck(2)", "D AA K"),)


class RecognitionStatus(str, enum.Enum):
    RECOGNISED = "recognised"
    NO_SPEECH = "no speech"
    NO_HYPOTHESIS = "no hypothesis"
    INCOMPLETE = "incomplete"
    LOW_CONFIDENCE = "low confidence"
    NOT_UNDERSTOOD = "not understood"  # free phrasing heard, but the instruction parser refused it


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
    free_phrasing: bool = False  # also decode with the wide grammar of the parser's words (about 2x decode time)
    free_min_confidence: float = 0.45  # smallest argument-word posterior taken from the wide grammar (tuned on dev)
    free_min_off_template_words: int = 1  # words outside the template grammar needed to overrule its answer
    free_max_hmm_per_frame: int = 3000  # pocketsphinx -maxhmmpf of the wide search (its speed/accuracy knob)


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
    source: str = ""  # GRAMMAR_SOURCE or PHRASES_SOURCE when recognised, else ""

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
        self._initial_cmn = self._decoder.get_cmn()
        self._lock = threading.Lock()
        self.vocabulary = (Vocabulary.from_yaml(self.config.vocabulary_file) if self.config.vocabulary_file
                           else default_vocabulary())
        self.phrase_grammar: PhraseGrammar | None = None
        self._phrase_decoder = None
        if self.config.free_phrasing:
            self.prepare_free_phrasing()

    def prepare_free_phrasing(self) -> None:
        """Build the wide decoder (once; a no-op after), as the first config asking for free phrasing needs it."""
        if self._phrase_decoder is not None:
            return
        from pocketsphinx import Decoder

        # fsgusealtpron off: the wide grammar is large and alternative pronunciations multiply its search.
        decoder = Decoder(samprate=SAMPLE_RATE_HZ, loglevel="FATAL", lm=None, silprob=self.config.silence_prob,
                          maxhmmpf=self.config.free_max_hmm_per_frame, fsgusealtpron=False)
        for word, phones in self.config.extra_pronunciations:
            decoder.add_word(word, phones, update=False)
        grammar = build_phrase_grammar(lambda w: decoder.lookup_word(w) is not None, self.vocabulary)
        decoder.add_jsgf_string(PHRASES_SEARCH_NAME, grammar.jsgf())
        decoder.activate_search(PHRASES_SEARCH_NAME)
        self._template_words = self.grammar.words()
        self.phrase_grammar, self._phrase_decoder = grammar, decoder

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
        padded = self._padded(pcm)
        t0 = time.perf_counter()
        result = self._recognize_template(padded, audio_s, t0)
        if not self.config.free_phrasing:
            return result
        self.prepare_free_phrasing()  # a no-op unless a config change switched free phrasing on
        return self._recognize_free(padded, result, t0)

    def _recognize_template(self, padded: np.ndarray, audio_s: float, t0: float) -> RecognitionResult:
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
        return RecognitionResult(RecognitionStatus.RECOGNISED, text, source=GRAMMAR_SOURCE, **common)

    def _recognize_free(self, padded: np.ndarray, template: RecognitionResult, t0: float) -> RecognitionResult:
        reading = self._wide_reading(padded)
        timing = {"audio_s": template.audio_s, "decode_s": time.perf_counter() - t0}
        return choose_reading(dataclasses.replace(template, **timing), reading, self.config, self.vocabulary)

    def wide_reading(self, pcm) -> WideReading:
        """What the wide grammar alone hears in ``pcm`` (16 kHz int16), for tuning the choice between paths."""
        self.prepare_free_phrasing()
        pcm = as_pcm16(pcm, "pcm")
        return self._wide_reading(self._padded(pcm))

    def _padded(self, pcm: np.ndarray) -> np.ndarray:
        """``pcm`` between the digital silences the decoder needs (``pre_pad_s``, ``post_pad_s``)."""
        return np.concatenate([np.zeros(int(self.config.pre_pad_s * SAMPLE_RATE_HZ), np.int16), pcm,
                               np.zeros(int(self.config.post_pad_s * SAMPLE_RATE_HZ), np.int16)])

    def _wide_reading(self, padded: np.ndarray) -> WideReading:
        text, words = self._decode(padded, self._phrase_decoder)
        posteriors = tuple((w.split("(")[0], p) for w, p in words if not w.startswith(("<", "[")))
        arguments = [(w, p) for w, p in posteriors if w in self.phrase_grammar.argument_words] or list(posteriors)
        weakest = min(arguments, key=lambda wp: wp[1], default=("", 0.0))
        parsed = language.parse_instruction(text, self.vocabulary, fallback=False) if text else None
        return WideReading(
            text=text, posteriors=posteriors, confidence=float(weakest[1]), weakest_word=weakest[0],
            off_template_words=tuple(w for w in text.split() if w not in self._template_words),
            command=language.canonical(parsed, self.vocabulary) if isinstance(parsed, language.ParsedInstruction)
            else "", refusal=str(parsed.reason) if isinstance(parsed, language.Refusal) else "")

    def _decode(self, pcm: np.ndarray, decoder=None) -> tuple[str, tuple[tuple[str, float], ...]]:
        """One grammar decode: (normalised hypothesis or "", (word, posterior) per segment)."""
        with self._lock:
            d = decoder or self._decoder
            # Each utterance from the same starting cepstral mean: pocketsphinx carries its running estimate from
            # one utterance to the next, so the same audio could be read differently after other speech.
            d.set_cmn(self._initial_cmn)
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


@dataclass(frozen=True)
class WideReading:
    """The wide grammar's hypothesis and the instruction parser's reading of it."""

    text: str  # "" when the search reached no final state
    posteriors: tuple[tuple[str, float], ...]
    confidence: float  # smallest posterior among the argument words (colours, nouns, sides, directions)
    weakest_word: str
    off_template_words: tuple[str, ...]  # words the template grammar cannot produce: evidence of free phrasing
    command: str  # the parser's canonical phrasing, "" when it refused or nothing was heard
    refusal: str  # the parser's reason when it refused


def choose_reading(template: RecognitionResult, reading: WideReading, config: RecognizerConfig,
                   vocabulary: Vocabulary) -> RecognitionResult:
    """The template path's result, or the wide reading where it has the evidence (the module docstring's rule)."""
    if not reading.text:
        return template
    if template.recognised and (len(reading.off_template_words) < config.free_min_off_template_words
                                or not reading.command
                                or _same_command(template.text, reading.command, vocabulary)):
        return template
    common = {"hypothesis": reading.text, "confidence": reading.confidence, "word_posteriors": reading.posteriors,
              "audio_s": template.audio_s, "decode_s": template.decode_s}
    if not reading.command:  # words, but no command in them: confidence 0, as for no hypothesis
        return Recognizer._refused(RecognitionStatus.NOT_UNDERSTOOD,
                                   f"not understood: {reading.refusal} (heard {reading.text!r})",
                                   **{**common, "confidence": 0.0})
    if reading.confidence < config.free_min_confidence:
        if template.recognised:
            return template
        return Recognizer._refused(RecognitionStatus.LOW_CONFIDENCE,
                                   f"low confidence: {reading.confidence:.2f} < {config.free_min_confidence:.2f} "
                                   f"(weakest word {reading.weakest_word!r}) in free phrasing {reading.text!r}",
                                   **common)
    return RecognitionResult(RecognitionStatus.RECOGNISED, reading.command, source=PHRASES_SOURCE, **common)


def _same_command(template_text: str, command: str, vocabulary: Vocabulary) -> bool:
    parsed = language.parse_instruction(template_text, vocabulary, fallback=False)
    return not isinstance(parsed, language.Refusal) and language.canonical(parsed, vocabulary) == command


__all__ = ["Recognizer", "RecognizerConfig", "RecognitionResult", "RecognitionStatus", "SpeechInputError",
           "WideReading", "choose_reading"]
