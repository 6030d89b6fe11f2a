"""A JSGF grammar of exactly the instructions the task families speak, built from ``config/vocabulary.yaml``.

Each family's phrasings are templates with ``{placeholders}``; a placeholder becomes a rule over
the vocabulary words the family can draw for it (stack only names stackable objects, push only
pushable ones, as the tasks do), and a container's preposition is tied to that container ("in the
bowl", "on the tray"), so the grammar accepts no sentence the harness could not have produced.
Restricting the search this tightly is what lets pocketsphinx decode synthesized commands exactly;
the same expansion gives a regular expression that checks a hypothesis is one complete sentence.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

from molmomotion_ros.vocabulary import Vocabulary, default_vocabulary

GRAMMAR_NAME = "molmomotion_instructions"
TOP_RULE = "instruction"

# Which object property a family's object placeholders require (mirrors sim/tasks/*: stack draws
# stackable objects, push pushable ones); families not listed draw from every object.
FAMILY_OBJECT_FLAGS: dict[str, dict[str, str]] = {
    "stack": {"object": "stackable", "target_object": "stackable"},
    "push": {"object": "pushable"},
}
FUNCTION_WORDS = frozenset({"to", "the", "of", "in", "on", "a", "an"})
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class GrammarError(ValueError):
    """The vocabulary cannot be turned into a grammar (unknown placeholder, unusable word)."""


@dataclass(frozen=True)
class Grammar:
    """The instruction grammar: named word rules and, per family, token sequences over them.

    ``rules`` maps a rule name to its alternatives (plain phrases); ``sentences`` lists, per family,
    sequences whose items are literal phrases or ``<rule>`` references.
    """

    rules: dict[str, tuple[str, ...]]
    sentences: dict[str, tuple[tuple[str, ...], ...]]
    argument_words: frozenset[str] = frozenset()  # words that choose a slot's value (colours, objects, "left", ...)

    def jsgf(self) -> str:
        """JSGF V1.0 text with one public top rule ``<instruction>`` (pocketsphinx ``add_jsgf_string``)."""
        lines = ["#JSGF V1.0;", f"grammar {GRAMMAR_NAME};", ""]
        for name, alternatives in self.rules.items():
            lines.append(f"<{name}> = {' | '.join(alternatives)};")
        for family, sequences in self.sentences.items():
            body = " | ".join(" ".join(seq) for seq in sequences)
            lines.append(f"<{_rule_name(family)}> = {body};")
        tops = " | ".join(f"<{_rule_name(f)}>" for f in self.sentences)
        lines.append(f"public <{TOP_RULE}> = {tops};")
        return "\n".join(lines) + "\n"

    def words(self) -> set[str]:
        """Every word the grammar can emit (each must have a pronunciation in the dictionary)."""
        texts = [a for alts in self.rules.values() for a in alts]
        texts += [item for seqs in self.sentences.values() for seq in seqs for item in seq if not item.startswith("<")]
        return {w for t in texts for w in t.split()}

    def pattern(self) -> re.Pattern:
        """A regular expression that matches exactly the grammar's sentences (single spaces, lower case)."""

        def item(token: str) -> str:
            if token.startswith("<"):
                return "(?:" + "|".join(map(re.escape, self.rules[token[1:-1]])) + ")"
            return re.escape(token)

        bodies = [" ".join(item(t) for t in seq) for seqs in self.sentences.values() for seq in seqs]
        return re.compile("^(?:" + "|".join(bodies) + ")$")

    def accepts(self, text: str) -> bool:
        """Whether ``text`` (any spacing/case) is one complete sentence of the grammar."""
        return bool(self.pattern().match(normalise(text)))

    def expand(self, family: str | None = None):
        """Every sentence of the grammar (or of one family), for tests and benchmarks."""
        for fam, sequences in self.sentences.items():
            if family is not None and fam != family:
                continue
            for seq in sequences:
                choices = [self.rules[t[1:-1]] if t.startswith("<") else (t,) for t in seq]
                for words in itertools.product(*choices):
                    yield " ".join(words)

    def size(self) -> int:
        total = 0
        for seqs in self.sentences.values():
            for seq in seqs:
                n = 1
                for t in seq:
                    n *= len(self.rules[t[1:-1]]) if t.startswith("<") else 1
                total += n
        return total


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def _rule_name(family: str) -> str:
    return family.replace("-", "_")


def build_grammar(vocabulary: Vocabulary | None = None) -> Grammar:
    """The instruction grammar of ``vocabulary`` (default: the package's ``config/vocabulary.yaml``)."""
    vocab = vocabulary or default_vocabulary()
    rules: dict[str, tuple[str, ...]] = {
        "colour": tuple(vocab.colours),
        "object": tuple(vocab.objects),
        "relation": tuple(vocab.relations),
        "direction": tuple(vocab.directions),
    }
    for flag in sorted({f for flags in FAMILY_OBJECT_FLAGS.values() for f in flags.values()}):
        rules[f"{flag}_object"] = tuple(k for k, v in vocab.objects.items() if v.get(flag))
    slot_rule = {"colour": "colour", "target_colour": "colour", "relation": "relation", "direction": "direction"}

    sentences: dict[str, tuple[tuple[str, ...], ...]] = {}
    for family, templates in vocab.phrasings.items():
        flags = FAMILY_OBJECT_FLAGS.get(family, {})
        sequences: list[tuple[str, ...]] = []
        for template in templates:
            names = _PLACEHOLDER.findall(template)
            # A container and its preposition are spoken together: one variant per container.
            containers = list(vocab.containers) if {"container", "preposition"} & set(names) else [None]
            for container in containers:
                seq: list[str] = []
                for part in re.split(r"(\{[a-z_]+\})", template):
                    m = _PLACEHOLDER.fullmatch(part)
                    if not m:
                        seq += [w for w in [normalise(part)] if w]
                        continue
                    name = m.group(1)
                    if name == "container":
                        seq.append(container)
                    elif name == "preposition":
                        seq.append(vocab.containers[container]["preposition"])
                    elif name in ("object", "target_object"):
                        seq.append(f"<{flags[name]}_object>" if name in flags else "<object>")
                    elif name in slot_rule:
                        seq.append(f"<{slot_rule[name]}>")
                    else:
                        raise GrammarError(f"{family}: phrasing {template!r} has an unknown placeholder {{{name}}}")
                sequences.append(tuple(seq))
        sentences[family] = tuple(sequences)
    for name, alternatives in rules.items():
        if not alternatives:
            raise GrammarError(f"the vocabulary gives no words for <{name}>")
        for phrase in alternatives:
            if not re.fullmatch(r"[a-z]+( [a-z]+)*", phrase):
                raise GrammarError(f"<{name}>: {phrase!r} is not lower-case words (JSGF tokens)")
    # A slot's value is chosen by its words that never occur as fixed template text ("to the left
    # of": "left"): the recogniser's confidence looks at these.
    fixed = {w for templates in vocab.phrasings.values() for t in templates
             for w in _PLACEHOLDER.sub(" ", t).lower().split()} | FUNCTION_WORDS
    slot_words = {w for alts in rules.values() for a in alts for w in a.split()} | set(vocab.containers)
    return Grammar(rules=rules, sentences=sentences, argument_words=frozenset(slot_words - fixed))


def load_grammar(vocabulary_file: str | Path | None = None) -> Grammar:
    """The grammar of a vocabulary YAML file (None or "" → the package's ``config/vocabulary.yaml``)."""
    if not vocabulary_file:
        return build_grammar()
    path = Path(vocabulary_file)
    if not path.is_file():
        raise GrammarError(f"vocabulary file {path} does not exist")
    try:
        return build_grammar(Vocabulary.from_yaml(path))
    except (KeyError, TypeError, AttributeError) as err:
        raise GrammarError(f"vocabulary file {path} is malformed: {err!r}") from err
