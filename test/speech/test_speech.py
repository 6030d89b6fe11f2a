"""Speech core (no ROS): the grammar against the harness's own instructions, the segmenter on
synthetic audio, and the recogniser on espeak-ng speech (real pocketsphinx decoding, no mocks)."""

from __future__ import annotations

import wave

import numpy as np
import pytest
import yaml

from molmomotion_ros.paths import config_path
from molmomotion_ros.speech import (
    GrammarError,
    RecognitionStatus,
    Recognizer,
    RecognizerConfig,
    SegmenterConfig,
    SpeechInputError,
    UtteranceSegmenter,
    build_grammar,
    load_grammar,
    read_wav,
)
from molmomotion_ros.speech.synth import synthesize
from molmomotion_sim.tasks import TASKS
from molmomotion_sim.world import World

RATE_HZ = 16000
SEEDS_PER_FAMILY = 50  # x 4 families = 200 tasks
# One command per family (and per phrasing shape) that espeak-ng's en-us voice says clearly enough
# for an exact decode; the benchmark measures the rate over random commands and two voices.
COMMANDS = (
    "move the red cube on the cyan tray",
    "pick up the orange duck and put it in the pink bowl",
    "put the cyan cube in front of the white cube",
    "stack the blue cube on the yellow block",
    "slide the purple lego backward",
)


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer()


@pytest.fixture(scope="module")
def spoken(tmp_path_factory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("speech")
    return {text: synthesize(text, folder / f"{i}.wav", voice="en-us") for i, text in enumerate(COMMANDS)}


# --- grammar -------------------------------------------------------------------------------------
def test_grammar_accepts_every_instruction_of_200_seeded_tasks():
    grammar = build_grammar()
    instructions = []
    with World() as world:
        for family, cls in TASKS.items():
            task = cls(world)
            for seed in range(110_000, 110_000 + SEEDS_PER_FAMILY):
                task.reset(seed)
                instructions.append((family, seed, task.instruction))
    assert len(instructions) == 200
    refused = [i for i in instructions if not grammar.accepts(i[2])]
    assert not refused, refused
    sentences = set(grammar.expand())
    assert {text for _, _, text in instructions} <= sentences
    assert len(sentences) == grammar.size()  # no sentence is produced twice


def test_grammar_holds_only_sentences_the_tasks_could_speak():
    grammar = build_grammar()
    assert grammar.accepts("push the red block to the left")
    assert grammar.accepts("  Put the green lego to the RIGHT of the white duck ")  # spacing/case normalised
    assert not grammar.accepts("move the red cube in the cyan tray")  # a tray takes "on"
    assert not grammar.accepts("stack the red duck on the blue cube")  # a duck is not stackable
    assert not grammar.accepts("push the red duck forward")  # nor pushable
    assert not grammar.accepts("push the red block")  # incomplete
    assert not grammar.accepts("push the black block forward")  # not a vocabulary colour
    jsgf = grammar.jsgf()
    assert jsgf.startswith("#JSGF V1.0;") and "public <instruction> =" in jsgf
    assert "<stackable_object> = block | cube;" in jsgf


def test_confidence_looks_at_the_argument_words():
    assert build_grammar().argument_words == {
        "red", "green", "blue", "yellow", "orange", "purple", "pink", "cyan", "white", "block", "cube", "lego",
        "duck", "bowl", "tray", "left", "right", "front", "behind", "forward", "backward"}


def test_grammar_follows_the_vocabulary_file(tmp_path):
    raw = yaml.safe_load(config_path("vocabulary.yaml").read_text())
    raw["colours"]["black"] = [0.0, 0.0, 0.0, 1.0]
    raw["phrasings"]["push"].append("nudge the {colour} {object} {direction}")
    path = tmp_path / "vocabulary.yaml"
    path.write_text(yaml.safe_dump(raw))
    grammar = load_grammar(path)
    assert grammar.accepts("nudge the black cube forward")
    assert not build_grammar().accepts("nudge the black cube forward")

    raw["phrasings"]["push"].append("push the {colour} {object} {speed}")
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(GrammarError, match="unknown placeholder"):
        load_grammar(path)
    with pytest.raises(GrammarError, match="does not exist"):
        load_grammar(tmp_path / "missing.yaml")


# --- segmenter -----------------------------------------------------------------------------------
def _synthetic_stream(rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Background noise at about -60 dBFS with three 220 Hz 'words' (one with a 0.2 s pause inside)
    and a 40 ms click; returns the stream and the (start, end) samples of the two utterances."""
    t = np.arange(RATE_HZ) / RATE_HZ
    tone = (6000 * np.sin(2 * np.pi * 220 * t)).astype(np.float64)  # 1 s at about -17 dBFS
    silence = lambda s: np.zeros(int(s * RATE_HZ))  # noqa: E731
    click = np.full(int(0.04 * RATE_HZ), 8000.0)
    parts = [silence(0.7), tone, silence(1.0), click, silence(1.0), tone[:8000], silence(0.2), tone[:8000],
             silence(1.2)]
    stream = np.concatenate(parts)
    stream += rng.normal(0, 30, stream.size)
    first = (int(0.7 * RATE_HZ), int(1.7 * RATE_HZ))
    second_start = int((0.7 + 1 + 1 + 0.04 + 1) * RATE_HZ)
    return np.round(stream).astype(np.int16), [first, (second_start, second_start + int(1.2 * RATE_HZ))]


@pytest.mark.parametrize("chunk_samples", [1, 320, 1000, 7919])
def test_segmenter_finds_each_utterance_whatever_the_chunk_size(chunk_samples):
    stream, truth = _synthetic_stream(np.random.default_rng(0))
    segmenter = UtteranceSegmenter(SegmenterConfig(min_silence_s=0.5, pre_roll_s=0.3))
    utterances = []
    for i in range(0, stream.size, chunk_samples):
        utterances += segmenter.feed(stream[i:i + chunk_samples])
    assert len(utterances) == 2  # the click is dropped, the 0.2 s pause does not split the second
    for utterance, (start, end) in zip(utterances, truth, strict=True):
        onset = utterance.start_sample + int(0.3 * RATE_HZ)  # after the pre-roll
        assert abs(onset - start) <= 320  # within one 20 ms frame
        assert utterance.speech_s == pytest.approx((end - start) / RATE_HZ, abs=0.04)
        assert utterance.pcm.size / RATE_HZ == pytest.approx(0.3 + utterance.speech_s + 0.5, abs=0.04)
        np.testing.assert_array_equal(utterance.pcm, stream[utterance.start_sample:utterance.start_sample
                                                            + utterance.pcm.size])
        assert not utterance.truncated


def test_segmenter_cuts_long_speech_and_flushes_the_last_utterance():
    tone = (6000 * np.sin(2 * np.pi * 220 * np.arange(5 * RATE_HZ) / RATE_HZ)).astype(np.int16)
    segmenter = UtteranceSegmenter(SegmenterConfig(max_utterance_s=2.0))
    utterances = segmenter.feed(tone)
    assert [u.truncated for u in utterances] == [True, True]
    assert utterances[0].speech_s == pytest.approx(2.0, abs=0.02)
    rest = segmenter.flush()
    assert len(rest) == 1 and rest[0].speech_s == pytest.approx(1.0, abs=0.04)
    assert segmenter.flush() == []


@pytest.mark.parametrize("chunk", [np.zeros((2, 160), np.int16), np.zeros(160, np.float32),
                                   np.array([40000, 0]), "not audio"])
def test_segmenter_refuses_malformed_chunks(chunk):
    with pytest.raises(SpeechInputError):
        UtteranceSegmenter().feed(chunk)


# --- recogniser ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text", COMMANDS)
def test_recognizer_decodes_espeak_commands_exactly(recognizer, spoken, text):
    result = recognizer.recognize_wav(spoken[text])
    assert result.recognised, result.reason
    assert result.text == text
    assert 0.25 <= result.confidence <= 1.0
    assert result.audio_s > 1.0 and result.decode_s < 2.0


def test_recognizer_converts_other_rates_and_channels(recognizer, tmp_path):
    text = COMMANDS[0]
    stereo = synthesize(text, tmp_path / "stereo.wav", voice="en-us", sample_rate_hz=44100, channels=2)
    with wave.open(str(stereo)) as wav:
        assert (wav.getframerate(), wav.getnchannels()) == (44100, 2)
    assert read_wav(stereo).dtype == np.int16
    assert recognizer.recognize_wav(stereo).text == text


def test_streamed_speech_is_segmented_and_recognised(recognizer, spoken):
    """Two commands in one 16 kHz stream, in 100 ms chunks, through the segmenter."""
    gap = np.zeros(RATE_HZ, np.int16)
    stream = np.concatenate([gap, read_wav(spoken[COMMANDS[0]]), gap, read_wav(spoken[COMMANDS[3]]), gap])
    segmenter = UtteranceSegmenter()
    utterances = [u for i in range(0, stream.size, 1600) for u in segmenter.feed(stream[i:i + 1600])]
    assert [recognizer.recognize_pcm(u.pcm).text for u in utterances] == [COMMANDS[0], COMMANDS[3]]


def test_unreadable_and_unsupported_files_raise_speech_input_error(recognizer, tmp_path):
    with pytest.raises(SpeechInputError, match="no such file"):
        recognizer.recognize_wav(tmp_path / "missing.wav")
    text_file = tmp_path / "notes.wav"
    text_file.write_text("not a wav file")
    with pytest.raises(SpeechInputError, match="not a readable"):
        recognizer.recognize_wav(text_file)
    empty = tmp_path / "empty.wav"
    with wave.open(str(empty), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE_HZ)
    with pytest.raises(SpeechInputError, match="no audio"):
        recognizer.recognize_wav(empty)
    float_wav = tmp_path / "float.wav"  # IEEE float WAV (format 3): not integer PCM
    float_wav.write_bytes(_float_wav_bytes(np.zeros(1600, np.float32)))
    with pytest.raises(SpeechInputError, match="integer-PCM"):
        recognizer.recognize_wav(float_wav)
    with pytest.raises(SpeechInputError):
        recognizer.recognize_pcm(np.zeros((2, 100), np.int16))


def _float_wav_bytes(samples: np.ndarray) -> bytes:
    import struct

    data = samples.astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, RATE_HZ, RATE_HZ * 4, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_noise_silence_and_other_speech_are_not_recognised(recognizer, tmp_path):
    noise = np.round(np.random.default_rng(0).normal(0, 3000, 2 * RATE_HZ)).astype(np.int16)
    result = recognizer.recognize_pcm(noise)
    assert not result.recognised and result.text == "" and result.reason
    assert recognizer.recognize_pcm(np.zeros(RATE_HZ, np.int16)).status is RecognitionStatus.NO_SPEECH
    for voice in ("en-us", "en-us+f3"):
        other = recognizer.recognize_wav(synthesize("please open the door now", tmp_path / "o.wav", voice=voice))
        assert not other.recognised and other.text == "", other
        assert other.status in (RecognitionStatus.NO_HYPOTHESIS, RecognitionStatus.INCOMPLETE)


def test_cut_off_commands_and_weak_words_are_refused(spoken):
    recognizer = Recognizer(RecognizerConfig(min_confidence=0.9))
    pcm = read_wav(spoken[COMMANDS[1]])
    cut = recognizer.recognize_pcm(pcm[: int(pcm.size * 0.6)])  # "... put it in the"
    assert not cut.recognised and cut.status in (RecognitionStatus.NO_HYPOTHESIS, RecognitionStatus.INCOMPLETE)
    weak = recognizer.recognize_wav(spoken[COMMANDS[1]])  # "duck" at a posterior of about 0.7
    assert weak.status is RecognitionStatus.LOW_CONFIDENCE and weak.text == ""
    assert weak.hypothesis == COMMANDS[1] and "weakest word 'duck'" in weak.reason and weak.confidence < 0.9


# --- packaging -----------------------------------------------------------------------------------
def test_speech_core_imports_without_rclpy():
    import subprocess
    import sys

    code = ("import sys, molmomotion_ros.speech, molmomotion_ros.node_specs.speech\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rclpy', 'std_msgs')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_params_file_sets_only_declared_parameters_with_valid_values():
    from molmomotion_ros.graph import node

    spec = node("speech_node")
    values = yaml.safe_load(spec.params_path.read_text())["speech_node"]["ros__parameters"]
    assert set(values) <= {p.name for p in spec.parameters}
    assert [spec.spec(k).problem(v) for k, v in values.items()] == [None] * len(values)
    assert values == spec.defaults()  # the file documents the defaults


# --- free phrasing ------------------------------------------------------------------------------
def _reading(text: str, confidence: float, recognizer: Recognizer):
    """A wide reading as the recogniser builds it, without audio (the parser's verdict is real)."""
    from molmomotion_ros import language
    from molmomotion_ros.speech.recognizer import WideReading

    parsed = language.parse_instruction(text, recognizer.vocabulary, fallback=False)
    template_words = recognizer.grammar.words()
    return WideReading(text=text, posteriors=tuple((w, confidence) for w in text.split()), confidence=confidence,
                       weakest_word=text.split()[-1], off_template_words=tuple(w for w in text.split()
                                                                              if w not in template_words),
                       command="" if isinstance(parsed, language.Refusal) else language.canonical(parsed),
                       refusal=parsed.reason if isinstance(parsed, language.Refusal) else "")


def _template(text: str, recognised: bool = True):
    from molmomotion_ros.speech import RecognitionResult

    if recognised:
        return RecognitionResult(RecognitionStatus.RECOGNISED, text, 0.8, hypothesis=text, source="grammar")
    return RecognitionResult(RecognitionStatus.NO_HYPOTHESIS, "", 0.0, reason="no hypothesis")


def test_the_choice_keeps_the_template_answer_without_evidence_of_free_phrasing(recognizer):
    from molmomotion_ros.speech.recognizer import choose_reading

    config = RecognizerConfig(free_phrasing=True, free_min_confidence=0.3, free_min_off_template_words=2)
    vocab = recognizer.vocabulary
    template = _template("put the red cube in the blue bowl")
    # One swapped word ("set") is no evidence against a whole template sentence.
    assert choose_reading(template, _reading("set the red cube in the blue bowl", 0.9, recognizer), config,
                          vocab) is template
    # The same command in other words: the template path's sentence stands.
    same = _reading("go ahead and drop the red cube into the blue bowl", 0.9, recognizer)
    assert choose_reading(template, same, config, vocab) is template
    # A different command, in words the templates cannot say, at good confidence: the free reading wins.
    other = _reading("could you shove the green block forward without lifting it", 0.6, recognizer)
    chosen = choose_reading(template, other, config, vocab)
    assert chosen.recognised and chosen.source == "phrases" and chosen.text == other.command
    assert chosen.hypothesis == other.text
    # ... but not at low confidence: then the template path's answer stands.
    assert choose_reading(template, _reading(other.text, 0.1, recognizer), config, vocab) is template


def test_the_choice_refuses_free_words_that_are_no_command_or_too_unsure(recognizer):
    from molmomotion_ros.speech.recognizer import choose_reading

    config = RecognizerConfig(free_phrasing=True, free_min_confidence=0.3)
    refused = _template("", recognised=False)
    throw = choose_reading(refused, _reading("could you throw the red duck", 0.9, recognizer), config,
                           recognizer.vocabulary)
    assert throw.status is RecognitionStatus.NOT_UNDERSTOOD and throw.text == "" and throw.confidence == 0.0
    assert "throw" in throw.reason
    unsure = choose_reading(refused, _reading("go ahead and drop the red cube into the blue bowl", 0.2, recognizer),
                            config, recognizer.vocabulary)
    assert unsure.status is RecognitionStatus.LOW_CONFIDENCE and unsure.text == "" and "free phrasing" in unsure.reason
    sure = choose_reading(refused, _reading("go ahead and drop the red cube into the blue bowl", 0.5, recognizer),
                          config, recognizer.vocabulary)
    assert sure.recognised and sure.text == "put the red cube in the blue bowl" and sure.source == "phrases"


@pytest.fixture(scope="module")
def free_recognizer() -> Recognizer:
    return Recognizer(RecognizerConfig(free_phrasing=True))


# Development rewordings (test/language_dev.yaml) that espeak-ng's en-us says clearly; held-out sets are never used.
# The template path heard this as another command (scripts/tune_speech_free_phrasing.py's development decodes).
# What the free path still gets wrong (a template command overruled, other speech read as a command) is measured
# by bench/bench_speech_language.py and stated in speech/README.md: that is why the path is opt-in.
REWORDED = (
    ("could you stack the white block on top of the pink cube", "stack the white block on the pink cube"),
)


@pytest.mark.parametrize(("said", "command"), REWORDED)
def test_free_phrasing_hears_a_reworded_command(free_recognizer, tmp_path, said, command):
    result = free_recognizer.recognize_wav(synthesize(said, tmp_path / "reworded.wav", voice="en-us"))
    assert result.recognised and result.text == command and result.source == "phrases", result
    assert result.hypothesis != result.text  # what was heard is kept next to the command it means


def test_free_phrasing_reports_words_that_are_no_command_as_not_understood(free_recognizer, tmp_path):
    result = free_recognizer.recognize_wav(synthesize("please open the door now", tmp_path / "door.wav",
                                                      voice="en-us"))
    assert result.status is RecognitionStatus.NOT_UNDERSTOOD and result.text == "" and result.confidence == 0.0
    assert result.hypothesis and "heard" in result.reason
