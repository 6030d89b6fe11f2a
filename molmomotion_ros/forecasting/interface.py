"""One ``predict`` for every backend: input validation, groups of 8 points, camera ↔ world, backend registry.

    forecaster = make_forecaster("fm")            # or "ar", "stationary", "constant-velocity", "molmomotion4b"
    forecast = forecaster.predict(history_rgb, history_depth, K, T_world_cam, points_2d, points_3d_history,
                                  "put the red block in the blue bowl", horizon=32, num_samples=8)
    forecast.points_world_m   # (K, P, F, 3)
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod

import numpy as np

from ..plugins import load_object, with_entry_points
from .types import POINTS_PER_GROUP, TRACK_HZ, BackendUnavailableError, Forecast, ForecastInputError, ForecastRequest

logger = logging.getLogger(__name__)
MAX_INSTRUCTION_CHARS = 500
MAX_HORIZON = 256
MAX_SAMPLES = 64


def validate_request(history_rgb, history_depth, intrinsics, extrinsics, points_2d, points_3d_history, instruction,
                     horizon: int = 32, num_samples: int = 1, noise_key: int = 0) -> ForecastRequest:
    """Check shapes, dtypes and content; returns a normalised request or raises ForecastInputError.

    Documented fallbacks (never silent: each is logged):
      * a query point whose t0 depth is NaN/zero while its given 3D point is finite keeps the 3D point;
      * a query point with a non-finite 3D position at t0 is refused (there is nothing to forecast from).
    """
    rgb = np.asarray(history_rgb)
    if rgb.ndim == 3:
        rgb = rgb[None]
    if rgb.ndim != 4 or rgb.shape[-1] != 3:
        raise ForecastInputError(f"history_rgb must be (H, h, w, 3), got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ForecastInputError(f"history_rgb must be uint8, got {rgb.dtype}")
    depth = np.asarray(history_depth)
    if depth.ndim == 2:
        depth = depth[None]
    if depth.ndim != 3 or depth.shape != rgb.shape[:3]:
        raise ForecastInputError(f"history_depth must be (H, h, w) matching rgb {rgb.shape[:3]}, got {depth.shape}")
    if not np.issubdtype(depth.dtype, np.floating):
        raise ForecastInputError(f"history_depth must be float metres, got {depth.dtype} (convert 16UC1 mm first)")
    K = np.asarray(intrinsics, dtype=float)
    if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ForecastInputError(f"intrinsics must be a finite 3x3 matrix with positive focal lengths, got {K.shape}")
    T = np.asarray(extrinsics, dtype=float)
    if T.shape != (4, 4) or not np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-4):
        raise ForecastInputError("extrinsics must be a 4x4 rigid transform T_world_cam")
    pts2 = np.asarray(points_2d, dtype=float)
    if pts2.ndim != 2 or pts2.shape[1] != 2 or len(pts2) == 0:
        raise ForecastInputError(f"points_2d must be (P, 2) with P >= 1, got {pts2.shape}")
    h, w = rgb.shape[1:3]
    outside = ~((pts2[:, 0] >= -0.5) & (pts2[:, 0] <= w - 0.5) & (pts2[:, 1] >= -0.5) & (pts2[:, 1] <= h - 0.5))
    if outside.any():
        raise ForecastInputError(f"query points {np.flatnonzero(outside).tolist()} lie outside the {w}x{h} image")
    pts3 = np.asarray(points_3d_history, dtype=float)
    if pts3.ndim == 2:
        pts3 = pts3[None]
    if pts3.shape != (rgb.shape[0], len(pts2), 3):
        raise ForecastInputError(f"points_3d_history must be (H={rgb.shape[0]}, P={len(pts2)}, 3), got {pts3.shape}")
    if not np.all(np.isfinite(pts3[-1])):
        bad = np.flatnonzero(~np.isfinite(pts3[-1]).all(1)).tolist()
        raise ForecastInputError(f"query points {bad} have no 3D position at t0 (NaN/zero depth there?)")
    if np.any(pts3[-1][:, 2] <= 0):
        raise ForecastInputError("query points must lie in front of the camera (z > 0 in the optical frame)")
    u = np.clip(np.round(pts2[:, 0]).astype(int), 0, w - 1)
    v = np.clip(np.round(pts2[:, 1]).astype(int), 0, h - 1)
    d = depth[-1][v, u]
    no_depth = ~(np.isfinite(d) & (d > 0))
    if no_depth.any():
        logger.warning("no depth at query points %s: using their given 3D positions", np.flatnonzero(no_depth).tolist())
    if not isinstance(instruction, str):
        raise ForecastInputError(f"instruction must be a string, got {type(instruction).__name__}")
    text = " ".join(instruction.split())
    if not text:
        raise ForecastInputError("the instruction is empty")
    if len(text) > MAX_INSTRUCTION_CHARS:
        raise ForecastInputError(f"the instruction has {len(text)} characters; at most {MAX_INSTRUCTION_CHARS}")
    if not re.search(r"[A-Za-z]{2,}", text) or sum(c.isascii() for c in text) < 0.8 * len(text):
        raise ForecastInputError(f"the instruction does not look like English text: {text[:60]!r}")
    if not (1 <= int(horizon) <= MAX_HORIZON):
        raise ForecastInputError(f"horizon must be in 1..{MAX_HORIZON}, got {horizon}")
    if not (1 <= int(num_samples) <= MAX_SAMPLES):
        raise ForecastInputError(f"num_samples must be in 1..{MAX_SAMPLES}, got {num_samples}")
    if not isinstance(noise_key, (int, np.integer)) or noise_key < 0:
        raise ForecastInputError(f"noise_key must be a non-negative integer (e.g. a stamp in ns), got {noise_key!r}")
    return ForecastRequest(rgb, depth.astype(np.float32), K, T, pts2.astype(np.float32), pts3.astype(np.float32),
                           text, int(horizon), int(num_samples), int(noise_key))


class ForecasterBackend(ABC):
    """A backend forecasts one group of P (normally 8) points; :class:`Forecaster` does the rest."""

    name: str = ""
    model_id: str = ""
    group_size: int | None = POINTS_PER_GROUP  # None: any P at once
    step_s: float = 1.0 / TRACK_HZ  # time between forecast steps

    @abstractmethod
    def forecast_cam(self, request: ForecastRequest) -> tuple[np.ndarray, np.ndarray]:
        """→ points (K, P, F, 3) in the camera frame at t0 and scores (K,)."""


class Forecaster:
    """The user-facing forecaster: validates, splits P into groups, converts frames, sorts hypotheses."""

    def __init__(self, backend: ForecasterBackend):
        self.backend = backend

    @property
    def name(self) -> str:
        return self.backend.name

    def predict(self, history_rgb, history_depth, intrinsics, extrinsics, points_2d, points_3d_history,
                instruction: str, horizon: int = 32, num_samples: int = 1, noise_key: int = 0) -> Forecast:
        request = validate_request(history_rgb, history_depth, intrinsics, extrinsics, points_2d, points_3d_history,
                                   instruction, horizon, num_samples, noise_key)
        return self.predict_request(request)

    def predict_request(self, request: ForecastRequest) -> Forecast:
        P = len(request.points_2d)
        group = self.backend.group_size or P
        # P not a multiple of 8: the last group is padded by repeating its points (documented fallback);
        # the padded outputs are dropped again below.
        chunks, scores = [], 0.0
        for start in range(0, P, group):
            index = np.arange(start, start + group)
            real = index < P
            index = np.where(real, index, start + (np.arange(group) % max(1, P - start)))
            sub = ForecastRequest(request.history_rgb, request.history_depth_m, request.K, request.T_world_cam,
                                  request.points_2d[index], request.points_3d_history_cam_m[:, index],
                                  request.instruction, request.horizon, request.num_samples, request.noise_key)
            points, s = self.backend.forecast_cam(sub)
            chunks.append(points[:, real])
            scores = scores + np.asarray(s, dtype=float)
        points_cam = np.concatenate(chunks, 1)  # (K, P, F, 3)
        order = np.argsort(-np.asarray(scores), kind="stable")
        points_cam = points_cam[order]
        T = request.T_world_cam
        points_world = points_cam @ T[:3, :3].T + T[:3, 3]
        timestamps = np.arange(1, request.horizon + 1) * self.backend.step_s
        return Forecast(points_cam.astype(np.float32), points_world.astype(np.float32), timestamps,
                        np.asarray(scores, dtype=float)[order], self.backend.name, self.backend.model_id,
                        {"groups": len(chunks), "padded_points": (-P) % group})


# --- registry ---------------------------------------------------------------------------------
# Backends by import path (molmomotion_ros.plugins): a backend's module, and with it torch or weights,
# loads only when that backend is built. Other packages add backends through the entry-point group
# ``molmomotion_ros.forecasters`` (name = "package.module:factory").
BACKENDS: dict[str, str] = with_entry_points({
    "stationary": "molmomotion_ros.forecasting.baselines:StationaryBackend",
    "constant-velocity": "molmomotion_ros.forecasting.baselines:ConstantVelocityBackend",
    "fm": "molmomotion_ros.forecasting.predictor:fm_backend",
    "ar": "molmomotion_ros.forecasting.predictor:ar_backend",
    "molmomotion4b": "molmomotion_ros.forecasting.predictor:molmomotion4b_backend",
}, group="molmomotion_ros.forecasters")


def make_forecaster(name: str, **kwargs) -> Forecaster:
    """Build a forecaster by backend name (``fm``, ``ar``, ``stationary``, ``constant-velocity``, ``molmomotion4b``)."""
    if name not in BACKENDS:
        raise BackendUnavailableError(f"unknown forecaster backend {name!r}; choose from {', '.join(sorted(BACKENDS))}")
    return Forecaster(load_object(BACKENDS[name])(**kwargs))
