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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from molmomotion_sim.actions import MotionSequence
from molmomotion_sim.world import TABLE_TOP_Z_M, WORKSPACE_X_M, WORKSPACE_Y_M, Observation, World

from .model import GoalConditionedPolicy
from .observation import (
    PHYSICS_STEPS_PER_SAMPLE,
    PolicyError,
    ee_pixel_model,
    frame_inputs,
    proprioception,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentConfig:
    max_samples: int = 150  # 15 fps samples per episode (10 s; the oracle's demonstrations take 3.3–4.7 s)
    execute_steps: int = 4  # of each chunk before observing again
    max_step_m: float = 0.05  # per sample (0.75 m/s): the safety clamp on a set-point's jump
    workspace_margin_m: float = 0.06  # set-points may leave the task workspace by this much
    min_height_m: float = 0.008  # above the table top, for the grasp target
    max_height_m: float = 0.45
    idle_motion_m: float = 0.01  # a chunk moving less than this (gripper open, after a release) is idle
    idle_chunks: int = 2  # consecutive idle chunks after a release end the episode


class PolicyAgent:
    """A trained policy checkpoint as a harness agent (``needs_observation``: rendered frames)."""

    needs_observation = True

    def __init__(self, checkpoint: str | Path, config: AgentConfig | None = None, seed: int = 0):
        torch.set_num_threads(1)
        self.policy, meta = GoalConditionedPolicy.from_checkpoint(checkpoint)
        self.config = config or AgentConfig()
        self.name = f"policy-{self.policy.cfg.variant}"
        self.model_id = f"{Path(checkpoint).name}@{meta.get('code_revision', 'unknown')}:step{meta.get('step', '?')}"
        self._pipeline = None
        if self.policy.cfg.forecast_conditioning:
            from molmomotion_ros.forecasting.pipeline import ForecastPipeline

            self._pipeline = ForecastPipeline("fm", device="cpu", num_samples=8, seed=seed)
        from molmomotion_ros.forecasting.text import default_text_encoder

        self._text = default_text_encoder()
        self._task = None
        self._ran = False
        self.last_failure = ""
        self.samples_used = 0
        self._encoding_t0 = None

    def reset(self, task) -> None:
        self._task = task
        self._ran = False
        self.last_failure = ""
        self.samples_used = 0
        self._encoding_t0 = None

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
        cfg = self.config
        forecast = self._forecast(observation or world.render(), instruction)
        closed, released, idle = False, False, 0
        while self.samples_used < cfg.max_samples:
            obs = observation if observation is not None and self.samples_used == 0 else world.render()
            pos_m, yaw_rad, closed_cmd = self.predict(obs, instruction, world, closed, forecast)
            start, start_yaw = world.ee_pose()[:3], world.ee_yaw()
            setpoint = start.copy()
            for j in range(min(cfg.execute_steps, len(pos_m), cfg.max_samples - self.samples_used)):
                setpoint = self._safe_setpoint(setpoint, start + pos_m[j])
                world.hold_arm(world.solve_ik(setpoint, start_yaw + float(yaw_rad[j])))
                if bool(closed_cmd[j]) != closed:
                    closed = bool(closed_cmd[j])
                    released = released or not closed
                    world.command_gripper(closed)
                world.step(PHYSICS_STEPS_PER_SAMPLE)
                self.samples_used += 1
            moving = float(np.abs(pos_m[: cfg.execute_steps]).max())
            idle = idle + 1 if (released and not closed and moving < cfg.idle_motion_m) else 0
            if idle >= cfg.idle_chunks:
                return ""
        return f"policy used its budget of {cfg.max_samples} samples"

    @torch.no_grad()
    def predict(self, obs: Observation, instruction: str, world: World, closed: bool, forecast: dict | None):
        """One chunk: position offsets (C, 3) m, yaw offsets (C,) rad, gripper closed (C,) bool."""
        ee = world.ee_pose()
        rgb, xyz = frame_inputs(obs.rgb, obs.depth_m, obs.camera.K)
        tokens, mask = self._text.encode([instruction])
        encoding = self.policy.encode(
            torch.from_numpy(rgb)[None], torch.from_numpy(xyz)[None], torch.from_numpy(tokens),
            torch.from_numpy(mask), torch.from_numpy(obs.camera.T_world_cam)[None].float(),
            torch.from_numpy(ee_pixel_model(ee[:3], obs.camera))[None],
        )
        proprio = proprioception(ee[:3], world.ee_yaw(), world.gripper_width_m(), closed, self.samples_used)[None]
        if self._encoding_t0 is None:
            self._encoding_t0 = encoding
        chunk = self.policy(encoding, torch.from_numpy(proprio), self._encoding_t0, **(forecast or {}))
        return chunk.pos_m[0].numpy(), chunk.yaw_rad[0].numpy(), (chunk.gripper_logits[0] > 0).numpy()

    def _forecast(self, observation: Observation, instruction: str) -> dict | None:
        if self._pipeline is None:
            return None
        from .demos import forecast_at_t0

        points, points_t0, valid = forecast_at_t0(self._pipeline, observation, instruction)
        return {"forecast_world_m": torch.from_numpy(points)[None],
                "forecast_points_t0_world_m": torch.from_numpy(points_t0)[None],
                "forecast_valid": torch.tensor([valid])}

    def _safe_setpoint(self, previous_m: np.ndarray, wanted_m: np.ndarray) -> np.ndarray:
        """Clamp a set-point to the step limit, the (widened) workspace and the height band over the table."""
        cfg = self.config
        step = wanted_m - previous_m
        norm = float(np.linalg.norm(step))
        if norm > cfg.max_step_m:
            step *= cfg.max_step_m / norm
        target = previous_m + step
        m = cfg.workspace_margin_m
        target[0] = np.clip(target[0], WORKSPACE_X_M[0] - m, WORKSPACE_X_M[1] + m)
        target[1] = np.clip(target[1], WORKSPACE_Y_M[0] - m, WORKSPACE_Y_M[1] + m)
        target[2] = np.clip(target[2], TABLE_TOP_Z_M + cfg.min_height_m, TABLE_TOP_Z_M + cfg.max_height_m)
        return target


def make_policy_agent(checkpoint: str | Path | None = None, **config) -> PolicyAgent:
    """Factory for ``molmomotion_sim.agents.AGENTS`` (``--agent-arg checkpoint=...``, AgentConfig fields)."""
    if checkpoint is None:
        raise PolicyError("the policy agent needs checkpoint=PATH")
    return PolicyAgent(checkpoint, AgentConfig(**config))
