"""The forecast-driven planner agent in the harness: real PyBullet, real OMPL, the shipped models."""

import pytest

from molmomotion_sim.agents import AGENTS, make_agent
from molmomotion_sim.episode import run_episode
from molmomotion_sim.tasks import TASKS
from molmomotion_sim.world import World


@pytest.fixture(scope="module")
def world():
    w = World()
    yield w
    w.close()


def test_planner_agents_are_registered():
    assert {"planner-fm", "planner-ar", "planner-stationary", "planner-oracle"} <= set(AGENTS)


@pytest.mark.parametrize("family", sorted(TASKS))
def test_planner_with_the_true_future_succeeds(world, family):
    agent = make_agent("planner-oracle")
    result = run_episode(TASKS[family](world), 110_000, agent)
    assert result.success, result.failure_reason
    plan = agent.last_plan
    assert plan is not None and any(s.trajectory is not None for s in plan.steps)


def test_planner_with_the_fm_forecast_places_in_a_container(world):
    agent = make_agent("planner-fm")
    result = run_episode(TASKS["place-in-container"](world), 110_001, agent)
    assert result.success, result.failure_reason
    assert result.model_id == agent.model_id and agent.model_id


def test_a_stationary_forecast_asks_for_nothing_and_the_reason_is_recorded(world):
    agent = make_agent("planner-stationary")
    result = run_episode(TASKS["push"](world), 110_002, agent)
    assert not result.success
    assert "nothing to do" in result.failure_reason and result.steps == 0
