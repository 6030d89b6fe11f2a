"""put the {colour} {object} in/on the {colour} {container}."""

from __future__ import annotations

import numpy as np

from molmomotion_ros.robot import TABLE_TOP_Z_M

from ..actions import PickPlace
from ..world import SceneObject
from .base import Outcome, SceneBuilder, Task

CONTAINER_BASE_M = 0.006  # thickness of a container's floor (see World._build_container)
EDGE_MARGIN_M = 0.01  # the target's centre must lie this far inside the container's inner wall


class PlaceInContainer(Task):
    """Success: the target's centre lies inside the container's inner footprint (less EDGE_MARGIN),
    its bottom below the container's rim, at rest and released by the gripper."""

    family = "place-in-container"

    def _build(self, scene: SceneBuilder) -> None:
        rng = scene.rng
        containers = list(self.options.containers or self.vocabulary.containers)
        kind = containers[int(rng.integers(len(containers)))]
        colours = self._colours()
        self._container = scene.place(kind, colours[int(rng.integers(len(colours)))])
        if rng.random() < 0.5:  # a second container of another colour makes the colour matter
            others = [c for c in colours if c != self._container.colour]
            scene.place(containers[int(rng.integers(len(containers)))], others[int(rng.integers(len(others)))])
        colour, obj_kind = self._choose_target(rng, self._kinds())
        self._target = scene.place(obj_kind, colour)
        self._add_distractors(scene, {(colour, obj_kind)})

    @property
    def place_target(self) -> SceneObject:
        return self._container

    @property
    def goal_center_m(self) -> np.ndarray:
        center = self.world.object_center(self._container)
        center[2] = TABLE_TOP_Z_M + CONTAINER_BASE_M + self._target.half_extents_m[2]
        return center

    def _phrase_fields(self) -> dict[str, str]:
        spec = self.vocabulary.containers[self._container.kind]
        return {
            "colour": self._target.colour, "object": self._target.kind, "preposition": spec["preposition"],
            "target_colour": self._container.colour, "container": self._container.kind,
        }

    def _inside(self, xy_local: np.ndarray) -> bool:
        spec = self.vocabulary.containers[self._container.kind]
        if spec["shape"] == "bowl":
            return float(np.linalg.norm(xy_local)) <= spec["inner_radius"] - EDGE_MARGIN_M
        return bool(np.all(np.abs(xy_local) <= spec["inner_half_extent"] - EDGE_MARGIN_M))

    def success(self) -> Outcome:
        pos, quat = self.world.object_pose(self._container)
        offset = self.world.object_center(self._target) - pos
        xy_local = (self.world.rotation(quat).T @ offset)[:2]
        if not self._inside(xy_local):
            return Outcome(False, f"the {self._target.name} is not inside the {self._container.name}")
        rim_z = TABLE_TOP_Z_M + self.vocabulary.containers[self._container.kind]["wall_height"]
        if self.world.client.getAABB(self._target.body_id, -1)[0][2] > rim_z:
            return Outcome(False, f"the {self._target.name} rests above the rim of the {self._container.name}")
        return self.released_and_resting(self._target) or Outcome(True)

    def oracle_action(self) -> PickPlace | None:
        if self.success().success:
            return None
        place = self.goal_center_m
        place[2] = self.release_height(self._target, TABLE_TOP_Z_M + CONTAINER_BASE_M)
        yaw = self.grasp_yaw(self._target)
        return PickPlace(self.grasp_point(self._target), yaw, place, yaw)
