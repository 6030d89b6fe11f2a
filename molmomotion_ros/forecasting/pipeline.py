"""Frame + instruction → query points → forecast → target goal pose: the whole forecasting step.

The forecaster node, the planner agent and notebooks all run this one pipeline, so a forecast
published on a topic is exactly what the harness evaluates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..camera import PinholeCamera
from ..geometry import FitError, object_motion_from_tracks
from .grounding import QueryPoints, clean_depth, select_query_points
from .interface import make_forecaster
from .types import Forecast, ForecastInputError

NEURAL_BACKENDS = ("fm", "ar")
# Euler steps of the FM sampler here: on 160 test episodes (K=8) 6 steps give minADE 1.85 cm, FDE 2.26 cm,
# 82.6% of points within threshold vs 1.83 / 2.26 / 82.7% for 10, at 12 instead of 20 ms on a CPU core.
PIPELINE_FM_STEPS = 6
GROUNDING_ENCODERS = ("forecaster", "base")


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
    ``grounding`` chooses the query-point method (encoder | open3d); ``grounding_encoder`` whose
    heat-maps it reads (unless ``grounding_model`` hands it one): ``forecaster`` (a neural backend's own
    grounding head, trained with it, so one encoder pass serves grounding and forecast; other backends
    fall back to base) or ``base``. On 200
    test episodes both put >= 6 of 8 points on the target in 98.5% (bench/bench_grounding.py).
    """

    def __init__(self, backend: str = "fm", device: str = "auto", num_samples: int = 8, horizon: int = 32,
                 grounding: str = "encoder", num_points: int = 8, seed: int = 0, checkpoint=None,
                 grounding_encoder: str = "forecaster", fm_steps: int = PIPELINE_FM_STEPS, grounding_model=None):
        if grounding_encoder not in GROUNDING_ENCODERS:
            raise ValueError(f"unknown grounding_encoder {grounding_encoder!r}; "
                             f"choose {' or '.join(GROUNDING_ENCODERS)}")
        kwargs = {}
        if backend in NEURAL_BACKENDS:
            kwargs = {"device": device, "seed": seed}
            if backend == "fm":
                kwargs["steps"] = fm_steps
            if checkpoint:
                kwargs["checkpoint"] = checkpoint
        elif backend == "molmomotion4b":  # checkpoint = the release's weights folder
            kwargs = {"weights_dir": checkpoint, **({} if device == "auto" else {"device": device})}
        self.forecaster = make_forecaster(backend, **kwargs)
        self.backend = backend
        self.device = device
        self.num_samples = num_samples if backend == "fm" else 1
        self.horizon = horizon
        self.grounding = grounding
        self.num_points = num_points
        self.seed = seed
        self.grounding_encoder = grounding_encoder if backend in NEURAL_BACKENDS else "base"
        self._grounding_model = grounding_model  # a GroundingModel of the caller's (e.g. another checkpoint's)

    @property
    def grounding_model(self):
        if self._grounding_model is None:
            from .predictor import GroundingModel

            if self.grounding_encoder == "forecaster":
                self._grounding_model = GroundingModel.sharing(self.forecaster.backend)
            else:
                self._grounding_model = GroundingModel(device=self.device)
        return self._grounding_model

    def run(self, rgb: np.ndarray, depth_m: np.ndarray, camera: PinholeCamera, instruction: str,
            points_2d: np.ndarray | None = None, noise_key: int = 0) -> PipelineResult:
        """One forecast from the frame at t0. ``camera`` carries K and T_world_cam (optical frame); ``noise_key``
        (the frame's stamp in ns, say) picks the sampling noise with the seed.

        Raises ForecastInputError (bad frame or instruction), GroundingError (target not found).
        """
        query = None
        # One canonical copy of the inputs, so grounding and forecast hit the same cached encoding.
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8) if isinstance(rgb, np.ndarray) else rgb
        depth_m = clean_depth(depth_m) if isinstance(depth_m, np.ndarray) else depth_m
        instruction = " ".join(instruction.split()) if isinstance(instruction, str) else instruction
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
                                           num_samples=self.num_samples, noise_key=noise_key)
        T = camera.T_world_cam
        points_world = points_cam @ T[:3, :3].T + T[:3, 3]
        try:
            motion = target_motion(points_world, forecast.best_world_m)
        except FitError:
            motion = None
        return PipelineResult(query, points_2d, points_world.astype(np.float32), forecast, motion)
