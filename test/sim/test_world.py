"""The world: reuse across episodes is as good as a fresh physics client, primitives, refusals."""

import numpy as np
import pytest

from molmomotion_sim.agents import OracleAgent
from molmomotion_sim.episode import run_episode
from molmomotion_sim.seeds import SPLITS
from molmomotion_sim.tasks import TASKS
from molmomotion_sim.world import MotionError, World

SEED = SPLITS["test"].start + 5


def _final_state(world: World, family: str, seed: int):
    result = run_episode(TASKS[family](world), seed, OracleAgent())
    positions = np.array([world.object_pose(o)[0] for o in world.objects.values()])
    return result.success, positions


@pytest.mark.parametrize("family", ["stack", "push"])
def test_world_reset_matches_a_fresh_world(family):
    with World() as fresh:
        expected = _final_state(fresh, family, SEED)
    with World() as reused:
        for seed in range(SEED + 1, SEED + 3):  # some history: bodies added and removed
            _final_state(reused, "place-in-container", seed)
        got = _final_state(reused, family, SEED)
    assert got[0] == expected[0]
    np.testing.assert_array_equal(got[1], expected[1])


def test_reset_empties_the_scene_and_trace():
    with World() as world:
        world.add_object("cube", "red", [0.5, 0.0])
        world.step(32)
        assert world.trace and world.objects
        world.reset()
        assert not world.trace and not world.objects and world.time_s == 0.0


def test_trace_runs_at_15_fps():
    with World() as world:
        world.add_object("cube", "red", [0.5, 0.0])
        world.step(240)
        times = np.array([s.time_s for s in world.trace])
        assert len(times) == 15
        np.testing.assert_allclose(np.diff(times), 1 / 15)


def test_pick_and_place_moves_a_cube():
    with World() as world:
        cube = world.add_object("cube", "red", [0.45, 0.1])
        world.settle()
        start = world.object_center(cube)
        goal = np.array([0.55, -0.1, start[2]])
        world.pick_and_place(start + [0, 0, 0.005], 0.0, goal + [0, 0, 0.015], 0.0)
        world.settle()
        assert np.linalg.norm(world.object_center(cube)[:2] - goal[:2]) < 0.02
        assert not world.touches_gripper(cube)


def test_targets_outside_the_workspace_are_refused():
    with World() as world:
        with pytest.raises(MotionError, match="outside the workspace"):
            world.pick_and_place([0.5, 0.0, 0.65], 0.0, [1.2, 0.0, 0.65], 0.0)


def test_unknown_object_kind_is_refused():
    with World() as world:
        with pytest.raises(KeyError, match="unknown object kind"):
            world.add_object("teapot", "red", [0.5, 0.0])
