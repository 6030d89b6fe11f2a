"""Agents the harness can evaluate. An agent sees observations and the instruction and returns actions.

Agents are named in ``AGENTS`` by import path (:mod:`molmomotion_ros.plugins`), so the harness imports
no agent's module, and none of the layers above it (the policies), until that agent is built. Other
packages add agents through the entry-point group ``molmomotion_sim.agents``.
"""

from __future__ import annotations

from typing import Any, Protocol

from molmomotion_ros.plugins import load_object, with_entry_points

from .actions import Action
from .tasks.base import OracleAgent, Task
from .world import Observation

__all__ = ["AGENTS", "Agent", "OracleAgent", "make_agent"]


class Agent(Protocol):
    name: str
    model_id: str  # checkpoint or version identifier written with every result row
    needs_observation: bool  # False skips rendering (privileged agents)

    def reset(self, task: Task) -> None: ...

    def act(self, observation: Observation | None, instruction: str) -> Action | None: ...


# name → (factory's import path, keyword arguments it is given before the caller's)
AGENTS: dict[str, tuple[str, dict[str, Any]]] = {
    **{name: (path, {}) for name, path in with_entry_points({}, group="molmomotion_sim.agents").items()},
    "oracle": ("molmomotion_sim.tasks.base:OracleAgent", {}),
    # goal-conditioned BC policy: --agent-arg checkpoint=A (a shipped name or a path)
    "policy": ("molmomotion_policies.agent:make_policy_agent", {}),
    # The forecast-driven planner agent with each forecaster; planner-oracle uses the true future.
    **{f"planner-{name}": ("molmomotion_sim.planner_agent:PlannerAgent", {"forecaster": name})
       for name in ("fm", "ar", "stationary", "oracle")},
}


def make_agent(name: str, **kwargs) -> Agent:
    if name not in AGENTS:
        raise KeyError(f"unknown agent {name!r}; choose from {', '.join(sorted(AGENTS))}")
    path, defaults = AGENTS[name]
    return load_object(path)(**{**defaults, **kwargs})
