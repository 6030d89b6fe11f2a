"""Agents the harness can evaluate. An agent sees observations and the instruction and returns actions.

Register new agents in ``AGENTS`` (name → factory); the CLI and evaluation build them by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol

from .actions import Action
from .world import Observation

if TYPE_CHECKING:
    from .tasks.base import Task


class Agent(Protocol):
    name: str
    model_id: str  # checkpoint or version identifier written with every result row
    needs_observation: bool  # False skips rendering (privileged agents)

    def reset(self, task: "Task") -> None: ...

    def act(self, observation: Observation | None, instruction: str) -> Action | None: ...


class OracleAgent:
    """The task's scripted expert: privileged state → the next primitive action."""

    name = "oracle"
    model_id = "scripted-oracle-v2"
    needs_observation = False

    def __init__(self) -> None:
        self._task: Task | None = None

    def reset(self, task: "Task") -> None:
        self._task = task

    def act(self, observation: Observation | None, instruction: str) -> Action | None:
        if self._task is None:
            raise RuntimeError("OracleAgent.act called before reset(task)")
        return self._task.oracle_action()


def _planner(forecaster: str) -> Callable[..., Agent]:
    def make(**kwargs) -> Agent:
        from .planner_agent import PlannerAgent  # loads models and planners: only when asked for

        return PlannerAgent(forecaster=forecaster, **kwargs)

    return make


def _policy(**kwargs) -> Agent:
    from molmomotion_policies.agent import make_policy_agent  # torch and a checkpoint: only when asked for

    return make_policy_agent(**kwargs)


AGENTS: dict[str, Callable[..., Agent]] = {
    "policy": _policy,  # goal-conditioned BC policy: --agent-arg checkpoint=policies/checkpoints/A.pt
    "oracle": OracleAgent,
    # The forecast-driven planner agent with each forecaster; planner-oracle uses the true future.
    **{f"planner-{name}": _planner(name) for name in ("fm", "ar", "stationary", "oracle")},
}


def make_agent(name: str, **kwargs) -> Agent:
    if name not in AGENTS:
        raise KeyError(f"unknown agent {name!r}; choose from {', '.join(sorted(AGENTS))}")
    return AGENTS[name](**kwargs)
