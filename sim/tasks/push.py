"""push/slide the {colour} {object} {direction}, without grasping it."""

from __future__ import annotations

import numpy as np

from molmomotion_ros.robot import TABLE_TOP_Z_M

from ..actions import Push as PushAction
from .base import Outcome, SceneBuilder, SceneError, Task, in_workspace

PUSH_DISTANCE_M = 0.10  # the instruction's implied travel
TRAVEL_RANGE_M = (0.06, 0.16)  # accepted travel along the direction
ACROSS_TOL_M = 0.04  # accepted sideways drift
LIFT_TOL_M = 0.01  # the object must never rise more than this (it is pushed, not carried)
PUSHER_HEIGHT_M = 0.015  # grasp-target height above the table while pushing
PUSHER_GAP_M = 0.035  # start this far behind the object's near face


class Push(Task):
    """Success: the target travelled TRAVEL_RANGE along the direction with at most ACROSS_TOL of
    sideways drift, never rose by more than LIFT_TOL (never grasped), and is at rest, released."""

    family = "push"
    max_steps = 2

    def _build(self, scene: SceneBuilder) -> None:
        rng = scene.rng
        kinds = self._kinds({k for k, v in self.vocabulary.objects.items() if v.get("pushable")})
        if not kinds:
            raise SceneError("the suite's objects include nothing pushable")
        directions = list(self.vocabulary.directions)
        self._direction_name = directions[int(rng.integers(len(directions)))]
        direction = self.vocabulary.directions[self._direction_name]
        colour, kind = self._choose_target(rng, kinds)
        # The swept corridor (behind the start to beyond the goal) must be free and reachable.
        for _ in range(50):
            xy = scene.free_xy(margin_m=0.06)
            corridor = [xy + direction * s for s in np.linspace(-0.1, PUSH_DISTANCE_M + 0.05, 6)]
            if all(in_workspace(c, 0.02) for c in corridor) and all(scene.is_free(c, 0.06) for c in corridor):
                break
        else:
            raise SceneError("no free corridor to push along")
        self._target = scene.place(kind, colour, xy=xy)
        for c in corridor:
            scene.reserve(c, 0.05)
        self._add_distractors(scene, {(colour, kind)})

    def reset(self, seed: int) -> None:
        super().reset(seed)
        self._start_center = self.world.object_center(self._target)

    @property
    def goal_center_m(self) -> np.ndarray:
        return self._start_center + np.r_[self.vocabulary.directions[self._direction_name] * PUSH_DISTANCE_M, 0.0]

    def _phrase_fields(self) -> dict[str, str]:
        return {"colour": self._target.colour, "object": self._target.kind, "direction": self._direction_name}

    def success(self) -> Outcome:
        direction = self.vocabulary.directions[self._direction_name]
        delta = (self.world.object_center(self._target) - self._start_center)[:2]
        along = float(delta @ direction)
        across = float(abs(delta @ np.array([-direction[1], direction[0]])))
        body = self._target.body_id
        heights = [s.object_poses[body][2] for s in self.world.trace if body in s.object_poses]
        start_z = heights[0] if heights else self.world.object_pose(self._target)[0][2]
        if max(heights, default=start_z) - start_z > LIFT_TOL_M:
            return Outcome(False, f"the {self._target.name} was lifted, not pushed")
        if not (TRAVEL_RANGE_M[0] <= along <= TRAVEL_RANGE_M[1]) or across > ACROSS_TOL_M:
            return Outcome(False, f"the {self._target.name} moved {along:.3f} m {self._direction_name} "
                           f"and {across:.3f} m sideways")
        return self.released_and_resting(self._target) or Outcome(True)

    def oracle_action(self) -> PushAction | None:
        if self.success().success:
            return None
        direction = np.r_[self.vocabulary.directions[self._direction_name], 0.0]
        center = self.world.object_center(self._target)
        # Half the object's extent along the push line, from its yaw-rotated box.
        yaw = self.world.object_yaw(self._target)
        local_dir = np.array([np.cos(yaw) * direction[0] + np.sin(yaw) * direction[1],
                              -np.sin(yaw) * direction[0] + np.cos(yaw) * direction[1]])
        half_along = float(np.abs(local_dir) @ self._target.half_extents_m[:2])
        z = TABLE_TOP_Z_M + PUSHER_HEIGHT_M
        start = center - direction * (half_along + PUSHER_GAP_M)
        remaining = PUSH_DISTANCE_M - float((center - self._start_center)[:2] @ direction[:2])
        end = center + direction * (remaining - half_along)
        start[2] = end[2] = z
        return PushAction(start, end)
