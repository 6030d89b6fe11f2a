"""Adapter for the released MolmoMotion-4B checkpoints (allenai/molmo-motion, Apache-2.0).

The released model is a ~4B vision-language model that writes the future of exactly 8 query points as
``<tracks>`` text (see :mod:`.ar_text`). It needs a GPU (about 40 s per forecast and 110 s to load on an
A100), so the ROS layer must treat it as request -> asynchronous result.

This module splits the adapter into pure functions that run and are tested without the weights, and
a thin :class:`MolmoMotion4BForecaster` that imports ``molmo_motion``, torch and PIL lazily, only when it
is built:

* :func:`prepare_inputs`: validate a :class:`ForecastRequest` and derive what the model reads (frames,
  2D points in pixels and as 0-1000 integers, 3D history as integer-mm deltas from the anchor).
* :func:`build_prompt`: the text prompt of the release's processor, for logging and checking.
* :func:`parse_output`: the model's text -> :class:`Forecast` (camera and world frames, visibility in meta).

What matches the public repository, and what could not be checked (no weights were run here):

* Prompt text, label strings, timestamps written ``"{t:.1f}"``, 1-based point ids, the anchor (point 0
  at t0) and mm quantisation follow the release's ``MolmoMotionProcessor`` and training dataset. The
  released recipes (``trajectory_3d_human_p8_h3_f30`` / ``_h1_f32``) use neither 2D point features nor 2D
  coordinates in the prompt: the 2D points reach the model only as ``points_2d_at_t0`` pixels passed to
  the processor. ``build_prompt(include_2d_coords=True)`` adds the ``2d point coordinates`` field of the
  ``_2dcoord`` training variant (x/W, y/H scaled to integers 0-1000), which no released checkpoint uses.
* Not verified: the chat template and the image/video tokens the processor wraps around the prompt
  (``predict`` therefore lets the release's processor build the real model input; our prompt goes to
  ``Forecast.meta["prompt"]``), whether the 2D normalisation divides by W or W-1, and the exact files a
  downloaded checkpoint directory holds beyond the ``config.yaml`` that ``from_pretrained`` reads.
"""

from __future__ import annotations

import importlib
import logging
import time
from pathlib import Path

import numpy as np

from molmomotion_ros.camera import transform_points
from molmomotion_ros.forecasting.ar_text import LABEL_HISTORY, parse_tracks, write_tracks
from molmomotion_ros.forecasting.types import (
    POINTS_PER_GROUP,
    TRACK_HZ,
    BackendUnavailableError,
    Forecast,
    ForecastInputError,
    ForecastRequest,
)

logger = logging.getLogger(__name__)

BACKEND_NAME = "molmomotion4b"
DEFAULT_MODEL_ID = "allenai/MolmoMotion-4B-H3-F30"
INSTALL_HINT = "pip install git+https://github.com/allenai/molmo-motion.git"
WEIGHTS_HINT = "hf download allenai/MolmoMotion-4B-H3-F30 --local-dir WEIGHTS_DIR (or -H1-F32 for history=1)"
DTYPES = ("bfloat16", "float16", "float32")
COORD_2D_SCALE = 1000  # 2D points in prompts are integers 0..1000
LABEL_2D_COORD = "2d object point"


def prepare_inputs(request: ForecastRequest, history: int | None = None) -> dict:
    """Validate ``request`` and derive the model's inputs.

    Returns a dict with:

    * ``frames_rgb`` (H, h, w, 3) uint8, oldest first; ``image_size_wh`` (w, h).
    * ``points_2d_px`` (8, 2) float pixels at t0; ``points_2d_norm`` (8, 2) int64, ``u/w`` and ``v/h``
      scaled to 0..1000 and clipped.
    * ``points_3d_history_cam_m`` (H, 8, 3): the history with each non-finite entry replaced by the same
      point's next later finite one (the release serialises every entry); ``history_visible`` (H, 8) marks
      the entries that were finite.
    * ``anchor_cam_m`` (3,): point 0 at t0; ``history_delta_mm`` (H, 8, 3) int64 deltas from it.
    * ``action`` (str), ``H``, ``F``, ``P``.

    Raises :class:`ForecastInputError` for a wrong shape or dtype, P != 8 (the released model takes exactly
    8 points; grouping is the interface's job), an H other than ``history``, or a point not finite at t0.
    """
    frames = np.asarray(request.history_rgb)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ForecastInputError(f"history_rgb must be (H, h, w, 3) uint8, got {frames.shape} {frames.dtype}")
    num_frames, height, width = frames.shape[:3]
    if history is not None and num_frames != history:
        raise ForecastInputError(f"this model takes {history} history frames, the request has {num_frames}")
    history_cam = _float_array(request.points_3d_history_cam_m, "points_3d_history_cam_m")
    if history_cam.ndim != 3 or history_cam.shape[0] != num_frames or history_cam.shape[2] != 3:
        raise ForecastInputError(
            f"points_3d_history_cam_m must be ({num_frames}, P, 3) to match history_rgb, got {history_cam.shape}"
        )
    num_points = history_cam.shape[1]
    if num_points != POINTS_PER_GROUP:
        raise ForecastInputError(
            f"MolmoMotion-4B takes exactly {POINTS_PER_GROUP} query points, got {num_points}; group them first"
        )
    points_2d = _float_array(request.points_2d, "points_2d")
    if points_2d.shape != (num_points, 2) or not np.all(np.isfinite(points_2d)):
        raise ForecastInputError(f"points_2d must be finite ({num_points}, 2) pixels, got shape {points_2d.shape}")
    if not isinstance(request.instruction, str):
        raise ForecastInputError(f"instruction must be a string, got {type(request.instruction).__name__}")
    horizon = request.horizon
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ForecastInputError(f"horizon must be a positive integer, got {horizon!r}")

    visible = np.all(np.isfinite(history_cam), axis=-1)  # (H, P)
    missing_t0 = np.flatnonzero(~visible[-1])
    if missing_t0.size:
        raise ForecastInputError(f"query points {missing_t0.tolist()} have no finite 3D position at t0")
    filled = history_cam.copy()
    for h in range(num_frames - 2, -1, -1):  # back-fill from t0 towards the oldest frame
        filled[h, ~visible[h]] = filled[h + 1, ~visible[h]]
    anchor = filled[-1, 0].copy()

    scale = np.array([width, height], dtype=float)
    points_2d_norm = np.clip(np.rint(points_2d / scale * COORD_2D_SCALE), 0, COORD_2D_SCALE).astype(np.int64)
    return {
        "frames_rgb": frames,
        "image_size_wh": (int(width), int(height)),
        "points_2d_px": points_2d,
        "points_2d_norm": points_2d_norm,  # (P, 2)
        "points_3d_history_cam_m": filled,  # (H, P, 3)
        "history_visible": visible,  # (H, P)
        "anchor_cam_m": anchor,  # (3,)
        "history_delta_mm": np.rint((filled - anchor) * 1000.0).astype(np.int64),  # (H, P, 3)
        "action": request.instruction.strip(),
        "H": int(num_frames),
        "F": int(horizon),
        "P": int(num_points),
    }


def build_prompt(inputs: dict, *, include_2d_coords: bool = False) -> str:
    """The release processor's text prompt for ``inputs`` from :func:`prepare_inputs`.

    ``Predict the future 3D point coordinates of 8 points over F timestamps, given action: "...", and
    history 3d point coordinates: "<tracks coords="0.0 1 dx dy dz ...;...">3d object history</tracks>".``
    The history block holds every (filled) entry, as the release's processor writes it.
    """
    num_frames, num_points = inputs["H"], inputs["P"]
    history_tracks = write_tracks(
        np.transpose(inputs["points_3d_history_cam_m"], (1, 0, 2)),  # (H, P, 3) -> (P, H, 3)
        inputs["anchor_cam_m"],
        first_t=0,
        label=LABEL_HISTORY,
    )
    fields = [f'given action: "{inputs["action"]}"']
    if include_2d_coords:
        groups = " ".join(f"{p + 1} {x} {y}" for p, (x, y) in enumerate(inputs["points_2d_norm"].tolist()))
        points_block = f'<points coords="{float(num_frames - 1):.1f} {groups}">{LABEL_2D_COORD}</points>'
        fields.append(f'2d point coordinates: "{points_block}"')
    fields.append(f'history 3d point coordinates: "{history_tracks}"')
    fields[-1] = f"and {fields[-1]}"
    return f"Predict the future 3D point coordinates of {num_points} points over {inputs['F']} timestamps, " + (
        ", ".join(fields) + "."
    )


def parse_output(text: str, request: ForecastRequest, *, model_id: str = "", meta: dict | None = None) -> Forecast:
    """The model's ``<tracks>`` answer for ``request`` -> a K=1 :class:`Forecast` with score 0.0.

    Deltas are relative to point 0 at t0; the first future timestamp is H. Steps a point is missing
    from hold its last visible value (its t0 position before the first one); ``meta["visible"]`` (8, F)
    records which steps the model wrote. Timestamps past the horizon are dropped and counted in
    ``meta["dropped_beyond_horizon"]``. Raises :class:`~.ar_text.TracksFormatError` for malformed text.
    """
    history_cam = _float_array(request.points_3d_history_cam_m, "points_3d_history_cam_m")
    if history_cam.ndim != 3 or history_cam.shape[1:] != (POINTS_PER_GROUP, 3):
        raise ForecastInputError(f"points_3d_history_cam_m must be (H, {POINTS_PER_GROUP}, 3), got {history_cam.shape}")
    points_t0 = history_cam[-1]  # (P, 3)
    if not np.all(np.isfinite(points_t0)):
        raise ForecastInputError("every query point needs a finite 3D position at t0")
    T_world_cam = _check_transform(request.T_world_cam)
    horizon = int(request.horizon)
    parsed = parse_tracks(
        text,
        points_t0[0],
        num_points=POINTS_PER_GROUP,
        horizon=horizon,
        first_t=history_cam.shape[0],
        fill="hold",
        initial_cam_m=points_t0,
        strict_horizon=False,
    )
    points_cam = parsed.points_cam_m[None]  # (1, P, F, 3)
    out_meta = {
        "visible": parsed.visible,  # (P, F) steps the model wrote
        "label": parsed.label,
        "raw_text": text,
        "dropped_beyond_horizon": parsed.dropped_beyond_horizon,
        "fill": "hold",
    }
    out_meta.update(meta or {})
    return Forecast(
        points_cam_m=points_cam,
        points_world_m=transform_points(T_world_cam, points_cam),
        timestamps_s=(np.arange(horizon) + 1) / TRACK_HZ,  # (F,)
        scores=np.zeros(1),
        backend=BACKEND_NAME,
        model_id=model_id,
        meta=out_meta,
    )


def world_to_cam(points_world_m: np.ndarray, T_world_cam: np.ndarray) -> np.ndarray:
    """World-frame points (..., 3) -> the camera frame at t0, MolmoMotion's frame."""
    T = _check_transform(T_world_cam)
    R, t = T[:3, :3], T[:3, 3]
    return (np.asarray(points_world_m, dtype=float) - t) @ R


def cam_to_world(points_cam_m: np.ndarray, T_world_cam: np.ndarray) -> np.ndarray:
    """Camera-frame points (..., 3) at t0 -> the world frame."""
    return transform_points(_check_transform(T_world_cam), points_cam_m)


class MolmoMotion4BForecaster:
    """The released MolmoMotion-4B behind the forecasting interface: ``predict(request) -> Forecast``.

    ``weights_dir`` is a local checkpoint directory (``hf download allenai/MolmoMotion-4B-H3-F30
    --local-dir ...``; it holds the ``config.yaml`` that the release's ``from_pretrained`` reads).
    ``history`` must match the checkpoint (3 for -H3-F30, 1 for -H1-F32). ``max_new_tokens=None`` keeps
    the release's budget (160 tokens per future frame). Raises :class:`BackendUnavailableError` when the
    ``molmo_motion`` package, the weights or the device are missing.
    """

    backend = BACKEND_NAME

    def __init__(
        self,
        weights_dir: str | Path,
        device: str = "cuda",
        history: int = 3,
        dtype: str = "bfloat16",
        max_new_tokens: int | None = None,
        model_id: str = DEFAULT_MODEL_ID,
    ) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        if history not in (1, 3):
            raise ValueError(f"the released checkpoints take history 1 or 3, got {history}")
        if max_new_tokens is not None and max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be positive or None, got {max_new_tokens}")
        self.weights_dir = Path(weights_dir)
        self.device = device
        self.history = history
        self.dtype = dtype
        self.max_new_tokens = max_new_tokens
        self.model_id = model_id
        self._torch, self._processor, self._model = _load_release(self.weights_dir, device, dtype)
        model_history = getattr(getattr(self._processor, "config", None), "history_size", history)
        if model_history != history:
            raise ValueError(f"the weights in {self.weights_dir} take {model_history} history frames, not {history}")

    def predict(self, request: ForecastRequest) -> Forecast:
        """One greedy forecast (K=1) for 8 points. Slow: tens of seconds on a GPU."""
        if self._model is None:
            raise BackendUnavailableError("MolmoMotion4BForecaster was closed; build a new one")
        from PIL import Image

        torch = self._torch
        inputs = prepare_inputs(request, history=self.history)
        batch = self._processor(
            history_frames=[Image.fromarray(frame) for frame in inputs["frames_rgb"]],
            points_2d_at_t0=torch.from_numpy(inputs["points_2d_px"].astype(np.float32)),  # (P, 2)
            points_3d_history=torch.from_numpy(inputs["points_3d_history_cam_m"].astype(np.float32)),  # (H, P, 3)
            action=inputs["action"],
            future_horizon=inputs["F"],
        )
        batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        if self.max_new_tokens is not None:
            batch["max_new_tokens"] = self.max_new_tokens
        device_type = torch.device(self.device).type
        autocast = torch.autocast(device_type, dtype=getattr(torch, self.dtype), enabled=self.dtype != "float32")
        start = time.monotonic()
        with torch.inference_mode(), autocast:
            out = self._model.predict_trajectory(**batch)
        elapsed = time.monotonic() - start
        logger.info("MolmoMotion-4B forecast took %.1f s", elapsed)
        meta = {
            "prompt": build_prompt(inputs),
            "inference_s": elapsed,
            "history_visible": inputs["history_visible"],
            "requested_samples": int(request.num_samples),
        }
        return parse_output(out.future_text, request, model_id=self.model_id, meta=meta)

    def close(self) -> None:
        """Drop the model and free its GPU memory."""
        self._model = None
        self._processor = None
        if self._torch is not None and self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()


def _load_release(weights_dir: Path, device: str, dtype: str):
    """Import the release lazily and load processor + model; every failure is a BackendUnavailableError."""
    problems = []
    if not (weights_dir / "config.yaml").is_file():
        where = "does not exist" if not weights_dir.is_dir() else "has no config.yaml"
        problems.append(f"weights dir {weights_dir} {where} (get them with: {WEIGHTS_HINT})")
    try:
        release = importlib.import_module("molmo_motion")
    except ImportError as err:
        release = None
        problems.append(f"the molmo_motion package cannot be imported ({err}); install it with: {INSTALL_HINT}")
    if problems:
        raise BackendUnavailableError("MolmoMotion-4B unavailable: " + "; ".join(problems))
    try:
        import torch
    except ImportError as err:
        raise BackendUnavailableError(f"MolmoMotion-4B needs torch ({err})") from None
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(f"MolmoMotion-4B was asked for device {device!r} but CUDA is not available")
    try:
        processor = release.MolmoMotionProcessor.from_pretrained(str(weights_dir))
        model = release.MolmoMotion.from_pretrained(str(weights_dir))
        # as the release's quick start does: cast and move the wrapped network
        model._internal = model._internal.to(device=device, dtype=getattr(torch, dtype))
    except (OSError, ValueError, KeyError, RuntimeError, AttributeError) as err:
        raise BackendUnavailableError(f"cannot load MolmoMotion-4B from {weights_dir}: {err}") from None
    return torch, processor, model


def _float_array(value, name: str) -> np.ndarray:
    array = np.asarray(value)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ForecastInputError(f"{name} must be numeric, got dtype {array.dtype}")
    return array.astype(float)


def _check_transform(T_world_cam) -> np.ndarray:
    T = _float_array(T_world_cam, "T_world_cam")
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise ForecastInputError(f"T_world_cam must be a finite 4x4 matrix, got shape {T.shape}")
    R = T[:3, :3]
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-5) or not np.allclose(T[3], [0, 0, 0, 1]):
        raise ForecastInputError("T_world_cam must be a rigid transform (orthonormal rotation, last row 0 0 0 1)")
    return T
