"""The held-out language tests' phrasing files (heldout, heldout2, heldout3): each is new wording for every family,
fits the tasks' fields, and the loader, the draw and the split guard behave. (The files are read here and by the
harness only.)"""

import re
from pathlib import Path

import pytest
import yaml

from molmomotion_ros.phrasings import (
    PhrasingError,
    check_split_allowed,
    load_phrasing_set,
    phrasings_dir,
    placeholders,
)
from molmomotion_ros.vocabulary import default_vocabulary

FAMILIES = ("place-in-container", "place-relative", "stack", "push")
SHARED_WORDS = {"and", "it", "on", "the", "to"}  # function words the file may share with the templates
TEXT_SUFFIXES = {".py", ".yaml", ".yml", ".md", ".txt", ".json", ".jsgf", ".cfg", ".toml"}
HELD_OUT_SETS = ("heldout", "heldout2", "heldout3")  # every held-out set in config/phrasings; each gets every check


def words(template: str) -> set[str]:
    return set(re.findall(r"[a-z']+", re.sub(r"\{[a-z_]+\}", " ", template.lower())))


@pytest.fixture(scope="module", params=HELD_OUT_SETS)
def heldout(request):
    return load_phrasing_set(request.param)


@pytest.fixture(scope="module")
def raw(heldout):
    return yaml.safe_load((phrasings_dir() / f"{heldout.name}.yaml").read_text())


def test_every_held_out_set_is_checked():
    shipped = {p.stem for p in phrasings_dir().glob("*.yaml") if yaml.safe_load(p.read_text()).get("held_out")}
    assert shipped == set(HELD_OUT_SETS)


def test_heldout_covers_every_family_with_enough_variety(heldout):
    assert heldout.held_out and heldout.name in HELD_OUT_SETS
    assert set(heldout.templates) == set(FAMILIES)
    for family, templates in heldout.templates.items():
        assert 10 <= len(templates) <= 15, family
        assert len(set(templates)) == len(templates), family


def test_heldout_fills_with_each_family_fields(heldout):
    vocabulary = default_vocabulary()
    for family in FAMILIES:
        fields = set().union(*(placeholders(t) for t in vocabulary.phrasings[family]))
        heldout.check_fields(family, fields)
        for template in heldout.templates[family]:
            text = template.format(**{name: f"<{name}>" for name in fields})
            assert "{" not in text and "<colour> <object>" in text, template


def test_new_words_are_exactly_those_no_training_instruction_contains(heldout, raw):
    training = set(default_vocabulary().words())
    used = set().union(*(words(t) for ts in heldout.templates.values() for t in ts))
    # If the training language grows, recompute the header's claim; never edit the phrasings to restore it.
    assert sorted(used - training) == sorted(raw["new_words"]), "new_words no longer matches the training language"
    assert used & training <= SHARED_WORDS, sorted(used & training - SHARED_WORDS)


def test_no_training_verb_or_its_forms_appears(heldout):
    # A template's first word is its verb (pick up, put, place, move, stack, push, slide); "pushed", "placing",
    # "sliding" are the same verbs, so any word starting with the stem counts.
    verbs = {t.split()[0] for ts in default_vocabulary().phrasings.values() for t in ts}
    stems = {v[:-1] if v.endswith("e") else v for v in verbs}
    assert {"push", "slid", "plac", "stack"} <= stems
    for family, templates in heldout.templates.items():
        for template in templates:
            hits = [w for w in words(template) if any(w.startswith(s) for s in stems)]
            assert not hits, (family, template, hits)


def test_the_heldout_templates_appear_in_no_other_file(heldout):
    """Held out means nothing else holds them: no training language, grammar, parser or example may copy them."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    allowed = {f"config/phrasings/{heldout.name}.yaml", "test/test_phrasings.py"}
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=root,
                            capture_output=True, text=True, timeout=60, check=True).stdout.split()
    templates = [t for ts in heldout.templates.values() for t in ts]
    copies = []
    for name in listed:
        path = root / name
        if name in allowed or path.suffix not in TEXT_SUFFIXES or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        copies += [f"{name}: {t!r}" for t in templates if t in text]
    assert copies == [], copies


def test_no_heldout_sentence_frame_equals_a_training_one(heldout):
    training = {re.sub(r"\{[a-z_]+\}", "{}", t) for ts in default_vocabulary().phrasings.values() for t in ts}
    for templates in heldout.templates.values():
        assert not training & {re.sub(r"\{[a-z_]+\}", "{}", t) for t in templates}


def test_the_draw_depends_on_seed_and_family_only(heldout):
    fields = {"colour": "red", "object": "block", "direction": "forward"}
    same = {heldout.phrase("push", 110000, fields) for _ in range(3)}
    assert len(same) == 1
    drawn = {heldout.phrase("push", seed, fields) for seed in range(110000, 110060)}
    assert len(drawn) >= len(heldout.templates["push"]) - 2  # every template gets used over many seeds
    assert all("red block" in text and "forward" in text for text in drawn)


def test_held_out_sets_are_refused_for_fitting_splits(heldout):
    for split in ("train", "validation"):
        with pytest.raises(PhrasingError, match="held out"):
            check_split_allowed(heldout, split)
    for split in ("test", "ood"):
        check_split_allowed(heldout, split)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("phrasings: {}\n", "non-empty 'phrasings'"),
        ("phrasings: {push: []}\n", "non-empty list"),
        ("phrasings: {push: [shove it]}\nowner: me\n", "unknown key 'owner'"),
        ("phrasings: [\n", "not valid YAML"),
    ],
)
def test_bad_phrasing_files(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PhrasingError, match=message):
        load_phrasing_set(path)


def test_field_check_names_the_fault(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text('phrasings: {push: ["shove the {colour} {thing} {direction}", "shove the {colour} {object}"]}\n')
    mine = load_phrasing_set(path)
    assert mine.name == "mine" and not mine.held_out
    with pytest.raises(PhrasingError, match=r"\{thing\}"):
        mine.check_fields("push", {"colour", "object", "direction"})
    with pytest.raises(PhrasingError, match="no phrasings for family 'stack'"):
        mine.check_fields("stack", {"colour", "object"})
    with pytest.raises(PhrasingError, match="no shipped set"):
        load_phrasing_set("absent")
