"""The task contract (Ravens style): ``reset(seed)``, ``instruction``, ``success()``, ``oracle()``.

A task builds its scene in a :class:`World` from a seed, states its goal in language and
geometry, judges success geometrically, and scripts an oracle that uses privileged state.
Families subclass :class:`Task`; variants override one hook.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from molmomotion_ros.phrasings import load_phrasing_set
from molmomotion_ros.robot import TABLE_TOP_Z_M, WORKSPACE_X_M, WORKSPACE_Y_M

from ..actions import Action
from ..world import SceneObject, World

MIN_SEPARATION_M = 0.09  # between object centres when scattering a scene
CONTAINER_SEPARATION_M = 0.15
GRASP_DEPTH_M = 0.015  # how far below an object's top the finger pads close
RELEASE_CLEARANCE_M = 0.012  # gap left under an object when it is released
SQUARE_FOOTPRINT_TOL = 0.05  # relative difference of the half extents below which a footprint is square


@dataclass(frozen=True)
class TaskOptions:
    """Per-suite overrides; the defaults draw from the whole vocabulary."""

    objects: tuple[str, ...] | None = None  # object kinds allowed as targets and distractors
    colours: tuple[str, ...] | None = None
    containers: tuple[str, ...] | None = None
    phrasings: tuple[int, ...] | None = None  # indices into the family's phrasings
    # A phrasing set (molmomotion_ros.phrasings: a shipped name such as "heldout", or a path) that phrases the
    # instruction instead of the vocabulary's templates; the scene is the same either way.
    phrasing_set: str | None = None
    exclude_combinations: tuple[tuple[str, str], ...] = ()  # (colour, kind) never used as target
    only_combinations: tuple[tuple[str, str], ...] = ()  # if set, targets come from these only
    camera_jitter_m: float = 0.0  # std of the camera eye perturbation
    distractors: tuple[int, int] = (1, 3)  # inclusive range of extra objects


@dataclass(frozen=True)
class Outcome:
    success: bool
    reason: str = ""  # why it failed; empty on success


@dataclass
class SceneBuilder:
    """Scatters objects on the table with a seeded generator, keeping them apart."""

    world: World
    rng: np.random.Generator
    taken: list[tuple[np.ndarray, float]] = field(default_factory=list)  # (xy, radius)

    def free_xy(self, radius_m: float = MIN_SEPARATION_M / 2, margin_m: float = 0.04, tries: int = 200,
                region=None) -> np.ndarray:
        (x0, x1), (y0, y1) = region or (WORKSPACE_X_M, WORKSPACE_Y_M)
        for _ in range(tries):
            xy = np.array([
                self.rng.uniform(x0 + margin_m, x1 - margin_m), self.rng.uniform(y0 + margin_m, y1 - margin_m)
            ])
            if self.is_free(xy, radius_m):
                return xy
        raise SceneError("no free place left on the table")

    def is_free(self, xy, radius_m: float) -> bool:
        return all(np.linalg.norm(xy - other) >= radius_m + r for other, r in self.taken)

    def place(self, kind: str, colour: str, xy=None, radius_m: float | None = None) -> SceneObject:
        is_container = kind in self.world.vocabulary.containers
        radius = radius_m or (CONTAINER_SEPARATION_M / 2 + 0.03 if is_container else MIN_SEPARATION_M / 2)
        xy = self.free_xy(radius, margin_m=0.09 if is_container else 0.04) if xy is None else np.asarray(xy)
        obj = self.world.add_object(kind, colour, xy, float(self.rng.uniform(-np.pi, np.pi)))
        self.taken.append((np.asarray(xy, float), radius))
        return obj

    def reserve(self, xy, radius_m: float) -> None:
        self.taken.append((np.asarray(xy, float), radius_m))


def in_workspace(xy, margin_m: float = 0.0) -> bool:
    return bool(
        WORKSPACE_X_M[0] + margin_m <= xy[0] <= WORKSPACE_X_M[1] - margin_m
        and WORKSPACE_Y_M[0] + margin_m <= xy[1] <= WORKSPACE_Y_M[1] - margin_m
    )


class SceneError(RuntimeError):
    """A seed produced a scene the task cannot use; the task retries with a derived generator."""


class Task:
    """Base class of all task families."""

    family: ClassVar[str] = ""
    max_steps: ClassVar[int] = 3  # actions an agent may take per episode

    def __init__(self, world: World, options: TaskOptions | None = None):
        self.world = world
        self.options = options or TaskOptions()
        self.vocabulary = world.vocabulary
        self.seed: int | None = None
        self._instruction = ""

    # --- the contract -------------------------------------------------------------------------
    def reset(self, seed: int) -> None:
        """Build the scene of ``seed`` (same seed → same scene, instruction and oracle outcome)."""
        self.seed = int(seed)
        for attempt in range(20):
            rng = np.random.default_rng([self.seed, attempt])
            self.world.reset()
            self.world.camera = self._jittered_camera(rng)
            try:
                self._build(SceneBuilder(self.world, rng))
            except SceneError:
                continue
            self.world.settle(max_steps=120)
            self._instruction = self._phrase(rng)
            self.world.trace.clear()
            return
        raise SceneError(f"{self.family}: no valid scene for seed {seed}")

    @property
    def instruction(self) -> str:
        return self._instruction

    def phrase_fields(self) -> dict[str, str]:
        """What fills the instruction's {placeholders} (the scene's names), for re-phrasing it elsewhere."""
        return dict(self._phrase_fields())

    def success(self) -> Outcome:
        raise NotImplementedError

    def oracle_action(self) -> Action | None:
        """The next scripted action from privileged state, or None when the task needs nothing more."""
        raise NotImplementedError

    def oracle(self) -> "OracleAgent":
        agent = OracleAgent()
        agent.reset(self)
        return agent

    @property
    def target(self) -> SceneObject:
        """The object the instruction asks to move (its points are the ones forecast)."""
        return self._target

    @property
    def place_target(self) -> SceneObject | None:
        """The object the target goes into/onto/next to, if any."""
        return None

    @property
    def goal_center_m(self) -> np.ndarray:
        """World position (3,) where the target's bounding-box centre should come to rest."""
        raise NotImplementedError

    # --- hooks for families -------------------------------------------------------------------
    def _build(self, scene: SceneBuilder) -> None:
        raise NotImplementedError

    def _phrase_fields(self) -> dict[str, str]:
        raise NotImplementedError

    # --- shared helpers -----------------------------------------------------------------------
    def _phrase(self, rng: np.random.Generator) -> str:
        if self.options.phrasing_set is not None:
            # Drawn by (seed, family), not from ``rng``: the scene and any later draw stay as they are.
            return load_phrasing_set(self.options.phrasing_set).phrase(self.family, self.seed, self._phrase_fields())
        templates = self.vocabulary.phrasings[self.family]
        indices = self.options.phrasings or tuple(range(len(templates)))
        template = templates[int(rng.choice(indices))]
        return template.format(**self._phrase_fields())

    def _jittered_camera(self, rng: np.random.Generator):
        jitter = self.options.camera_jitter_m
        if jitter <= 0:
            return self.world.default_camera
        from molmomotion_ros.camera import look_at

        T = self.world.default_camera.T_world_cam
        eye = T[:3, 3] + rng.normal(0, jitter, 3)
        target = T[:3, 3] + T[:3, 2] * 0.9 + rng.normal(0, jitter / 2, 3)
        return self.world.default_camera.with_pose(look_at(eye, target))

    def _colours(self) -> list[str]:
        return list(self.options.colours or self.vocabulary.colours)

    def _kinds(self, allowed: set[str] | None = None) -> list[str]:
        kinds = list(self.options.objects or self.vocabulary.objects)
        return [k for k in kinds if allowed is None or k in allowed]

    def _choose_target(self, rng: np.random.Generator, kinds: list[str]) -> tuple[str, str]:
        """(colour, kind) of the target, honouring the suite's held-out combinations."""
        if self.options.only_combinations:
            combos = [c for c in self.options.only_combinations if c[1] in kinds]
        else:
            combos = [(c, k) for k in kinds for c in self._colours()]
        combos = [c for c in combos if tuple(c) not in set(map(tuple, self.options.exclude_combinations))]
        if not combos:
            raise SceneError("the suite's options leave no target (colour, object) combination")
        colour, kind = combos[int(rng.integers(len(combos)))]
        return colour, kind

    def _add_distractors(self, scene: SceneBuilder, used: set[tuple[str, str]]) -> None:
        lo, hi = self.options.distractors
        kinds, colours = self._kinds(), self._colours()
        for _ in range(int(scene.rng.integers(lo, hi + 1))):
            for _ in range(20):
                combo = (colours[int(scene.rng.integers(len(colours)))], kinds[int(scene.rng.integers(len(kinds)))])
                if combo not in used:
                    break
            else:
                continue
            try:
                scene.place(combo[1], combo[0])
            except SceneError:
                return
            used.add(combo)

    def grasp_point(self, obj: SceneObject) -> np.ndarray:
        """Where the grasp target goes to pick ``obj``: its centre, at most GRASP_DEPTH below its top."""
        center = self.world.object_center(obj)
        center[2] = max(center[2], self.world.object_top_z(obj) - GRASP_DEPTH_M, TABLE_TOP_Z_M + 0.012)
        return center

    def grasp_yaw(self, obj: SceneObject) -> float:
        """Close the fingers across the object's shorter horizontal side, with little wrist turn.

        The yaw is taken modulo the footprint's symmetry (90° for a square one, 180° otherwise), so scenes
        that look the same get the same grasp: a policy learning from these demonstrations sees the object,
        not its body frame, and a cube turned by 90° must not ask for a different wrist angle."""
        yaw = self.world.object_yaw(obj)
        half_x, half_y = obj.half_extents_m[:2]
        if abs(half_x - half_y) <= SQUARE_FOOTPRINT_TOL * max(half_x, half_y):
            period = np.pi / 2
        else:
            period = np.pi
            if half_y > half_x:
                yaw += np.pi / 2
        return float((yaw + period / 2) % period - period / 2)

    def released_and_resting(self, obj: SceneObject) -> Outcome | None:
        """A failure Outcome if ``obj`` is still held or still moving, else None."""
        if self.world.touches_gripper(obj):
            return Outcome(False, f"the {obj.name} is still touching the gripper")
        if not self.world.is_at_rest(obj):
            return Outcome(False, f"the {obj.name} is still moving")
        return None

    def release_height(self, obj: SceneObject, surface_z_m: float) -> float:
        """Grasp-target height that holds ``obj``'s bottom RELEASE_CLEARANCE above ``surface_z_m``."""
        bottom_z = self.world.client.getAABB(obj.body_id, -1)[0][2]
        return surface_z_m + (self.grasp_point(obj)[2] - bottom_z) + RELEASE_CLEARANCE_M


class OracleAgent:
    """The task's scripted expert, as an agent (:mod:`molmomotion_sim.agents`): privileged state → the
    next primitive action. Defined with the task contract because it is part of it (``Task.oracle``)."""

    name = "oracle"
    model_id = "scripted-oracle-v2"
    needs_observation = False

    def __init__(self) -> None:
        self._task: Task | None = None

    def reset(self, task: Task) -> None:
        self._task = task

    def act(self, observation, instruction: str) -> Action | None:
        if self._task is None:
            raise RuntimeError("OracleAgent.act called before reset(task)")
        return self._task.oracle_action()
