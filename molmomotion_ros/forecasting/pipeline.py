"""Frame + instruction → query points → forecast → target goal pose: the whole forecasting step.

The forecaster node, the planner agent and notebooks all run this one pipeline, so a forecast
published on a topic is exactly what the harness evaluates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..camera import PinholeCamera
from ..planning.geometry import FitError, object_motion_from_tracks
from .grounding import QueryPoints, select_query_points
from .interface import make_forecaster
from .types import Forecast, ForecastInputError

NEURAL_BACKENDS = ("fm", "ar")


@dataclass(frozen=True)
class TargetMotion:
    """The target's rigid motion implied by a forecast hypothesis (world frame)."""

    motions_world: np.ndarray  # (F, 4, 4): T such that T · p(t0) = p(step f), world frame
    residuals_m: np.ndarray  # (F,) RMS misfit of the rigid model per step
    start_centroid_world_m: np.ndarray  # (3,) centroid of the query points at t0
    goal_pose_world: np.ndarray  # (4, 4) pose of the target at the last step (rotation of the fit, centroid)


@dataclass(frozen=True)
class PipelineResult:
    query: QueryPoints | None  # None when the caller supplied the query points
    points_2d: np.ndarray  # (P, 2) pixels at t0
    points_world_t0_m: np.ndarray  # (P, 3)
    forecast: Forecast
    target_motion: TargetMotion | None  # None when the rigid fit failed (e.g. collinear points)


def target_motion(points_world_t0_m: np.ndarray, tracks_world_m: np.ndarray) -> TargetMotion:
    """Rigid-fit the tracks (P, F, 3) to the t0 points; raises FitError on degenerate points."""
    motions, residuals = object_motion_from_tracks(points_world_t0_m, tracks_world_m)
    centroid = np.nanmean(points_world_t0_m, 0)
    goal = np.eye(4)
    goal[:3, :3] = motions[-1][:3, :3]
    goal[:3, 3] = motions[-1][:3, :3] @ centroid + motions[-1][:3, 3]
    return TargetMotion(motions, residuals, centroid, goal)


class ForecastPipeline:
    """Ground the instruction's target, pick P query points on it, forecast their futures.

    ``backend`` is any registered forecaster (fm, ar, stationary, constant-velocity, molmomotion4b);
    ``grounding`` chooses the query-point method (encoder | open3d).
    """

    def __init__(self, backend: str = "fm", device: str = "auto", num_samples: int = 8, horizon: int = 32,
                 grounding: str = "encoder", num_points: int = 8, seed: int = 0, checkpoint=None):
        kwargs = {}
        if backend in NEURAL_BACKENDS:
            kwargs = {"device": device, "seed": seed}
            if checkpoint:
                kwargs["checkpoint"] = checkpoint
        self.forecaster = make_forecaster(backend, **kwargs)
        self.backend = backend
        self.device = device
        self.num_samples = num_samples if backend == "fm" else 1
        self.horizon = horizon
        self.grounding = grounding
        self.num_points = num_points
        self.seed = seed
        self._grounding_model = None

    @property
    def grounding_model(self):
        if self._grounding_model is None:
            from .predictor import GroundingModel

            self._grounding_model = GroundingModel(device=self.device)
        return self._grounding_model

    def run(self, rgb: np.ndarray, depth_m: np.ndarray, camera: PinholeCamera, instruction: str,
            points_2d: np.ndarray | None = None) -> PipelineResult:
        """One forecast from the frame at t0. ``camera`` carries K and T_world_cam (optical frame).

        Raises ForecastInputError (bad frame or instruction), GroundingError (target not found).
        """
        query = None
        if points_2d is None:
            query = select_query_points(rgb, depth_m, camera.K, instruction, method=self.grounding,
                                        num_points=self.num_points, grounding=self.grounding_model, seed=self.seed)
            points_2d, points_cam = query.points_2d, query.points_cam_m
        else:
            points_2d = np.asarray(points_2d, dtype=np.float32)
            h, w = depth_m.shape
            u = np.clip(np.round(points_2d[:, 0]).astype(int), 0, w - 1)
            v = np.clip(np.round(points_2d[:, 1]).astype(int), 0, h - 1)
            points_cam = camera.deproject(points_2d, depth_m[v, u]).astype(np.float32)
            if not np.all(np.isfinite(points_cam)):
                raise ForecastInputError("some query points have no depth (NaN or 0 at their pixels)")
        forecast = self.forecaster.predict(rgb[None], depth_m[None], camera.K, camera.T_world_cam, points_2d,
                                           points_cam[None], instruction, horizon=self.horizon,
                                           num_samples=self.num_samples)
        T = camera.T_world_cam
        points_world = points_cam @ T[:3, :3].T + T[:3, 3]
        try:
            motion = target_motion(points_world, forecast.best_world_m)
        except FitError:
            motion = None
        return PipelineResult(query, points_2d, points_world.astype(np.float32), forecast, motion)
