"""An episode's ground-truth future motion: the target object's 15 fps pose trace under the task's oracle.

A forecast made from any frame before the arm moves (the scene is at rest from the reset until the first
motion) is scored against this trace, whatever query points it chose: a point ``x`` on the target at t0 moves
as ``p(t) + R(t) R(0)ᵀ (x - p(0))`` (rigid object). It is the same trace ``generate-data`` cuts a dataset
sample from (sim/recording.py), so a score on a recording and ``eval-forecast`` on a dataset of the same seeds
measure the same motion.

The oracle runs in a World of its own (a second PyBullet client), so the caller's scene is untouched; the
same (family, seed, options) build the same scene there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .episode import run_episode
from .recording import FirstFrameOracle, FrameRecordingWorld
from .tasks import TASKS
from .tasks.base import SceneError, TaskOptions
from .world import TRACE_HZ


@dataclass(frozen=True)
class GroundTruth:
    """The target's world pose at every trace sample from t0 (the scene at rest) to the oracle's end."""

    family: str
    seed: int
    target_name: str
    times_s: np.ndarray  # (T,) from t0, 1/15 s apart
    target_poses: np.ndarray  # (T, 7) world position (3) + quaternion xyzw (4)
    oracle_success: bool  # a failed oracle's trace is still its motion, but worth knowing

    @property
    def rate_hz(self) -> int:
        return TRACE_HZ


class GroundTruthOracle:
    """Runs the oracle for (family, seed) in its own World, reused across episodes."""

    def __init__(self):
        self._world: FrameRecordingWorld | None = None

    def trace(self, family: str, seed: int, options: TaskOptions) -> GroundTruth:
        """Raises SceneError when the scene cannot be built, KeyError for an unknown family."""
        if family not in TASKS:
            raise KeyError(f"unknown family {family!r}")
        if self._world is None:
            self._world = FrameRecordingWorld()
        task = TASKS[family](self._world, options)
        agent = FirstFrameOracle(self._world, frames_every=0)
        result = run_episode(task, seed, agent)
        trace = list(self._world.trace)
        if not trace:
            raise SceneError(f"{family} seed {seed}: the oracle left no trace")
        target = task.target
        times = np.array([s.time_s - trace[0].time_s for s in trace], dtype=np.float64)
        poses = np.stack([s.object_poses[target.body_id] for s in trace]).astype(np.float64)
        return GroundTruth(family, int(seed), target.name, times, poses, bool(result.success))

    def close(self) -> None:
        if self._world is not None:
            self._world.close()
            self._world = None
