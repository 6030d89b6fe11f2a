"""The closed-loop policy agent: observe → predict an action chunk → execute it through IK → repeat.

The harness gives an agent at most ``task.max_steps`` (3) actions per episode, built for primitives;
a closed-loop policy needs dozens of observations. So the agent's first ``act`` runs the whole loop
on the world of the task it was reset with, seeing only what a camera-and-encoder robot sees
(rendered RGB-D frames, the grasp-target pose from forward kinematics, gripper width), and returns
an empty MotionSequence; the harness then settles the scene and judges success as for any agent.

The loop is :func:`molmomotion_policies.runner.run_policy_loop`, the one the ROS policy node runs: each
chunk step is one 15 fps sample, the grasp target's set-point (current pose + predicted offset, clamped
to the workspace, the table and a per-sample step limit) goes through the planner's IK to the arm's
position controllers, held for 16 physics steps, as the oracle's demonstrations were recorded.

``instruction_parser=True`` (``--agent-arg instruction_parser=true``) reads the instruction with
:mod:`molmomotion_ros.language` first, as the planner agent can: a refusal ends the episode with its reason before
the arm moves; an accepted instruction reaches the policy and its forecast in the template phrasing they were
trained on.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from molmomotion_ros.language import Refusal, instruction_for_model
from molmomotion_ros.planning.kinematics import PandaKinematics
from molmomotion_sim.actions import MotionSequence
from molmomotion_sim.world import Observation, World

from .controller import AgentConfig, PolicyController, pack_forecast, shipped_policy
from .observation import PHYSICS_STEPS_PER_SAMPLE, PolicyError
from .runner import Frame, run_policy_loop

log = logging.getLogger(__name__)

__all__ = ["AgentConfig", "PolicyAgent", "make_policy_agent"]


class PolicyAgent:
    """A trained policy checkpoint as a harness agent (``needs_observation``: rendered frames)."""

    needs_observation = True

    def __init__(self, checkpoint: str | Path, config: AgentConfig | None = None, seed: int = 0,
                 instruction_parser: bool = False):
        torch.set_num_threads(1)
        self.controller, meta = PolicyController.from_checkpoint(checkpoint, config)
        self.policy = self.controller.policy
        self.config = self.controller.config
        self.name = f"policy-{self.policy.cfg.variant}"
        self.model_id = f"{Path(checkpoint).name}@{meta.get('code_revision', 'unknown')}:step{meta.get('step', '?')}"
        self._pipeline = None
        if self.controller.needs_forecast:
            from molmomotion_ros.forecasting.pipeline import ForecastPipeline

            from .model import forecaster_checkpoint

            self._pipeline = ForecastPipeline("fm", device="cpu", num_samples=8, seed=seed,
                                              checkpoint=forecaster_checkpoint(self.policy.cfg),
                                              fm_steps=self.config.forecast_fm_steps)
        self._kinematics = PandaKinematics()
        self._task = None
        self._ran = False
        self.instruction_parser = bool(instruction_parser)
        self.last_failure = ""

    @property
    def samples_used(self) -> int:
        return self.controller.samples_used

    def reset(self, task) -> None:
        self._task = task
        self._ran = False
        self.last_failure = ""
        self.controller.reset("")

    def act(self, observation: Observation | None, instruction: str) -> MotionSequence | None:
        if self._task is None:
            raise RuntimeError("PolicyAgent.act called before reset(task)")
        if self._ran:
            return None  # the loop already ran; last_failure says how it ended
        self._ran = True
        if self.instruction_parser:
            understood = instruction_for_model(instruction, self._task.vocabulary)
            if isinstance(understood, Refusal):
                self.last_failure = str(understood)
                return None
            instruction = understood
        self.last_failure = self.run(self._task.world, observation, instruction)
        return MotionSequence((), label="policy closed loop")

    def run(self, world: World, observation: Observation | None, instruction: str) -> str:
        """The closed loop on ``world``; returns why it stopped (empty when the policy went idle after a release)."""
        first = observation or world.render()
        self.controller.reset(instruction, self._forecast(first, instruction))
        robot = HarnessRobot(world)
        report = run_policy_loop(self.controller, robot, self._kinematics, robot.frame(first))
        return report.reason

    def _safe_setpoint(self, previous_m, wanted_m):
        return self.controller.safe_setpoint(previous_m, wanted_m)

    def _forecast(self, observation: Observation, instruction: str) -> dict | None:
        if self._pipeline is None:
            return None
        from .demos import forecast_at_t0

        return pack_forecast(*forecast_at_t0(self._pipeline, observation, instruction))


class HarnessRobot:
    """A :class:`~molmomotion_policies.runner.PolicyRobot` over a harness world: set-points go to the arm's
    position controllers and the world is stepped 16 physics steps per 15 fps sample."""

    def __init__(self, world: World):
        self.world = world

    def frame(self, observation: Observation) -> Frame:
        return Frame(observation.rgb, observation.depth_m, observation.camera)

    def joints(self) -> tuple[np.ndarray, np.ndarray]:
        q = self.world.joint_positions()
        return q[:7], q[7:9]

    def command_gripper(self, closed: bool) -> None:
        self.world.command_gripper(closed)

    def follow(self, joint_targets_rad: np.ndarray) -> None:
        for q in joint_targets_rad:
            self.world.hold_arm(q)
            self.world.step(PHYSICS_STEPS_PER_SAMPLE)

    def observe(self) -> Frame:
        return self.frame(self.world.render())


def make_policy_agent(checkpoint: str | Path | None = None, instruction_parser: bool = False,
                      **config) -> PolicyAgent:
    """Factory for ``molmomotion_sim.agents.AGENTS`` (``--agent-arg checkpoint=...``, ``instruction_parser=true``,
    AgentConfig fields; ``checkpoint`` is a path or the name of a shipped one: A, B, C)."""
    if checkpoint is None:
        raise PolicyError("the policy agent needs checkpoint=PATH (or a shipped name: A, B, C)")
    return PolicyAgent(shipped_policy(str(checkpoint)), AgentConfig(**config), instruction_parser=instruction_parser)
