"""The forecast-driven planner agent: perceive → ground → forecast → derive grasp and goal → plan → act.

It sees what a camera-and-joint-encoder robot sees (the RGB-D observation and the joint positions)
and runs the same code as the ROS graph: ``ForecastPipeline`` (the forecaster node's core) for the
forecast and ``ForecastManipulator`` (the manipulation node's core) for the target segmentation,
the grasp/goal and the planned motion sequence, with a point-cloud collision checker built from the
depth image. Its actions are timed joint trajectories and gripper commands, executed by the
harness's trajectory follower (as sim_node executes the manipulation node's JointTrajectory).

``forecaster="oracle"`` replaces the forecast by the ground truth (the oracle's future motion of the
true target, recorded in a saved-and-restored copy of the physics) and the segmentation by the true
one, so its success rate measures the planning alone.

``instruction_parser=True`` (``molmomotion sim-eval --agent-arg instruction_parser=true``) reads the instruction
with :mod:`molmomotion_ros.language`, as forecaster_node does by default: a refused instruction ends the episode
with ``<kind>: '<instruction>' refused: <why>`` as its failure reason, an accepted one is forecast from its
template phrasing. Off by default here so that results measured without it stay comparable.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from molmomotion_ros.forecasting.grounding import GroundingError
from molmomotion_ros.forecasting.pipeline import ForecastPipeline
from molmomotion_ros.forecasting.types import ForecastInputError
from molmomotion_ros.geometry import FitError, farthest_point_pixels
from molmomotion_ros.language import Refusal, instruction_for_model
from molmomotion_ros.planning.manipulator import ForecastManipulator
from molmomotion_ros.planning.planner import PlannerConfig
from molmomotion_ros.planning.skills import SkillError, SkillPlan

from .actions import GripperCommand, JointMotion, MotionSequence
from .episode import execute
from .world import MotionError, Observation

log = logging.getLogger(__name__)

STRIDE = 2  # forecast steps are every 2nd sample of the 15 fps clock (the shipped models' stride)
HORIZON = 32


def plan_to_action(plan: SkillPlan, label: str = "") -> MotionSequence:
    steps = []
    for step in plan.steps:
        if step.trajectory is not None:
            steps.append(JointMotion(step.trajectory.times_s, step.trajectory.positions_rad))
        else:
            steps.append(GripperCommand(step.gripper_closed, step.gripper_opening_m))
    return MotionSequence(tuple(steps), label)


class PlannerAgent:
    """Forecast-driven planner agent; ``forecaster`` is fm | ar | stationary | constant-velocity |
    molmomotion4b | oracle (ground-truth future)."""

    needs_observation = True

    def __init__(self, forecaster: str = "fm", num_samples: int = 8, device: str = "auto", seed: int = 0,
                 planner_config: PlannerConfig | None = None, instruction_parser: bool = False):
        self.forecaster = forecaster
        self.name = f"planner-{forecaster}"
        self.pipeline = None if forecaster == "oracle" else ForecastPipeline(forecaster, device=device,
                                                                             num_samples=num_samples, seed=seed)
        self.model_id = "ground-truth-future" if self.pipeline is None else self.pipeline.forecaster.backend.model_id
        self.manipulator = ForecastManipulator(planner_config)
        self.seed = seed
        self.instruction_parser = bool(instruction_parser)
        self.understood_as = ""  # the instruction as forecast (its template phrasing with instruction_parser)
        self.last_failure = ""
        self.last_plan: SkillPlan | None = None
        self.last_result = None  # the ForecastPipeline result the last action was planned from (None: no forecast)
        self._task = None

    def reset(self, task) -> None:
        self._task = task  # read only by the oracle forecast (privileged, for the planning-only baseline)
        self.last_failure = ""
        self.last_plan = None
        self.last_result = None

    def act(self, observation: Observation | None, instruction: str) -> MotionSequence | None:
        if observation is None:
            raise RuntimeError("PlannerAgent needs observations")
        self.last_result = None
        if self.instruction_parser:
            understood = instruction_for_model(instruction, getattr(self._task, "vocabulary", None))
            if isinstance(understood, Refusal):
                self.last_failure = str(understood)
                log.info("planner agent refuses the instruction: %s", self.last_failure)
                return None
            instruction = understood
        self.understood_as = instruction
        try:
            return self._act(observation, instruction)
        except (SkillError, GroundingError, ForecastInputError, FitError, MotionError) as err:
            self.last_failure = f"{type(err).__name__}: {err}"
            log.info("planner agent gives up: %s", self.last_failure)
            return None

    def _act(self, obs: Observation, instruction: str) -> MotionSequence:
        camera = obs.camera
        true_mask = None
        if self.pipeline is None:
            true_mask = obs.segmentation == self._task.target.body_id
            region = true_mask & np.isfinite(obs.depth_m)
            if not region.any():
                raise SkillError("the target is not visible")
            uv = farthest_point_pixels(region, 8, np.random.default_rng(self.seed))
            points_t0 = camera.cam_to_world(camera.deproject(uv, obs.depth_m[uv[:, 1], uv[:, 0]]))
            hypotheses = self._ground_truth_tracks(points_t0)[None]
        else:
            result = self.last_result = self.pipeline.run(obs.rgb, obs.depth_m, camera, instruction)
            points_t0 = result.points_world_t0_m.astype(float)
            hypotheses = result.forecast.points_world_m.astype(float)
        planned = self.manipulator.plan(obs.depth_m, camera, obs.joint_positions_rad[:7], points_t0, hypotheses,
                                        target_mask=true_mask)
        self.last_plan = planned.plan
        return plan_to_action(planned.plan, planned.skill.kind)

    def _ground_truth_tracks(self, points_t0: np.ndarray) -> np.ndarray:
        """Where the oracle would carry ``points_t0`` (P, 3): (P, F, 3) at the forecast's time steps."""
        task = self._task
        world = task.world
        client = world.client
        body = task.target.body_id
        action = task.oracle_action()
        if action is None:
            raise SkillError("the oracle has nothing to do")
        state = client.saveState()
        saved = (world.trace, world._step_count, world._gripper_closed, world.record)
        joints = world.joint_positions()
        world.trace, world.record = [], True
        try:
            pos0, quat0 = client.getBasePositionAndOrientation(body)
            execute(world, action)
            poses = [s.object_poses[body] for s in world.trace if body in s.object_poses]
        finally:
            client.restoreState(state)
            client.removeState(state)
            world.trace, world._step_count, world._gripper_closed, world.record = saved
            world.hold_arm(joints[:7])
            world.command_gripper(world._gripper_closed)
        if not poses:
            raise SkillError("the oracle's motion left no trace")
        R0 = np.array(client.getMatrixFromQuaternion(quat0)).reshape(3, 3)
        local = (points_t0 - np.asarray(pos0)) @ R0  # (P, 3) in the object's frame
        stride = max(STRIDE, math.ceil(len(poses) / HORIZON))
        idx = np.minimum(np.arange(1, HORIZON + 1) * stride, len(poses) - 1)
        tracks = []
        for i in idx:
            R = np.array(client.getMatrixFromQuaternion(poses[i][3:])).reshape(3, 3)
            tracks.append(local @ R.T + poses[i][:3])
        return np.stack(tracks, 1)  # (P, F, 3)
