"""One episode: reset a task from its seed, let an agent act, judge success."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from .actions import GripperCommand, JointMotion, MotionSequence, PickPlace, Push
from .agents import Agent
from .control import JointTrajectoryFollower, TrajectoryError
from .tasks.base import Task
from .world import MotionError, World


@dataclass
class EpisodeResult:
    seed: int
    family: str
    instruction: str
    success: bool
    failure_reason: str
    steps: int  # actions executed
    sim_time_s: float
    wall_time_s: float
    agent: str
    model_id: str
    bag: str | None = None  # the episode's bag folder when it was recorded (sim-eval --record)

    def to_dict(self) -> dict:
        """The fields as a results file holds them; ``bag`` only for a recorded episode (unrecorded runs' files
        stay as they were)."""
        fields = asdict(self)
        if fields["bag"] is None:
            del fields["bag"]
        return fields


def execute(world: World, action) -> None:
    """Carry out one action in the world (raises MotionError when it cannot)."""
    if isinstance(action, PickPlace):
        world.pick_and_place(action.pick_m, action.pick_yaw_rad, action.place_m, action.place_yaw_rad)
    elif isinstance(action, Push):
        world.push(action.start_m, action.end_m)
    elif isinstance(action, MotionSequence):
        for step in action.steps:
            if isinstance(step, JointMotion):
                try:
                    follower = JointTrajectoryFollower(step.times_s, step.positions_rad)
                except TrajectoryError as err:
                    raise MotionError(f"bad joint trajectory: {err}") from err
                world.follow_joint_trajectory(follower)
            elif isinstance(step, GripperCommand):
                world.set_gripper(step.closed, opening_m=step.opening_m)
            else:
                raise TypeError(f"the harness cannot execute a {type(step).__name__} step")
    else:
        raise TypeError(f"the harness cannot execute {type(action).__name__}")


def run_episode(task: Task, seed: int, agent: Agent, max_steps: int | None = None) -> EpisodeResult:
    start = time.perf_counter()
    task.reset(seed)
    agent.reset(task)
    steps, reason = 0, ""
    for _ in range(max_steps or task.max_steps):
        observation = task.world.render() if agent.needs_observation else None
        action = agent.act(observation, task.instruction)
        if action is None:
            reason = getattr(agent, "last_failure", "")  # why an agent gave up, when it says
            break
        try:
            execute(task.world, action)
        except MotionError as err:
            reason = f"motion failed: {err}"
            break
        steps += 1
        task.world.settle(max_steps=240)
        if task.success().success:
            break
    outcome = task.success()
    if not outcome.success and not reason:
        reason = outcome.reason or "goal not reached"
    return EpisodeResult(
        seed=seed, family=task.family, instruction=task.instruction, success=outcome.success,
        failure_reason="" if outcome.success else reason, steps=steps, sim_time_s=task.world.time_s,
        wall_time_s=time.perf_counter() - start, agent=agent.name, model_id=agent.model_id,
    )
