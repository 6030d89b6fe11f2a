"""A JSGF grammar of free phrasings, composed from the instruction parser's lexicons (:mod:`molmomotion_ros.language`).

The template grammar (:mod:`.grammar`) hears exactly the sentences the tasks speak. People say "could you
nudge the red cube to the left a bit" instead, which no template holds; a general n-gram model does not help
either (pocketsphinx's en-us model turned espeak-ng's "drop the red cube into the blue bowl" into "oh and you get
to a blue cool"). This grammar is the middle way: every verb, object noun, colour word, relation, direction,
preposition, push modifier and politeness phrase the parser knows, in the sentence frames people use:

- imperatives: ``[lead] VERB [up] OBJ [up|down|it] [PREP|RELATION] DEST [tail]``, ``VERB OBJ DIRECTION``,
  ``pick up OBJ and VERB it DEST``, with any push modifier ("without lifting it") before or after;
- statements: ``OBJ goes | belongs | should go ... DEST``; wishes: ``i would like OBJ DEST``.

The decoded words then go through :func:`~molmomotion_ros.language.parse_instruction`, which decides the task or
refuses, so the grammar only has to be wide, not exact. Words the pronunciation dictionary lacks are left out (and
listed by :func:`build_phrase_grammar` so a test can keep the list short).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from molmomotion_ros import language
from molmomotion_ros.vocabulary import Vocabulary, default_vocabulary

from .grammar import GrammarError

GRAMMAR_NAME = "molmomotion_phrasings"
TOP_RULE = "utterance"
# Fillers that are also sentence material elsewhere would let the search skip real words; left out.
_NOT_LEAD = frozenset({"like", "then", "and then", "so", "now", "right now", "a bit", "a little", "slightly", "also"})
_TAIL = ("please", "thanks", "thank you", "for me", "a bit", "a little", "slightly", "now", "right now",
         "if you can", "if you could", "if possible", "carefully", "gently", "slowly")
_STATEMENT_VERBS = ("goes", "go", "belongs", "should go", "should be", "should sit", "needs to go", "needs to be",
                    "has to go", "ends up", "sits")
_PARTICLES = ("up", "down", "over", "it up", "it down", "it")
_FORMS = ("", "ing")  # imperative and "would you mind ...ing"


@dataclass(frozen=True)
class PhraseGrammar:
    rules: dict[str, tuple[str, ...]]  # name → alternatives (JSGF expressions over words and <rules>)
    dropped_words: tuple[str, ...]  # lexicon words without a pronunciation, left out
    argument_words: frozenset[str]  # words that pick a slot's value (colours, nouns, sides, directions)

    def jsgf(self) -> str:
        lines = ["#JSGF V1.0;", f"grammar {GRAMMAR_NAME};", ""]
        for name, alternatives in self.rules.items():
            prefix = "public " if name == TOP_RULE else ""
            lines.append(f"{prefix}<{name}> = {' | '.join(alternatives)};")
        return "\n".join(lines) + "\n"

    def words(self) -> set[str]:
        return {w for alts in self.rules.values() for a in alts for w in a.replace("[", " ").replace("]", " ")
                .replace("(", " ").replace(")", " ").replace("|", " ").split() if not w.startswith("<")}


def _ing(verb: str) -> str:
    if verb.endswith("e") and not verb.endswith(("ee", "ye")):
        return verb[:-1] + "ing"
    one_syllable = len(re.findall(r"[aeiouy]+", verb)) == 1
    consonant_vowel_consonant = verb[-1] not in "aeiouwxy" and verb[-2] in "aeiou" and verb[-3] not in "aeiou"
    if one_syllable and len(verb) > 2 and consonant_vowel_consonant:
        return verb + verb[-1] + "ing"  # drop → dropping, put → putting (not deposit → depositting)
    return verb + "ing"


def build_phrase_grammar(has_word: Callable[[str], bool], vocabulary: Vocabulary | None = None) -> PhraseGrammar:
    """The free-phrasing grammar; ``has_word(w)`` says whether the decoder's dictionary can pronounce ``w``."""
    vocab = vocabulary or default_vocabulary()
    dropped: set[str] = set()

    def keep(phrases) -> tuple[str, ...]:
        out = []
        for phrase in dict.fromkeys(" ".join(p.split()) for p in phrases if p.strip()):
            missing = [w for w in phrase.split() if not has_word(w)]
            dropped.update(missing)
            if not missing:
                out.append(phrase)
        return tuple(out)

    # Colours by their vocabulary names only: the parser's synonyms (magenta, navy, ...) were confused with them
    # on development voices ("red" heard as "magenta"), and people name the colours they see.
    colours = list(vocab.colours)
    nouns = [*vocab.objects, *(n for kind, ns in language.OBJECT_SYNONYMS.items() if kind in vocab.objects for n in ns),
             *language.KINDLESS_NOUNS]
    containers = [*vocab.containers,
                  *(n for kind, ns in language.OBJECT_SYNONYMS.items() if kind in vocab.containers for n in ns)]
    lift_verbs = [v for v, cls in language.VERBS.items() if cls in ("lift", "move", "stack") and v not in
                  ("goes", "belongs", "go", "belong", "end", "make", "fill")]
    push_verbs = [v for v, cls in language.VERBS.items() if cls == "push"]
    preps = [p for p, role in language.PREPOSITIONS.items() if role in ("in", "on", "to")]
    rules: dict[str, tuple[str, ...]] = {
        "colour": keep(colours),
        "adjective": keep(language.ADJECTIVES),
        "noun": keep(nouns),
        "container": keep(containers),
        "lift_verb": keep([form for v in lift_verbs for form in (v, _ing(v))]),
        "push_verb": keep([form for v in push_verbs for form in (v, _ing(v))]),
        "preposition": keep(preps),
        "relation": keep(language.RELATION_PHRASES),
        "direction": keep(language.DIRECTION_PHRASES),
        "push_modifier": keep(language.PUSH_MODIFIERS),
        "lead": keep(f for f in language.FILLER if f not in _NOT_LEAD),
        "tail": keep(_TAIL),
        "statement_verb": keep(_STATEMENT_VERBS),
        "particle": keep(_PARTICLES),
    }
    rules["object"] = ("[the | a] [<colour>] [<adjective>] <noun>",)
    rules["destination"] = ("<preposition> [the | a] [<colour>] (<container> | [<adjective>] <noun>)",
                            "<relation> [the | a] [<colour>] [<adjective>] <noun>")
    rules["place"] = ("<lift_verb> [<particle>] <object> [<particle>] <destination>",
                      "<lift_verb> up <object> and <lift_verb> [<particle>] <destination>",
                      "<object> <statement_verb> <destination>",
                      "<object> <destination>")
    rules["push"] = ("<push_verb> <object> [<push_modifier>] <direction> [<push_modifier>]",
                     "<push_verb> <object> <direction> [<push_modifier>]",
                     "<object> <direction> [<push_modifier>]")
    rules[TOP_RULE] = ("[<lead>] [<lead>] (<place> | <push>) [<tail>] [<tail>]",)
    for name, alternatives in rules.items():
        if not alternatives:
            raise GrammarError(f"the free-phrasing grammar has no pronounceable words for <{name}>")
    slot_words = {w for name in ("colour", "noun", "container", "relation", "direction") for a in rules[name]
                  for w in a.split()}
    fixed = {"to", "the", "of", "on", "in", "side", "hand", "a", "at", "over", "from", "robot", "you", "than"}
    return PhraseGrammar(rules=rules, dropped_words=tuple(sorted(dropped)),
                         argument_words=frozenset(slot_words - fixed))

