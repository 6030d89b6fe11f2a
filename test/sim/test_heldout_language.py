"""The phrasing-set option: same seed, same scene whichever source phrases it; suites and data generation honour it."""

from dataclasses import replace

import numpy as np
import pytest

from molmomotion_ros.motion_data import DatasetError
from molmomotion_ros.phrasings import load_phrasing_set
from molmomotion_sim.dataset import generate_dataset
from molmomotion_sim.seeds import SPLITS
from molmomotion_sim.suites import SuiteError, load_suite, parse_suite
from molmomotion_sim.tasks import TASKS, TaskOptions
from molmomotion_sim.world import World

SEEDS = (SPLITS["test"].start, SPLITS["test"].start + 1)
HELD_OUT_SETS = ("heldout", "heldout2", "heldout3")  # each has a suite config/suites/<set>_language.yaml


@pytest.fixture(scope="module")
def world():
    with World() as w:
        yield w


def _scene(world, task) -> list[tuple]:
    """Every body's kind, colour and pose, rounded to 0.1 mm / 1e-4 (the scene as the camera sees it)."""
    rows = []
    for obj in world.objects.values():
        position, orientation = world.object_pose(obj)
        rows.append((obj.kind, obj.colour, tuple(np.round(position, 4)), tuple(np.round(orientation, 4))))
    return rows + [tuple(np.round(world.camera.T_world_cam, 6).ravel())]


@pytest.mark.parametrize("phrasing_set", HELD_OUT_SETS)
@pytest.mark.parametrize("family", sorted(TASKS))
def test_same_seed_same_scene_with_either_phrasing_source(world, family, phrasing_set):
    heldout = load_phrasing_set(phrasing_set)
    for seed in SEEDS:
        own = TASKS[family](world)
        own.reset(seed)
        scene, instruction, fields = _scene(world, own), own.instruction, own.phrase_fields()
        other = TASKS[family](world, TaskOptions(phrasing_set=phrasing_set))
        other.reset(seed)
        assert _scene(world, other) == scene
        assert other.phrase_fields() == fields
        assert other.instruction != instruction
        assert other.instruction == heldout.phrase(family, seed, fields)  # what eval-forecast re-phrases to
        assert other.instruction in {t.format(**fields) for t in heldout.templates[family]}


@pytest.mark.parametrize("phrasing_set", HELD_OUT_SETS)
def test_heldout_language_suite_is_main_with_the_heldout_phrasings(phrasing_set):
    main, heldout = load_suite("main"), load_suite(f"{phrasing_set}_language")
    assert heldout.split == main.split
    for a, b in zip(main.families, heldout.families, strict=True):
        assert (a.family, a.seeds) == (b.family, b.seeds)
        assert b.options == replace(a.options, phrasing_set=phrasing_set)


def test_with_phrasing_set_renames_and_keeps_the_scenes():
    smoke = load_suite("smoke")
    reworded = smoke.with_phrasing_set("heldout")
    assert reworded.name == "smoke-phrasings-heldout"
    assert [(e.family, e.seed) for e in reworded.episodes()] == [(e.family, e.seed) for e in smoke.episodes()]
    assert all(e.options == replace(o.options, phrasing_set="heldout")
               for e, o in zip(reworded.episodes(), smoke.episodes(), strict=True))


BASE = "split: test\nepisodes_per_family: 2\n"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("{phrasing_set: absent}", "no shipped set"),
        ("{phrasing_set: 3}", "expected the name of a phrasing set"),
        ("{phrasing_set: heldout, phrasings: [0]}", "cannot go with 'phrasing_set'"),
    ],
)
def test_bad_phrasing_set_options(options, message):
    import yaml

    with pytest.raises(SuiteError, match=message):
        parse_suite(yaml.safe_load(BASE + f"families: {{push: {{}}}}\noptions: {options}\n"))


def test_a_set_missing_a_field_is_refused_for_that_family(tmp_path):
    import yaml

    path = tmp_path / "terse.yaml"
    path.write_text('phrasings: {push: ["shove the {object}"]}\n')
    with pytest.raises(SuiteError, match=r"leaves out \{colour\}"):
        parse_suite(yaml.safe_load(BASE + f"families: {{push: {{}}}}\noptions: {{phrasing_set: {path}}}\n"))


@pytest.mark.parametrize("split", ["train", "validation"])
def test_heldout_phrasings_never_make_fitting_data(tmp_path, split):
    with pytest.raises(DatasetError, match="held out"):
        generate_dataset(split, 1, tmp_path / "data", families=["push"], workers=1, progress=False,
                         options=TaskOptions(phrasing_set="heldout"))
    assert not (tmp_path / "data").exists()  # refused before anything is written


def test_datasets_record_phrase_fields_and_keep_their_config_hash_without_a_set(tmp_path):
    import json

    from molmomotion_ros.motion_data import MotionDataset

    own = generate_dataset("test", 1, tmp_path / "own", families=["push"], workers=1, progress=False)
    assert "phrasing_set" not in own["config"]["task_options"]  # hashes of datasets made before the option hold
    reworded = generate_dataset("test", 1, tmp_path / "reworded", families=["push"], workers=1, progress=False,
                                options=TaskOptions(phrasing_set="heldout"))
    assert reworded["config"]["task_options"]["phrasing_set"] == "heldout"
    assert reworded["config_hash"] != own["config_hash"]
    [a], [b] = MotionDataset(tmp_path / "own", only_success=False).meta, MotionDataset(
        tmp_path / "reworded", only_success=False).meta
    assert a["phrase_fields"] == b["phrase_fields"] and set(a["phrase_fields"]) == {"colour", "object", "direction"}
    assert b["instruction"] == load_phrasing_set("heldout").phrase("push", b["seed"], b["phrase_fields"])
    assert a["instruction"] != b["instruction"] and a["target"] == b["target"]
    json.dumps(a)  # metadata stays plain JSON
