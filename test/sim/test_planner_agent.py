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


def test_the_instruction_parser_refuses_or_forecasts_the_template_phrasing(monkeypatch):
    """instruction_parser=True: a refusal ends the episode with its reason; an accepted instruction reaches the
    forecast in its template phrasing (no physics needed: _act is where the forecast starts)."""
    agent = make_agent("planner-oracle", instruction_parser=True)
    given = []
    monkeypatch.setattr(agent, "_act", lambda obs, instruction: given.append(instruction) or "motion")
    observation = object()
    assert agent.act(observation, "throw the red cube") is None and not given
    assert agent.last_failure.startswith("unsupported_action: 'throw the red cube' refused: ")
    assert agent.act(observation, "could you nudge the red cube to the left, please") == "motion"
    assert given == ["push the red cube to the left"] == [agent.understood_as]
    plain = make_agent("planner-oracle")  # off by default: the instruction goes through untouched
    monkeypatch.setattr(plain, "_act", lambda obs, instruction: given.append(instruction) or "motion")
    plain.act(observation, "throw the red cube")
    assert given[-1] == "throw the red cube"
