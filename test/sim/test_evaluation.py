"""Suites, statistics and the parallel evaluation loop, with real PyBullet worlds (DIRECT mode)."""

from __future__ import annotations

import json
from dataclasses import fields, replace

import pytest
from PIL import Image

from molmomotion_sim import evaluation
from molmomotion_sim.episode import EpisodeResult
from molmomotion_sim.seeds import SPLITS
from molmomotion_sim.suites import (
    _OPTION_PARSERS,
    EpisodeSpec,
    SuiteError,
    held_out_combinations,
    load_suite,
)
from molmomotion_sim.tasks import TASKS
from molmomotion_sim.tasks.base import TaskOptions

TEST_SEED = SPLITS["test"].start


# --- Wilson interval ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    [
        (0, 10, (0.0, 0.27754)),  # upper = z² / (n + z²)
        (10, 10, (0.72246, 1.0)),
        (5, 10, (0.23659, 0.76341)),
        (1, 1, (0.20654, 1.0)),  # lower = 1 / (1 + z²)
    ],
)
def test_wilson_interval_known_values(successes, n, expected):
    lo, hi = evaluation.wilson_interval(successes, n)
    assert lo == pytest.approx(expected[0], abs=1e-5)
    assert hi == pytest.approx(expected[1], abs=1e-5)


def test_wilson_interval_edges():
    assert evaluation.wilson_interval(0, 0) == (0.0, 1.0)
    wide, narrow = evaluation.wilson_interval(5, 10, z=2.576), evaluation.wilson_interval(5, 10, z=1.0)
    assert wide[0] < narrow[0] and wide[1] > narrow[1]
    for bad in [(-1, 10), (11, 10), (0, -1)]:
        with pytest.raises(ValueError):
            evaluation.wilson_interval(*bad)


# --- summary and table -------------------------------------------------------------------------
def _result(family: str, seed: int, success: bool, wall_time_s: float = 1.0) -> EpisodeResult:
    return EpisodeResult(seed, family, "push the red block forward", success, "" if success else "goal not reached",
                         1, 3.0, wall_time_s, "oracle", "scripted-oracle-v1")


def test_summarize_rows_per_family_then_overall():
    results = [_result("stack", 1, True, 2.0), _result("push", 1, False, 1.0), _result("push", 2, True, 3.0)]
    rows = evaluation.summarize(results)
    assert [r.family for r in rows] == ["push", "stack", "all"]
    push, stack, overall = rows
    assert (push.n, push.successes, push.rate, push.mean_wall_time_s) == (2, 1, 0.5, 2.0)
    assert (stack.n, stack.successes, stack.rate) == (1, 1, 1.0)
    assert (overall.n, overall.successes) == (3, 2)
    assert (overall.lo, overall.hi) == evaluation.wilson_interval(2, 3)
    table = evaluation.format_table(rows)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["family", "n", "success"]
    assert lines[-1].split()[:3] == ["all", "3", "2"]
    assert "50.0%" in table and "66.7%" in table


# --- suites ------------------------------------------------------------------------------------
def test_shipped_suites_load():
    main = load_suite("main")
    assert main.split == "test" and set(main.family_names) == set(TASKS)
    assert len(main) == 100 * len(TASKS)
    assert all(len(f.seeds) == 100 and f.seeds[0] == TEST_SEED for f in main.families)
    smoke = load_suite("smoke")
    assert len(smoke) == 2 * len(TASKS)
    ood = load_suite("ood")
    assert ood.split == "ood"
    assert all(seed in SPLITS["ood"] for _, seed, _ in ood.episodes())
    assert all(f.options.camera_jitter_m == pytest.approx(0.02) for f in ood.families)


def test_in_distribution_suites_exclude_the_ood_targets():
    held_out = set(held_out_combinations("ood"))
    assert held_out
    for name in ("main", "smoke"):
        for family in load_suite(name).families:
            assert set(family.options.exclude_combinations) == held_out, name


def test_every_task_option_has_a_parser():
    assert set(_OPTION_PARSERS) == {f.name for f in fields(TaskOptions)}


GOOD_SUITE = """
name: custom
split: test
episodes_per_family: 3
families:
  push: {}
  stack: {seeds: [110010, 110003, 110007]}
  place-relative: {seed_range: [110000, 110050], episodes: 2, options: {camera_jitter_m: 0.01}}
options:
  camera_jitter_m: 0.0
  exclude_combinations: [[red, duck]]
  distractors: [0, 2]
  phrasings: [0]
"""


def test_custom_suite_file(tmp_path):
    path = tmp_path / "custom.yaml"
    path.write_text(GOOD_SUITE)
    suite = load_suite(path)
    episodes = suite.episodes()
    assert [(e.family, e.seed) for e in episodes] == [
        ("push", 110000), ("push", 110001), ("push", 110002),
        ("stack", 110010), ("stack", 110003), ("stack", 110007),
        ("place-relative", 110000), ("place-relative", 110001),
    ]
    push_options = episodes[0].options
    assert push_options == TaskOptions(camera_jitter_m=0.0, exclude_combinations=(("red", "duck"),),
                                       distractors=(0, 2), phrasings=(0,))
    assert episodes[-1].options == replace(push_options, camera_jitter_m=0.01)  # per-family override
    assert load_suite(path).episodes() == episodes  # deterministic

    selected = suite.select(families=["place-relative", "stack"], episodes_per_family=2)
    assert [(e.family, e.seed) for e in selected.episodes()] == [
        ("place-relative", 110000), ("place-relative", 110001), ("stack", 110010), ("stack", 110003),
    ]
    with pytest.raises(SuiteError, match="lists 3 seeds"):
        suite.select(episodes_per_family=4)
    with pytest.raises(SuiteError, match="no family 'place-in-container'"):
        suite.select(families=["place-in-container"])
    with pytest.raises(SuiteError, match="unknown family"):
        suite.select(families=["juggle"])
    with pytest.raises(SuiteError, match="positive"):
        suite.select(episodes_per_family=0)


BASE = "split: test\nepisodes_per_family: 2\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("split: test\nfamilies: [\n", "not valid YAML"),
        ("- a list\n", "expected a mapping"),
        ("name: ../escape\n" + BASE + "families: {push: {}}\n", "must be letters"),
        (BASE + "families: {push: {}}\nrounds: 3\n", "unknown key 'rounds'"),
        ("episodes_per_family: 2\nfamilies: {push: {}}\n", "missing 'split'"),
        ("split: exam\nepisodes_per_family: 2\nfamilies: {push: {}}\n", "unknown split 'exam'"),
        (BASE + "families: {}\n", "non-empty mapping"),
        (BASE + "families: {juggle: {}}\n", "unknown family 'juggle'"),
        (BASE + "families: {push: {repeats: 2}}\n", "unknown key 'repeats'"),
        (BASE + "families: {push: {}}\noptions: {gravity: 3}\n", "unknown option 'gravity'"),
        (BASE + "families: {push: {}}\noptions: {colours: [mauve]}\n", "unknown colour 'mauve'"),
        (BASE + "families: {push: {}}\noptions: {objects: [teapot]}\n", "unknown object 'teapot'"),
        (BASE + "families: {push: {}}\noptions: {containers: [vase]}\n", "unknown container 'vase'"),
        (BASE + "families: {push: {}}\noptions: {exclude_combinations: [[mauve, duck]]}\n", "unknown colour"),
        (BASE + "families: {push: {}}\noptions: {only_combinations: [[red, teapot]]}\n", "unknown object"),
        (BASE + "families: {push: {}}\noptions: {only_combinations: [red, duck]}\n", "pairs"),
        (BASE + "families: {push: {}}\noptions: {camera_jitter_m: -0.1}\n", "non-negative"),
        (BASE + "families: {push: {}}\noptions: {distractors: [3, 1]}\n", "min <= max"),
        (BASE + "families: {push: {}}\noptions: {phrasings: [99]}\n", "phrasings 0.."),
        (BASE + "families: {push: {}}\noptions: {only_combinations: [[red, duck]], "
         "exclude_combinations: [[red, duck]]}\n", "no (colour, object) combination"),
        ("split: test\nepisodes_per_family: 0\nfamilies: {push: {}}\n", "positive"),
        (BASE + "families: {push: {episodes: -1}}\n", "positive"),
        ("split: test\nfamilies: {push: {}}\n", "no episode count"),
        (BASE + "families: {push: {seeds: [5, 6]}}\n", "not in the 'test' split"),
        (BASE + "families: {push: {seeds: [110000, 120000]}}\n", "belongs to 'ood'"),
        (BASE + "families: {push: {seeds: [110000]}, stack: {seeds: [100000]}}\n", "belongs to 'validation'"),
        (BASE + "families: {push: {seed_range: [119990, 120010]}}\n", "not in the 'test' split"),
        (BASE + "families: {push: {seed_range: [110010, 110000]}}\n", "is empty"),
        (BASE + "families: {push: {seeds: [110000], seed_range: [110000, 110002]}}\n", "not both"),
        (BASE + "families: {push: {seeds: [110001, 110001]}}\n", "listed twice"),
        (BASE + "families: {push: {seeds: [110001], episodes: 2}}\n", "lists only 1 seeds"),
        ("split: test\nepisodes_per_family: 20000\nfamilies: {push: {}}\n", "holds 10000 seeds"),
    ],
)
def test_bad_suite_files(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SuiteError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        load_suite(path)
    assert "\n" not in str(caught.value)


def test_missing_suite_files(tmp_path):
    with pytest.raises(SuiteError, match="does not exist"):
        load_suite(tmp_path / "absent.yaml")
    with pytest.raises(SuiteError, match="no shipped suite"):
        load_suite("absent")
    with pytest.raises(SuiteError, match="is a directory"):
        load_suite(tmp_path)


# --- running -----------------------------------------------------------------------------------
def test_an_episode_that_raises_is_a_failure_not_a_crash():
    episodes = [
        EpisodeSpec("push", TEST_SEED, TaskOptions(colours=("mauve",))),  # not in the vocabulary: KeyError
        EpisodeSpec("push", TEST_SEED, TaskOptions()),
    ]
    broken, fine = evaluation.evaluate(episodes, "oracle", workers=1, progress=False)
    assert not broken.success and broken.failure_reason.startswith("KeyError")
    assert "mauve" in broken.failure_reason
    assert fine.seed == TEST_SEED and fine.instruction
    assert fine.steps >= 1  # the world was rebuilt after the failure and the next episode ran


def test_evaluate_rejects_bad_requests():
    episode = EpisodeSpec("push", TEST_SEED, TaskOptions())
    with pytest.raises(evaluation.EvaluationError, match="unknown agent"):
        evaluation.evaluate([episode], "telepath", progress=False)
    with pytest.raises(evaluation.EvaluationError, match="unknown family"):
        evaluation.evaluate([episode._replace(family="juggle")], "oracle", progress=False)
    with pytest.raises(evaluation.EvaluationError, match="workers"):
        evaluation.evaluate([episode], "oracle", workers=0, progress=False)
    with pytest.raises(evaluation.EvaluationError, match="no episodes"):
        evaluation.evaluate([], "oracle", progress=False)
    # Arguments the agent cannot be built from are one error up front, not a failure in every episode.
    for workers in (1, 2):
        with pytest.raises(evaluation.EvaluationError, match="cannot be built from .*telepathy"):
            evaluation.evaluate([episode, episode], "oracle", {"telepathy": True}, workers=workers, progress=False)


def _comparable(results):
    return [{k: v for k, v in r.to_dict().items() if k != "wall_time_s"} for r in results]


@pytest.mark.slow
def test_results_do_not_depend_on_worker_count():
    # camera jitter checks that a reused World starts every task from the configured camera
    suite = load_suite("ood").select(families=["stack", "push"], episodes_per_family=2)
    serial = evaluation.evaluate(suite, "oracle", workers=1, progress=False)
    parallel = evaluation.evaluate(suite, "oracle", workers=2, progress=False)
    assert _comparable(serial) == _comparable(parallel)
    assert [(r.family, r.seed) for r in serial] == sorted((r.family, r.seed) for r in serial)


@pytest.mark.slow
def test_smoke_suite_with_two_workers_writes_valid_json(tmp_path):
    suite = load_suite("smoke")
    results = evaluation.evaluate(suite, "oracle", workers=2, progress=False)
    assert [(r.family, r.seed) for r in results] == sorted((e.family, e.seed) for e in suite.episodes())
    path = evaluation.write_results(tmp_path / "out" / "eval.json", results,
                                    {"agent": "oracle", "model_id": "scripted-oracle-v1", "suite": suite.name,
                                     "workers": 2, "wall_time_s": 1.0})
    document = json.loads(path.read_text())
    assert set(document) == {"meta", "summary", "episodes"}
    meta = document["meta"]
    assert {"agent", "model_id", "suite", "git_revision", "timestamp", "workers", "wall_time_s"} <= set(meta)
    assert len(document["episodes"]) == len(suite)
    episode_keys = {"seed", "family", "instruction", "success", "failure_reason", "steps", "sim_time_s",
                    "wall_time_s", "agent", "model_id"}
    for episode in document["episodes"]:
        assert set(episode) == episode_keys
        assert episode["agent"] == "oracle" and episode["instruction"]
        assert episode["success"] or episode["failure_reason"]
    overall = document["summary"][-1]
    assert overall["family"] == "all" and overall["n"] == len(suite)
    assert overall["successes"] == sum(e["success"] for e in document["episodes"])
    assert not list(path.parent.glob(".*"))  # the atomic write left no temporary file


def test_contact_sheet(tmp_path):
    episodes = evaluation.spread_over_families(load_suite("smoke").episodes(), 2)
    assert len({e.family for e in episodes}) == 2
    path = evaluation.contact_sheet(tmp_path / "sheet.png", episodes, "oracle")
    with Image.open(path) as image:
        width, height = image.size
    assert width > 300 and height > 300
