"""Reference forecasters: no motion, and constant velocity from the history."""

from __future__ import annotations

import numpy as np

from .interface import ForecasterBackend
from .types import TRACK_HZ, ForecastRequest


class StationaryBackend(ForecasterBackend):
    """Every point stays where it is at t0 (the floor any motion model must beat)."""

    name = "stationary"
    model_id = "stationary"
    group_size = None

    def __init__(self, stride: int = 2):
        self.step_s = stride / TRACK_HZ

    def forecast_cam(self, request: ForecastRequest):
        points = np.repeat(request.points_cam_m[None, :, None], request.horizon, 2)  # (1, P, F, 3)
        return np.repeat(points, request.num_samples, 0), np.zeros(request.num_samples)


class ConstantVelocityBackend(ForecasterBackend):
    """Each point keeps its last observed velocity (needs H >= 2; with H = 1 it is the stationary forecast)."""

    name = "constant-velocity"
    model_id = "constant-velocity"
    group_size = None

    def __init__(self, stride: int = 2):
        self.stride = stride
        self.step_s = stride / TRACK_HZ

    def forecast_cam(self, request: ForecastRequest):
        history = request.points_3d_history_cam_m  # (H, P, 3), frames 1/15 s apart
        if len(history) >= 2 and np.all(np.isfinite(history[-2:])):
            velocity_per_frame = history[-1] - history[-2]
        else:
            velocity_per_frame = np.zeros_like(history[-1])
        steps = np.arange(1, request.horizon + 1) * self.stride  # frames after t0
        points = history[-1][:, None] + steps[None, :, None] * velocity_per_frame[:, None]  # (P, F, 3)
        return np.repeat(points[None], request.num_samples, 0), np.zeros(request.num_samples)
