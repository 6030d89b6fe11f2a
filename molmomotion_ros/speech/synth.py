"""Spoken test commands from espeak-ng + sox (for tests and the benchmark; no network, deterministic).

``espeak-ng`` writes 22.05 kHz WAV; ``sox`` converts it to 16 kHz mono 16-bit, the recogniser's input.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

VOICES = ("en-us", "en-us+f3")  # a male and a female variant of espeak-ng's US English
RATE_WPM = 140


class SynthesisError(RuntimeError):
    """espeak-ng or sox is missing or failed."""


def synthesize(text: str, path: str | Path, voice: str = "en-us", rate_wpm: int = RATE_WPM,
               sample_rate_hz: int = 16000, channels: int = 1) -> Path:
    """Speak ``text`` into a 16-bit WAV at ``path`` (``sample_rate_hz``, ``channels``); returns the path."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise SynthesisError(f"{tool} is not installed (apt-get install espeak-ng sox)")
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "espeak.wav"
        _run(["espeak-ng", "-v", voice, "-s", str(rate_wpm), "-w", str(raw), text])
        _run(["sox", str(raw), "-r", str(sample_rate_hz), "-c", str(channels), "-b", "16", str(path)])
    return path


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SynthesisError(f"{' '.join(cmd[:3])} ... failed ({done.returncode}): {done.stderr.strip()[:300]}")
