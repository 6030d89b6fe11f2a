"""Offline speech → instruction (pure Python, no rclpy): the task grammar, a streaming utterance
segmenter and a pocketsphinx recogniser. See README.md in this folder for the audio encoding."""

from .audio import SAMPLE_RATE_HZ, SpeechInputError, read_wav
from .grammar import Grammar, GrammarError, build_grammar, load_grammar
from .recognizer import RecognitionResult, RecognitionStatus, Recognizer, RecognizerConfig
from .segmenter import SegmenterConfig, Utterance, UtteranceSegmenter

__all__ = [
    "SAMPLE_RATE_HZ", "Grammar", "GrammarError", "RecognitionResult", "RecognitionStatus", "Recognizer",
    "RecognizerConfig", "SegmenterConfig", "SpeechInputError", "Utterance", "UtteranceSegmenter", "build_grammar",
    "load_grammar", "read_wav",
]
