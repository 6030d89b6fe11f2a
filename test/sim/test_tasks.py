"""Every registered task family, its oracle and its determinism, on the real PyBullet world."""

import numpy as np
import pytest

from molmomotion_sim.agents import OracleAgent
from molmomotion_sim.episode import run_episode
from molmomotion_sim.seeds import SPLITS
from molmomotion_sim.tasks import TASKS, TaskOptions
from molmomotion_sim.world import World

TEST_SEED = SPLITS["test"].start + 3


@pytest.fixture(scope="module")
def world():
    with World() as w:
        yield w


@pytest.mark.parametrize("family", sorted(TASKS))
def test_oracle_succeeds(world, family):
    result = run_episode(TASKS[family](world), TEST_SEED, OracleAgent())
    assert result.success, result.failure_reason
    assert result.steps >= 1 and result.instruction


@pytest.mark.parametrize("family", sorted(TASKS))
def test_untouched_scene_is_not_a_success(world, family):
    task = TASKS[family](world)
    task.reset(TEST_SEED)
    outcome = task.success()
    assert not outcome.success and outcome.reason


@pytest.mark.parametrize("family", sorted(TASKS))
def test_same_seed_same_instruction_and_first_frame(family):
    frames, instructions = [], []
    for _ in range(2):
        with World() as w:  # a fresh physics client each time, as a new process would have
            task = TASKS[family](w)
            task.reset(TEST_SEED)
            instructions.append(task.instruction)
            frames.append(w.render().rgb.tobytes())
    assert instructions[0] == instructions[1]
    assert frames[0] == frames[1]


def test_different_seeds_differ(world):
    task = TASKS["place-in-container"](world)
    seen = set()
    for seed in range(SPLITS["test"].start, SPLITS["test"].start + 5):
        task.reset(seed)
        seen.add((task.instruction, tuple(np.round(world.object_center(task.target), 4))))
    assert len(seen) == 5


@pytest.mark.parametrize("family", sorted(TASKS))
def test_instruction_names_the_target(world, family):
    task = TASKS[family](world)
    task.reset(TEST_SEED + 1)
    assert task.target.name in task.instruction
    if task.place_target is not None:
        assert task.place_target.kind in task.instruction


def test_options_restrict_targets(world):
    options = TaskOptions(only_combinations=(("red", "cube"),), distractors=(0, 0))
    task = TASKS["stack"](world, options)
    for seed in range(SPLITS["test"].start, SPLITS["test"].start + 3):
        task.reset(seed)
        assert task.target.name == "red cube"


def test_instruction_words_are_in_the_vocabulary(world):
    words = set(world.vocabulary.words())
    for family, cls in TASKS.items():
        task = cls(world)
        for seed in range(SPLITS["test"].start, SPLITS["test"].start + 5):
            task.reset(seed)
            assert set(task.instruction.split()) <= words, (family, task.instruction)
