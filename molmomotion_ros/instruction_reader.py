"""A learned reader of what an instruction asks the arm to do: push | move | stack | refuse, whatever the verb.

A linear layer over the mean-pooled all-MiniLM-L6-v2 embedding (:mod:`molmomotion_ros.forecasting.text`) of the
instruction with its object mentions replaced by "it" (:func:`molmomotion_ros.language.reader_text`), trained on
the generated language of :mod:`molmomotion_ros.language_corpus` (``scripts/train_instruction_reader.py``). The
parser (:mod:`molmomotion_ros.language`) asks it for the motion class; the sentence's structure (which objects,
which preposition, which direction) still decides the family and its arguments.

A reading is used only when its probability reaches the shipped thresholds, chosen on verbs the reader never
trained on (verb folds of the corpus); below them the parser falls back to its lexicon.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASSES = ("push", "move", "stack", "refuse")
READER_TOKENS = 48  # word pieces read (the forecasters read 24; spoken requests run longer)
DEFAULT_PATH = Path(__file__).resolve().parent / "checkpoints" / "instruction_reader.npz"


class ReaderError(RuntimeError):
    """The reader's weights are missing or do not fit this package."""


@dataclass(frozen=True)
class Reading:
    label: str | None  # a class of CLASSES, or None when no class is probable enough
    probabilities: dict[str, float]
    structure_may_decide: bool = False  # unsure, and a refusal is improbable enough to let the structure decide


class InstructionReader:
    """Masked instruction text → motion class probabilities."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, accept_min: float, refuse_min: float,
                 structure_refuse_max: float = 0.0, encoder=None, info: dict | None = None):
        if weight.shape != (384, len(CLASSES)) or bias.shape != (len(CLASSES),):
            raise ReaderError(f"reader weights of shape {weight.shape}/{bias.shape}; expected (384, 4)/(4,)")
        self.weight, self.bias = weight.astype(np.float32), bias.astype(np.float32)
        self.accept_min, self.refuse_min = float(accept_min), float(refuse_min)
        # Where the reading is unsure and the lexicon knows no verb, the sentence's structure decides the family
        # while the refusal probability stays under this; otherwise it is refused.
        self.structure_refuse_max = float(structure_refuse_max)
        self.info = info or {}
        if encoder is None:
            from .forecasting.text import default_text_encoder

            encoder = default_text_encoder()
        self._encoder = encoder

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PATH, encoder=None) -> "InstructionReader":
        path = Path(path)
        if not path.is_file():
            raise ReaderError(f"no instruction reader at {path}; train one with scripts/train_instruction_reader.py")
        with np.load(path) as data:
            info = json.loads(str(data["info"]))
            if tuple(info.get("classes", ())) != CLASSES:
                raise ReaderError(f"{path}: classes {info.get('classes')} are not {CLASSES}")
            return cls(data["weight"], data["bias"], info["accept_min"], info["refuse_min"],
                       info["structure_refuse_max"], encoder, info)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        info = {**self.info, "classes": list(CLASSES), "accept_min": self.accept_min, "refuse_min": self.refuse_min,
                "structure_refuse_max": self.structure_refuse_max}
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, weight=self.weight, bias=self.bias, info=json.dumps(info, sort_keys=True))
        tmp.replace(path)

    @property
    def can_override(self) -> bool:
        """Whether a reading can ever name a class (else it only gates words the lexicon lacks)."""
        return self.accept_min <= 1.0 or self.refuse_min <= 1.0

    def embed(self, texts: list[str]) -> np.ndarray:
        return embed(self._encoder, texts)

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """(N, 4) class probabilities of masked instruction texts."""
        return softmax(self.embed(texts) @ self.weight + self.bias)

    def read(self, masked_text: str) -> Reading:
        p = self.probabilities([masked_text])[0]
        probabilities = dict(zip(CLASSES, map(float, p), strict=True))
        label = decide(p, self.accept_min, self.refuse_min)
        return Reading(label, probabilities,
                       label is None and probabilities["refuse"] < self.structure_refuse_max)


def embed(encoder, texts: list[str], batch: int = 256, cache: bool = True) -> np.ndarray:
    """Unit-norm mean-pooled token states (N, 384)."""
    out = []
    for start in range(0, len(texts), batch):
        tokens, mask = encoder.encode(texts[start:start + batch], max_tokens=READER_TOKENS, cache=cache)
        pooled = (tokens * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1)
        out.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
    return np.concatenate(out) if out else np.zeros((0, 384), np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def decide(p: np.ndarray, accept_min: float, refuse_min: float) -> str | None:
    """The most probable class when it is probable enough (refusals have their own bar), else None."""
    best = int(np.argmax(p))
    label = CLASSES[best]
    return label if p[best] >= (refuse_min if label == "refuse" else accept_min) else None


_default_lock = threading.Lock()
_default: list = []


def default_reader() -> InstructionReader | None:
    """The shipped reader, or None (with the reason logged once) when it or the sentence encoder is missing."""
    import logging

    from .forecasting.text import TextEncoderError

    with _default_lock:
        if not _default:
            try:
                _default.append(InstructionReader.load())
            except (ReaderError, TextEncoderError, OSError, KeyError, ValueError) as err:
                logging.getLogger(__name__).warning("no instruction reader (%s): the lexicon alone reads verbs", err)
                _default.append(None)
        return _default[0]
