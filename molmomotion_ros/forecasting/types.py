"""The forecasting interface's data types: what goes in, what comes out, what is refused."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TRACK_HZ = 15.0  # MolmoMotion's track rate
POINTS_PER_GROUP = 8  # MolmoMotion's P


class ForecastInputError(ValueError):
    """An input to ``predict`` has the wrong shape, dtype, range or content; the message says which."""


class BackendUnavailableError(RuntimeError):
    """A selected backend cannot run here (package, weights or device missing)."""


@dataclass(frozen=True)
class ForecastRequest:
    """Everything a forecaster sees, validated (see :func:`validate_request`).

    Shapes: H history frames (oldest first, the last one is t0), P query points.
    """

    history_rgb: np.ndarray  # (H, h, w, 3) uint8
    history_depth_m: np.ndarray  # (H, h, w) float32 metres, NaN or 0 = no return
    K: np.ndarray  # (3, 3) intrinsics
    T_world_cam: np.ndarray  # (4, 4) camera (optical) → world at t0
    points_2d: np.ndarray  # (P, 2) float pixels (u, v) at t0
    points_3d_history_cam_m: np.ndarray  # (H, P, 3) camera frame at t0
    instruction: str
    horizon: int = 32  # F
    num_samples: int = 1  # K
    # With the backend's seed, picks the sampling noise. The forecaster node passes the frame's stamp (ns), so
    # every frame gets its own noise and a replayed recording gets the very same forecasts.
    noise_key: int = 0

    @property
    def points_cam_m(self) -> np.ndarray:
        """Query points at t0, camera frame (P, 3)."""
        return self.points_3d_history_cam_m[-1]


@dataclass(frozen=True)
class Forecast:
    """K hypotheses of the future of P points over F steps, best first.

    ``points_cam_m`` is in the camera frame at t0 (MolmoMotion's output frame) and ``points_world_m``
    in the world frame. ``timestamps_s[f]`` is the time of step f after t0.
    """

    points_cam_m: np.ndarray  # (K, P, F, 3)
    points_world_m: np.ndarray  # (K, P, F, 3)
    timestamps_s: np.ndarray  # (F,)
    scores: np.ndarray  # (K,) higher = more likely; sorted descending
    backend: str
    model_id: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def best_world_m(self) -> np.ndarray:
        """The top hypothesis, world frame (P, F, 3)."""
        return self.points_world_m[0]

    @property
    def num_samples(self) -> int:
        return int(self.points_cam_m.shape[0])

    @property
    def horizon(self) -> int:
        return int(self.points_cam_m.shape[2])
