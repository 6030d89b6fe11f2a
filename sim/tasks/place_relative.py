"""move the {colour} {object} to the left of / right of / in front of / behind the {colour} {object}."""

from __future__ import annotations

import numpy as np

from molmomotion_ros.robot import TABLE_TOP_Z_M

from ..actions import PickPlace
from ..world import SceneObject
from .base import Outcome, SceneBuilder, SceneError, Task, in_workspace

GOAL_OFFSET_M = 0.11  # centre-to-centre distance the oracle aims for along the relation
ALONG_RANGE_M = (0.06, 0.17)  # accepted distance along the relation's direction
ACROSS_TOL_M = 0.04  # accepted sideways deviation
ON_TABLE_TOL_M = 0.01  # the target must stand on the table, not on another object


class PlaceRelative(Task):
    """Success: seen from the robot, the target's centre lies ALONG_RANGE along the relation's
    direction from the reference object's centre and within ACROSS_TOL sideways, on the table,
    at rest and released."""

    family = "place-relative"

    def _build(self, scene: SceneBuilder) -> None:
        rng = scene.rng
        relations = list(self.vocabulary.relations)
        self._relation = relations[int(rng.integers(len(relations)))]
        direction = self.vocabulary.relations[self._relation]
        kinds = self._kinds()
        colours = self._colours()
        colour, kind = self._choose_target(rng, kinds)
        ref = (colours[int(rng.integers(len(colours)))], kinds[int(rng.integers(len(kinds)))])
        if ref == (colour, kind):
            raise SceneError("target and reference would share a name")
        # Reference first, where its goal slot fits in the workspace; keep the slot free.
        for _ in range(50):
            ref_xy = scene.free_xy()
            goal_xy = ref_xy + direction * GOAL_OFFSET_M
            if in_workspace(goal_xy, 0.05) and scene.is_free(goal_xy, 0.09):
                break
        else:
            raise SceneError("no room for the reference object and its goal")
        self._reference = scene.place(ref[1], ref[0], xy=ref_xy)
        scene.reserve(goal_xy, 0.05)
        self._target = scene.place(kind, colour)
        self._add_distractors(scene, {(colour, kind), ref})

    @property
    def place_target(self) -> SceneObject:
        return self._reference

    @property
    def goal_center_m(self) -> np.ndarray:
        ref = self.world.object_center(self._reference)
        goal = ref + np.r_[self.vocabulary.relations[self._relation] * GOAL_OFFSET_M, 0.0]
        goal[2] = TABLE_TOP_Z_M + self._target.half_extents_m[2]
        return goal

    def _phrase_fields(self) -> dict[str, str]:
        return {
            "colour": self._target.colour, "object": self._target.kind, "relation": self._relation,
            "target_colour": self._reference.colour, "target_object": self._reference.kind,
        }

    def success(self) -> Outcome:
        direction = self.vocabulary.relations[self._relation]
        delta = (self.world.object_center(self._target) - self.world.object_center(self._reference))[:2]
        along = float(delta @ direction)
        across = float(abs(delta @ np.array([-direction[1], direction[0]])))
        if not (ALONG_RANGE_M[0] <= along <= ALONG_RANGE_M[1]) or across > ACROSS_TOL_M:
            return Outcome(
                False, f"the {self._target.name} is not {self._relation} the {self._reference.name} "
                f"(along {along:.3f} m, across {across:.3f} m)",
            )
        bottom_z = self.world.client.getAABB(self._target.body_id, -1)[0][2]
        if bottom_z > TABLE_TOP_Z_M + ON_TABLE_TOL_M:
            return Outcome(False, f"the {self._target.name} is not standing on the table")
        return self.released_and_resting(self._target) or Outcome(True)

    def oracle_action(self) -> PickPlace | None:
        if self.success().success:
            return None
        place = self.goal_center_m
        place[2] = self.release_height(self._target, TABLE_TOP_Z_M)
        yaw = self.grasp_yaw(self._target)
        return PickPlace(self.grasp_point(self._target), yaw, place, yaw)

