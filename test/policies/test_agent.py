"""The closed-loop agent in the real harness: it observes, predicts chunks, moves the arm within its budget."""

import numpy as np
import pytest

from molmomotion_policies.agent import AgentConfig, PolicyAgent, make_policy_agent
from molmomotion_policies.observation import PolicyError
from molmomotion_ros.robot import TABLE_TOP_Z_M
from molmomotion_sim.episode import run_episode
from molmomotion_sim.tasks import TASKS
from molmomotion_sim.world import World


@pytest.mark.parametrize("variant", ["A", "C"])
def test_short_episode_in_the_harness(tiny_checkpoints, variant):
    agent = PolicyAgent(tiny_checkpoints[variant], AgentConfig(max_samples=12, execute_steps=4))
    with World() as world:
        task = TASKS["push"](world)
        start = None
        result = run_episode(task, 110_000, agent)
        start = world.ee_pose()[:3]
    assert agent.samples_used == 12
    assert result.agent == f"policy-{variant}" and "step10" in result.model_id
    assert result.success or "budget of 12 samples" in result.failure_reason
    assert start[2] > TABLE_TOP_Z_M
    assert np.isfinite(start).all()


def test_safety_clamp_limits_steps_and_height(tiny_checkpoints):
    agent = PolicyAgent(tiny_checkpoints["A"], AgentConfig(max_step_m=0.02))
    previous = np.array([0.5, 0.0, 0.8])
    target = agent._safe_setpoint(previous, np.array([0.5, 0.0, 0.0]))
    assert np.linalg.norm(target - previous) <= 0.02 + 1e-9
    far = agent._safe_setpoint(np.array([0.5, 0.0, TABLE_TOP_Z_M]), np.array([0.5, 0.0, 0.0]))
    assert far[2] >= TABLE_TOP_Z_M + agent.config.min_height_m


def test_factory_needs_a_checkpoint():
    with pytest.raises(PolicyError, match="checkpoint"):
        make_policy_agent()


def test_the_instruction_parser_refuses_before_the_arm_moves(monkeypatch):
    """instruction_parser=true: a refusal ends the episode with its reason; an accepted instruction reaches the
    policy loop in its template phrasing."""
    agent = make_policy_agent("A", instruction_parser=True)
    given = []
    monkeypatch.setattr(agent, "run", lambda world, obs, instruction: given.append(instruction) or "")

    class Task:  # what act reads of a task: its world and vocabulary
        world = None
        vocabulary = None

    agent.reset(Task())
    assert agent.act(None, "put the red cube and the blue duck in the bowl") is None and not given
    assert agent.last_failure.startswith("several_objects: ")
    agent.reset(Task())
    assert agent.act(None, "um, nudge the red cube to the left") is not None
    assert given == ["push the red cube to the left"]
