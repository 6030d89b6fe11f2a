"""The closed-loop policy agent: observe → predict an action chunk → execute it through IK → repeat.

The harness gives an agent at most ``task.max_steps`` (3) actions per episode, built for primitives;
a closed-loop policy needs dozens of observations. So the agent's first ``act`` runs the whole loop
on the world of the task it was reset with, seeing only what a camera-and-encoder robot sees
(rendered RGB-D frames, the grasp-target pose from forward kinematics, gripper width), and returns
an empty MotionSequence; the harness then settles the scene and judges success as for any agent.

Each chunk step is one 15 fps sample: the grasp target's set-point (current pose + predicted offset,
clamped to the workspace, the table and a per-sample step limit) goes through the world's IK to the
arm's position controllers for 16 physics steps, as the oracle's demonstrations were recorded.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from molmomotion_sim.actions import MotionSequence
from molmomotion_sim.world import Observation, World

from .controller import AgentConfig, ArmState, PolicyController, pack_forecast, shipped_policy
from .observation import PHYSICS_STEPS_PER_SAMPLE, PolicyError

log = logging.getLogger(__name__)

__all__ = ["AgentConfig", "PolicyAgent", "make_policy_agent"]


class PolicyAgent:
    """A trained policy checkpoint as a harness agent (``needs_observation``: rendered frames)."""

    needs_observation = True

    def __init__(self, checkpoint: str | Path, config: AgentConfig | None = None, seed: int = 0):
        torch.set_num_threads(1)
        self.controller, meta = PolicyController.from_checkpoint(checkpoint, config)
        self.policy = self.controller.policy
        self.config = self.controller.config
        self.name = f"policy-{self.policy.cfg.variant}"
        self.model_id = f"{Path(checkpoint).name}@{meta.get('code_revision', 'unknown')}:step{meta.get('step', '?')}"
        self._pipeline = None
        if self.controller.needs_forecast:
            from molmomotion_ros.forecasting.pipeline import ForecastPipeline

            self._pipeline = ForecastPipeline("fm", device="cpu", num_samples=8, seed=seed)
        self._task = None
        self._ran = False
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
        self.last_failure = self.run(self._task.world, observation, instruction)
        return MotionSequence((), label="policy closed loop")

    def run(self, world: World, observation: Observation | None, instruction: str) -> str:
        """The closed loop on ``world``; returns why it stopped (empty when the policy went idle after a release)."""
        controller = self.controller
        first = observation or world.render()
        controller.reset(instruction, self._forecast(first, instruction))
        closed = False
        while not controller.finished:
            obs = first if controller.samples_used == 0 else world.render()
            state = ArmState(world.ee_pose()[:3], world.ee_yaw(), world.gripper_width_m())
            chunk = controller.next_chunk(obs.rgb, obs.depth_m, obs.camera, state)
            for setpoint, yaw, grip in zip(chunk.setpoints_m, chunk.yaw_rad, chunk.gripper_closed, strict=True):
                world.hold_arm(world.solve_ik(setpoint, float(yaw)))
                if bool(grip) != closed:
                    closed = bool(grip)
                    world.command_gripper(closed)
                world.step(PHYSICS_STEPS_PER_SAMPLE)
        return controller.reason

    def _safe_setpoint(self, previous_m, wanted_m):
        return self.controller.safe_setpoint(previous_m, wanted_m)

    def _forecast(self, observation: Observation, instruction: str) -> dict | None:
        if self._pipeline is None:
            return None
        from .demos import forecast_at_t0

        return pack_forecast(*forecast_at_t0(self._pipeline, observation, instruction))


def make_policy_agent(checkpoint: str | Path | None = None, **config) -> PolicyAgent:
    """Factory for ``molmomotion_sim.agents.AGENTS`` (``--agent-arg checkpoint=...``, AgentConfig fields;
    ``checkpoint`` is a path or the name of a shipped one: A, B, C)."""
    if checkpoint is None:
        raise PolicyError("the policy agent needs checkpoint=PATH (or a shipped name: A, B, C)")
    return PolicyAgent(shipped_policy(str(checkpoint)), AgentConfig(**config))
