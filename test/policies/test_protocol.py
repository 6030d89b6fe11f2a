"""The pre-registered protocol (policies/protocol.yaml): its seeds against sim/seeds.py and against every results
file already in the repository, and the loader's typed refusals."""

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

from molmomotion_policies.protocol import (
    PROTOCOL_PATH,
    ProtocolError,
    ProtocolFileError,
    ProtocolSchemaError,
    ProtocolSeedError,
    load_protocol,
    parse_protocol,
)
from molmomotion_sim.seeds import SPLITS, split_of

ROOT = Path(__file__).resolve().parents[2]
RESULT_DIRS = ("policies/results", "docs/results", "bench/results")


@pytest.fixture(scope="module")
def protocol():
    return load_protocol()


@pytest.fixture()
def raw():
    return yaml.safe_load(PROTOCOL_PATH.read_text())


# --- the seeds -------------------------------------------------------------------------------------------
def test_every_range_lies_in_its_split(protocol):
    for key, r in protocol.seed_ranges().items():
        assert split_of(r.start) == r.split and split_of(r.stop - 1) == r.split, key
    assert protocol.suites["validation"].split == "validation"
    assert protocol.suites["test"].split == "test"
    assert protocol.suites["ood"].split == "ood"
    for r in protocol.training_ranges():
        assert r.split in ("train", "validation"), r.key
    assert protocol.demonstrations["train"].split == "train"
    assert protocol.motion_pretraining["scenes"].split == "train"


def test_test_seeds_are_the_untouched_range_and_validation_is_large_enough(protocol):
    test = protocol.suites["test"]
    assert (test.reserved.start, test.reserved.stop) == (112_000, 113_000)
    assert test.reserved.start <= test.seeds.start and test.seeds.stop <= test.reserved.stop
    assert protocol.suites["validation"].seeds.count >= 25
    for scale in protocol.scales.values():
        assert scale.validation_per_family >= 25
        assert 1 <= scale.test_per_family <= test.seeds.count
        assert scale.training_seeds >= 5
    assert len(protocol.training_seeds) >= 5


def test_train_validation_and_test_seeds_are_disjoint(protocol):
    """Demonstrations and motion pretraining (their validation curves included) never touch a seed that a
    validation or test suite (or a reserved range) uses; no two declared ranges of a split overlap."""
    ranges = protocol.seed_ranges()
    evaluated = [r for r in ranges.values() if r.key.startswith("suites.")]
    for trained in protocol.training_ranges():
        for suite in evaluated:
            assert not set(trained.seeds) & set(suite.seeds), (trained.key, suite.key)
    assert not set(protocol.demonstrations["train"].seeds) & set(protocol.motion_pretraining["scenes"].seeds)
    reserved = {s.reserved.key: s.seeds.key for s in protocol.suites.values() if s.reserved is not None}
    keys = sorted(ranges)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if reserved.get(a) == b or reserved.get(b) == a:
                continue
            assert not set(ranges[a].seeds) & set(ranges[b].seeds), (a, b)


def test_the_bars_are_the_issues_unchanged(protocol):
    bars = {b.id: b for b in protocol.bars}
    assert set(bars) == {"A_final_ge_80", "A_minus_B_ge_15pt", "A_ge_2x_B_at_10k"}
    assert (bars["A_final_ge_80"].kind, bars["A_final_ge_80"].variants, bars["A_final_ge_80"].steps,
            bars["A_final_ge_80"].threshold) == ("rate", ("A",), (protocol.final_step,), 0.80)
    assert (bars["A_minus_B_ge_15pt"].kind, bars["A_minus_B_ge_15pt"].variants, bars["A_minus_B_ge_15pt"].steps,
            bars["A_minus_B_ge_15pt"].threshold) == ("paired_difference", ("A", "B"), protocol.step_grid, 0.15)
    assert (bars["A_ge_2x_B_at_10k"].kind, bars["A_ge_2x_B_at_10k"].steps, bars["A_ge_2x_B_at_10k"].threshold) == (
        "ratio", (10_000,), 2.0)


def test_variants_separate_the_confounds(protocol):
    v = protocol.variants
    assert v["A"].encoder != v["B"].encoder and v["C"].encoder == v["A"].encoder
    assert not v["A"].geometric_inputs and not v["B"].geometric_inputs and not v["C"].geometric_inputs
    assert v["A_geo"].geometric_inputs and v["B_geo"].geometric_inputs and v["A_geo"].role == "ablation"
    assert v["C"].forecast_input and not v["A"].forecast_input and not v["B"].forecast_input
    assert set(protocol.raw["encoder_training"]) >= {"frozen", "finetune_last_blocks"}
    assert "finetune_last_blocks" in protocol.scales["full"].encoder_training


# --- earlier results never used the reserved seeds ----------------------------------------------------------
# A seed inside a name (bag and episode names: main-push-112003, seed_112003); prose such as a report's "range
# 112000–112999" is not a use of the seeds.
SEED_IN_TEXT = re.compile(r"[A-Za-z][-_](\d{6})(?!\d)")


def _seeds_in(document, path=()):
    """(key path, seed) for every integer under a key naming a seed, and every six-digit number that ends a name
    inside a string (bag and episode names carry seeds)."""
    if isinstance(document, dict):
        for k, v in document.items():
            if "seed" in str(k).lower() and isinstance(v, int) and not isinstance(v, bool):
                yield (*path, k), v
            elif "seed" in str(k).lower() and isinstance(v, list):
                yield from (((*path, k), x) for x in v if isinstance(x, int) and not isinstance(x, bool))
            yield from _seeds_in(v, (*path, k))
    elif isinstance(document, list):
        for i, v in enumerate(document):
            yield from _seeds_in(v, (*path, i))
    elif isinstance(document, str):
        for m in SEED_IN_TEXT.finditer(document):
            yield path, int(m.group(1))


def _results_files():
    files = sorted(f for d in RESULT_DIRS for f in (ROOT / d).rglob("*.json"))
    assert len(files) > 100, "the results folders should hold the earlier runs' files"
    return files


def test_no_earlier_result_used_a_reserved_seed(protocol):
    """Issue 21: the test seeds 112000-112999 (and the OOD suite's reserved 122000-122999) were used by no
    results file in the repository, so choosing anything on them cannot have happened."""
    reserved = [s.reserved for s in protocol.suites.values() if s.reserved is not None]
    found, seen_episode_seeds = [], 0
    for path in _results_files():
        for key, seed in _seeds_in(json.loads(path.read_text())):
            seen_episode_seeds += seed >= 100_000
            for r in reserved:
                if r.start <= seed < r.stop:
                    found.append(f"{path.relative_to(ROOT)}: {'.'.join(map(str, key))} = {seed} (in {r.key})")
    assert seen_episode_seeds > 10_000, "the scan should see the earlier runs' episode seeds"
    assert not found, "results files used reserved seeds:\n" + "\n".join(found[:20])


def test_no_earlier_result_used_the_validation_suite_seeds(protocol):
    suite = protocol.suites["validation"].seeds
    used = sorted({seed for path in _results_files() for _, seed in _seeds_in(json.loads(path.read_text()))
                   if suite.start <= seed < suite.stop})
    assert not used, f"validation-suite seeds already used by results files: {used[:10]}"


def test_the_scan_finds_a_reserved_seed_where_there_is_one():
    planted = {"meta": {"suite": "main"}, "episodes": [{"seed": 110003}, {"seed": 112007}],
               "bags": ["results/bags/main-push-112010/episode.mcap"], "test_seeds": [112011],
               "notes": ["seeds 110000–110024 lie outside the range 112000–112999"]}
    seeds = [s for _, s in _seeds_in(planted)]
    assert sorted(seeds) == [110003, 112007, 112010, 112011]


# --- the loader's refusals ------------------------------------------------------------------------------
def test_loads_with_its_hash(protocol):
    assert protocol.version >= 1 and len(protocol.sha256) == 64
    assert protocol.final_step == protocol.step_grid[-1]
    assert protocol.families == ("place-in-container", "place-relative", "push", "stack")
    assert set(SPLITS) >= {r.split for r in protocol.seed_ranges().values()}


def _mutate(raw, dotted, value):
    doc = copy.deepcopy(raw)
    *parents, last = dotted.split(".")
    node = doc
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if value is KeyError:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


@pytest.mark.parametrize("dotted, value, error, key", [
    ("suites.test.seeds.start", 111_000, ProtocolSeedError, "suites.test.seeds"),  # outside its reserved range
    ("suites.test.reserved.start", 110_000, ProtocolSeedError, "suites.test.seeds"),
    ("suites.test.split", "validation", ProtocolSeedError, "suites.test.split"),
    ("suites.test.reserved", KeyError, ProtocolSchemaError, "suites.test"),
    ("suites.validation.seeds.count", 10, ProtocolSchemaError, "suites.validation.seeds.count"),
    ("suites.validation.seeds.start", 100_005, ProtocolSeedError, "demonstrations.validation"),  # overlap
    ("suites.ood.seeds.start", 121_500, ProtocolSeedError, "suites.ood.seeds"),
    ("demonstrations.train.split", "validation", ProtocolSeedError, "demonstrations.train"),
    ("demonstrations.train.count", 200_000, ProtocolSeedError, "demonstrations.train"),  # leaves the split
    ("motion_pretraining.scenes.start", 200, ProtocolSeedError, "demonstrations.train"),  # overlap
    ("motion_pretraining.scenes.start", 99_000, ProtocolSeedError, "motion_pretraining.scenes"),
    ("motion_pretraining.families_held_out_from_pretraining", ["stack"], ProtocolSchemaError,
     "motion_pretraining.families_held_out_from_pretraining"),
    ("training_seeds", [0, 1, 2], ProtocolSchemaError, "training_seeds"),
    ("training_seeds", [0, 1, 2, 3, 3], ProtocolSchemaError, "training_seeds"),
    ("step_grid", [1000, 500, 20000], ProtocolSchemaError, "step_grid"),
    ("final_step", 10_000, ProtocolSchemaError, "final_step"),
    ("variants.B.encoder", "base.pt", ProtocolSchemaError, "variants.B.encoder"),
    ("variants.A", KeyError, ProtocolSchemaError, "variants"),
    ("bars.2.step", 7000, ProtocolSchemaError, "bars[2].step"),
    ("bars.0.variant", "E", ProtocolSchemaError, "bars[0]"),
    ("bars.1.threshold", "15 points", ProtocolSchemaError, "bars[1].threshold"),
    ("pairs.0", ["A", "A"], ProtocolSchemaError, "pairs[0]"),
    ("scales.local.validation_episodes_per_family", 20, ProtocolSchemaError,
     "scales.local.validation_episodes_per_family"),
    ("scales.local.test_episodes_per_family", 500, ProtocolSchemaError, "scales.local.test_episodes_per_family"),
    ("scales.full.steps", [500, 1500], ProtocolSchemaError, "scales.full.steps"),
    ("scales.local.training_seeds", 3, ProtocolSchemaError, "scales.local.training_seeds"),
    ("scales.local.variants", ["A", "C"], ProtocolSchemaError, "scales.local.variants"),
    ("statistics.bootstrap.resample", ["scene", "training_seed"], ProtocolSchemaError,
     "statistics.bootstrap.resample"),
    ("statistics.level", 95, ProtocolSchemaError, "statistics.level"),
    ("version", "one", ProtocolSchemaError, "version"),
    ("suites.validation.sedes", {"start": 1}, ProtocolSchemaError, "suites.validation.sedes"),
])
def test_refuses_a_protocol_that_drifts(raw, dotted, value, error, key):
    with pytest.raises(error) as caught:
        parse_protocol(_mutate(raw, dotted, value))
    assert isinstance(caught.value, ProtocolError) and isinstance(caught.value, ValueError)
    assert caught.value.key == key, str(caught.value)


def test_a_legal_change_of_seeds_loads(raw):
    """Another disjoint train range for the demonstrations is a different protocol, not a broken one."""
    parse_protocol(_mutate(raw, "demonstrations.train.start", 49_000))


def test_file_errors(tmp_path):
    with pytest.raises(ProtocolFileError, match="cannot read"):
        load_protocol(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: [1\n")
    with pytest.raises(ProtocolFileError, match="not YAML"):
        load_protocol(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ProtocolSchemaError, match="expected a mapping"):
        load_protocol(bad)


def test_a_copy_loads_and_its_hash_follows_the_text(tmp_path, protocol):
    copy_path = tmp_path / "protocol.yaml"
    copy_path.write_text(PROTOCOL_PATH.read_text() + "\n# a comment\n")
    loaded = load_protocol(copy_path)
    assert loaded.step_grid == protocol.step_grid and loaded.sha256 != protocol.sha256
