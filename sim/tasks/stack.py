"""stack the {colour} {object} on the {colour} {object} (blocks and cubes)."""

from __future__ import annotations

import numpy as np

from ..actions import PickPlace
from ..world import SceneObject
from .base import Outcome, SceneBuilder, SceneError, Task

CENTRE_TOL_M = 0.025  # horizontal distance between the two centres
HEIGHT_TOL_M = 0.012  # gap between the target's bottom and the base's top


class Stack(Task):
    """Success: the target's centre lies within CENTRE_TOL of the base's centre horizontally, its
    bottom within HEIGHT_TOL of the base's top, both at rest, the target released."""

    family = "stack"

    def _stackable(self) -> list[str]:
        kinds = self._kinds({k for k, v in self.vocabulary.objects.items() if v.get("stackable")})
        if not kinds:
            raise SceneError("the suite's objects include nothing stackable")
        return kinds

    def _build(self, scene: SceneBuilder) -> None:
        rng = scene.rng
        kinds, colours = self._stackable(), self._colours()
        colour, kind = self._choose_target(rng, kinds)
        base = (colours[int(rng.integers(len(colours)))], kinds[int(rng.integers(len(kinds)))])
        if base == (colour, kind):
            raise SceneError("target and base would share a name")
        self._base = scene.place(base[1], base[0])
        self._target = scene.place(kind, colour)
        self._add_distractors(scene, {(colour, kind), base})

    @property
    def place_target(self) -> SceneObject:
        return self._base

    @property
    def goal_center_m(self) -> np.ndarray:
        goal = self.world.object_center(self._base)
        goal[2] = self.world.object_top_z(self._base) + self._target.half_extents_m[2]
        return goal

    def _phrase_fields(self) -> dict[str, str]:
        return {
            "colour": self._target.colour, "object": self._target.kind,
            "target_colour": self._base.colour, "target_object": self._base.kind,
        }

    def success(self) -> Outcome:
        delta = self.world.object_center(self._target) - self.world.object_center(self._base)
        if np.linalg.norm(delta[:2]) > CENTRE_TOL_M:
            return Outcome(False, f"the {self._target.name} is not above the {self._base.name} "
                           f"(off by {np.linalg.norm(delta[:2]):.3f} m)")
        gap = self.world.client.getAABB(self._target.body_id, -1)[0][2] - self.world.object_top_z(self._base)
        if abs(gap) > HEIGHT_TOL_M:
            return Outcome(False, f"the {self._target.name} does not rest on the {self._base.name} (gap {gap:.3f} m)")
        if not self.world.is_at_rest(self._base):
            return Outcome(False, f"the {self._base.name} is still moving")
        return self.released_and_resting(self._target) or Outcome(True)

    def oracle_action(self) -> PickPlace | None:
        if self.success().success:
            return None
        place = self.world.object_center(self._base)
        place[2] = self.release_height(self._target, self.world.object_top_z(self._base))
        # Align the target's edges with the base's so the faces meet flat.
        yaw = self.grasp_yaw(self._target)
        place_yaw = yaw + _edge_alignment(self.world.object_yaw(self._base) - self.world.object_yaw(self._target))
        return PickPlace(self.grasp_point(self._target), yaw, place, float(place_yaw))


def _edge_alignment(delta_yaw: float) -> float:
    """The smallest rotation that lines up two boxes' edges (a multiple of 90° away from delta)."""
    return float((delta_yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4)
