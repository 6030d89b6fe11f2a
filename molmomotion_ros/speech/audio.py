"""Audio in the one layout the recogniser takes: 16 kHz mono int16 PCM, as a 1-D numpy array.

WAV files of other rates, widths and channel counts are converted here (channels averaged,
polyphase resampling), so every caller hands the decoder the same thing; anything unreadable or
unsupported raises :class:`SpeechInputError` with the reason instead of reaching pocketsphinx.
"""

from __future__ import annotations

import wave
from math import gcd
from pathlib import Path

import numpy as np

SAMPLE_RATE_HZ = 16000  # the en-us acoustic model's rate; the `audio` topic is fixed to it
INT16_FULL_SCALE = 32768.0


class SpeechInputError(ValueError):
    """Audio that cannot be recognised as given: missing/unreadable/unsupported file or bad samples."""


def read_wav(path: str | Path, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Integer-PCM WAV file → (N,) int16 mono at ``sample_rate_hz``."""
    path = Path(path)
    if not path.is_file():
        raise SpeechInputError(f"{path}: no such file")
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as err:
        # wave raises "unknown format: 3" for float WAVs and "file does not start with RIFF id" for non-WAVs.
        raise SpeechInputError(f"{path}: not a readable integer-PCM WAV file ({err})") from err
    except OSError as err:
        raise SpeechInputError(f"{path}: cannot read ({err})") from err
    if channels < 1 or rate <= 0:
        raise SpeechInputError(f"{path}: bad header ({channels} channels, {rate} Hz)")
    samples = _decode_pcm(raw, width, path)
    if samples.size == 0:
        raise SpeechInputError(f"{path}: holds no audio samples")
    frames = samples[: samples.size - samples.size % channels].reshape(-1, channels)  # (N, channels)
    mono = frames.mean(axis=1)  # float, int16 full scale
    return to_int16(resample(mono, rate, sample_rate_hz))


def _decode_pcm(raw: bytes, width: int, path: Path) -> np.ndarray:
    """Interleaved PCM bytes → float64 samples scaled to int16 full scale."""
    if width == 1:  # 8-bit WAV is unsigned
        return (np.frombuffer(raw, np.uint8).astype(np.float64) - 128.0) * 256.0
    if width == 2:
        return np.frombuffer(raw, "<i2").astype(np.float64)
    if width == 3:
        b = np.frombuffer(raw[: len(raw) - len(raw) % 3], np.uint8).reshape(-1, 3).astype(np.int32)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        return value.astype(np.float64) / 256.0
    if width == 4:
        return np.frombuffer(raw, "<i4").astype(np.float64) / 65536.0
    raise SpeechInputError(f"{path}: unsupported sample width {width} bytes")


def resample(samples: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Polyphase resampling (scipy), float in → float out; a no-op at equal rates."""
    if from_hz == to_hz:
        return np.asarray(samples, dtype=np.float64)
    from scipy.signal import resample_poly

    g = gcd(int(from_hz), int(to_hz))
    return resample_poly(np.asarray(samples, dtype=np.float64), int(to_hz) // g, int(from_hz) // g)


def to_int16(samples: np.ndarray) -> np.ndarray:
    return np.clip(np.round(samples), -32768, 32767).astype(np.int16)


def as_pcm16(samples, what: str = "audio") -> np.ndarray:
    """Validate a PCM chunk: a 1-D integer array (or sequence) within int16 → (N,) int16."""
    array = np.asarray(samples)
    if array.ndim != 1:
        raise SpeechInputError(f"{what}: expected a 1-D array of samples, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise SpeechInputError(f"{what}: expected integer int16 samples, got {array.dtype}")
    if array.size and (array.min() < -32768 or array.max() > 32767):
        raise SpeechInputError(f"{what}: samples outside the int16 range")
    return array.astype(np.int16, copy=False)


def frame_dbfs(pcm: np.ndarray, frame_samples: int) -> np.ndarray:
    """RMS level of each whole frame in dB relative to int16 full scale: (N // frame_samples,)."""
    n = pcm.size // frame_samples
    frames = pcm[: n * frame_samples].astype(np.float64).reshape(n, frame_samples)  # (n, frame_samples)
    rms = np.sqrt(np.mean(frames**2, axis=1)) / INT16_FULL_SCALE
    return 20.0 * np.log10(np.maximum(rms, 1e-10))
