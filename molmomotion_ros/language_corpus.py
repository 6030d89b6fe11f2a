"""A generated training language for the instruction reader: many verbs, sentence frames, politeness, filler,
end-state descriptions and speech-recognition slips per motion class, composed at random.

``generate(n, seed, verbs=...)`` returns :class:`Example` s (text, motion class) where the class is what the
instruction asks the arm to do with its object, whatever the words: ``push`` (along the table, never lifted),
``move`` (pick it up and put it somewhere: into a container or next to an object), ``stack`` (on top of another
object), or ``refuse`` (an action no task performs: throw, paint, open, ...). The reader
(:mod:`molmomotion_ros.instruction_reader`) learns the class from these; the parser's structure (which objects,
which preposition) still decides the family and its arguments.

Written from general English, not from any held-out phrasing file (those are never read here). The verb lists are
split into folds (:func:`verb_split`) so that the reader's thresholds are chosen on verbs it never trained on.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

from .vocabulary import Vocabulary, default_vocabulary

CLASSES = ("push", "move", "stack", "refuse")

# Verb phrases per class. "{T}" is the object, "{D}" the destination phrase (with its preposition), "{W}" a push
# direction. A verb may carry its particle ("set {T} down {D}").
VERB_PHRASES: dict[str, tuple[str, ...]] = {
    "move": (
        "put {T} {D}", "place {T} {D}", "set {T} {D}", "set {T} down {D}", "lay {T} {D}", "drop {T} {D}",
        "deposit {T} {D}", "transfer {T} {D}", "relocate {T} {D}", "position {T} {D}", "carry {T} {D}",
        "bring {T} {D}", "take {T} {D}", "move {T} {D}", "shift {T} {D}", "get {T} {D}", "pop {T} {D}",
        "stick {T} {D}", "plunk {T} {D}", "plonk {T} {D}", "park {T} {D}", "slip {T} {D}", "tuck {T} {D}",
        "stow {T} {D}", "store {T} {D}", "pack {T} {D}", "load {T} {D}", "insert {T} {D}", "lower {T} {D}",
        "leave {T} {D}", "put {T} down {D}", "drop {T} off {D}", "rest {T} {D}", "reposition {T} {D}",
        "situate {T} {D}", "settle {T} {D}", "plant {T} {D}", "dump {T} {D}", "nestle {T} {D}",
        "deliver {T} {D}", "ferry {T} {D}", "haul {T} {D}", "hoist {T} {D}", "install {T} {D}", "seat {T} {D}",
        "arrange {T} {D}", "return {T} {D}", "fetch {T} and put it {D}", "pick up {T} and put it {D}",
        "pick {T} up and drop it {D}", "grab {T} and set it {D}", "grasp {T} and lower it {D}",
        "lift {T} and place it {D}", "take hold of {T} and move it {D}", "raise {T} and put it down {D}",
        "pick up {T}, carry it over and let go of it {D}", "scoop up {T} and drop it {D}",
        "snatch {T} and stick it {D}", "collect {T} and leave it {D}", "pluck {T} off the table and set it {D}",
        "relocate {T} over {D}", "bring {T} over {D}", "carry {T} across {D}", "put away {T} {D}",
        "clear {T} away {D}", "tidy {T} away {D}", "file {T} {D}", "stash {T} {D}", "hide away {T} {D}",
    ),
    # Only verbs that mean stacking: "put it on the cube" is a move whose destination makes it a stack.
    "stack": (
        "stack {T} {D}", "pile {T} {D}", "heap {T} {D}", "balance {T} {D}", "perch {T} {D}", "mount {T} {D}",
        "layer {T} {D}", "build a tower with {T} {D}", "make a stack with {T} {D}", "stack up {T} {D}",
        "pile up {T} {D}", "lift {T} and stack it {D}", "pick up {T} and pile it {D}", "grab {T} and balance it {D}",
        "tower {T} {D}", "stack {T} up {D}", "make a little tower by putting {T} {D}", "heap up {T} {D}",
    ),
    "push": (
        "push {T} {W}", "shove {T} {W}", "nudge {T} {W}", "slide {T} {W}", "drag {T} {W}", "scoot {T} {W}",
        "bump {T} {W}", "sweep {T} {W}", "glide {T} {W}", "budge {T} {W}", "press {T} {W}", "propel {T} {W}",
        "pull {T} {W}", "guide {T} {W}", "ease {T} {W}", "edge {T} {W}", "inch {T} {W}", "poke {T} {W}",
        "prod {T} {W}", "shunt {T} {W}", "jostle {T} {W}", "tap {T} {W}", "scrape {T} {W}", "skid {T} {W}",
        "drive {T} {W}", "brush {T} {W}", "bulldoze {T} {W}", "herd {T} {W}", "squish {T} {W}",
        "give {T} a push {W}", "give {T} a nudge {W}", "give {T} a shove {W}", "give {T} a little tap {W}",
        "move {T} {W} along the table", "shift {T} {W} without lifting it", "move {T} {W} without picking it up",
        "slide {T} along the table {W}", "push {T} along the surface {W}", "roll {T} along {W}",
        "keep {T} on the table and push it {W}", "drag {T} across the table {W}", "nudge {T} a bit {W}",
        "scoot {T} over {W}", "push {T} over {W}", "bump {T} a few centimetres {W}",
        "shove {T} {W} with the gripper", "push {T} {W} with your fingers against its side",
    ),
    "refuse": (
        "throw {T}", "toss {T}", "hurl {T}", "fling {T}", "chuck {T}", "lob {T}", "catapult {T}", "launch {T}",
        "kick {T}", "smash {T}", "crush {T}", "break {T}", "squash {T}", "shatter {T}", "bite {T}", "eat {T}",
        "lick {T}", "paint {T}", "colour {T} in", "wash {T}", "clean {T}", "spin {T}", "rotate {T}", "flip {T}",
        "shake {T}", "squeeze {T}", "juggle {T}", "bounce {T}", "hide {T}", "bury {T}", "open {T}", "close {T}",
        "wave at {T}", "point at {T}", "look at {T}", "count {T}", "sort {T}", "sing to {T}", "tickle {T}",
        "hug {T}", "pet {T}", "burn {T}", "melt {T}", "cut {T}", "slice {T}", "drown {T}", "microwave {T}",
        "freeze {T}", "hammer {T}", "tape {T} up", "glue {T}", "hang {T} up", "drill a hole in {T}", "weigh {T}",
        "photograph {T}", "sniff {T}", "inspect {T}", "knock over {T}", "tip over {T}", "topple {T}",
        "give me {T}", "hand me {T}", "show me {T}", "find {T}", "describe {T}", "name {T}", "unwrap {T}",
        "dismantle {T}", "scratch {T}", "wiggle {T}", "twirl {T}", "stomp on {T}", "punch {T}", "slap {T}",
        "destroy {T}", "wreck {T}", "dunk {T}", "spray {T}", "polish {T}", "decorate {T}", "fold {T}", "bend {T}",
        "tear {T} apart", "unscrew {T}", "light {T} on fire", "feed {T} to the dog", "yeet {T}", "sell {T}",
    ),
}

# Sentence frames around a verb phrase ("{VP}", or "{VPING}" for the -ing form).
FRAMES = (
    "{VP}", "{VP}", "{VP}", "please {VP}", "{VP} please", "{VP}, please", "could you {VP}", "could you {VP}?",
    "can you {VP}?", "would you {VP}?", "will you {VP}", "would you mind {VPING}?", "do you mind {VPING}",
    "i'd like you to {VP}", "i want you to {VP}", "i need you to {VP}", "go ahead and {VP}", "hey robot, {VP}",
    "robot, {VP}", "ok now {VP}", "okay, {VP}", "alright, {VP}", "next, {VP}", "now {VP}", "your task is to {VP}",
    "try to {VP}", "is it possible to {VP}?", "would it be possible to {VP}?", "be a dear and {VP}",
    "{VP}, thanks", "{VP}, thank you", "let's {VP}", "time to {VP}", "first, {VP}", "to make room, {VP}",
    "to tidy up, {VP}", "to clear some space, {VP}", "{VP} for me", "{VP}, would you?", "quick one: {VP}",
    "um, {VP}", "so, uh, {VP}", "{VP} when you get a chance", "if you can, {VP}", "the job is to {VP}",
    "what i need is for you to {VP}", "could you please {VP}", "kindly {VP}", "i'm gonna need you to {VP}",
    "wanna {VP}?", "can u {VP}", "pls {VP}", "you should {VP}", "you need to {VP}", "the next step is to {VP}",
    "hi there, could you {VP}?", "would you be so kind as to {VP}", "right, {VP}", "let me see you {VP}",
    "how about you {VP}", "why don't you {VP}", "i'd appreciate it if you could {VP}", "{VP} carefully",
    "{VP} gently", "{VP} slowly", "{VP} now", "just {VP}", "go and {VP}", "can you help me {VP}?",
    "i would like to see you {VP}", "the goal is to {VP}", "my aim is to {VP}", "task: {VP}", "{VP} if you would",
)
# Sentences that state the end result with no action verb: a move, the destination decides the family.
END_STATES = ("i want {T} {D}", "{T} should end up {D}", "{T} belongs {D}", "{T} goes {D}", "{T} needs to be {D}",
              "make sure {T} is {D}", "{T} has to be {D}", "{T} ought to be {D}", "i'd like {T} {D}",
              "{T} {D}, please", "{T} {D}", "have {T} {D}", "i need {T} {D}", "can {T} be {D}?",
              "my goal is having {T} {D}", "i want to see {T} {D}", "{T} would look better {D}",
              "the idea is for {T} to sit {D}", "{T} ends up {D}", "{T} should be sitting {D}",
              "i want {T} lying {D}", "{T} is supposed to be {D}", "leave {T} {D} at the end",
              "{T} should sit {D}", "{T} has to be standing {D}", "the goal is {T} resting {D}")
PUSH_MODIFIERS = ("", "", "", " without lifting it", " along the table", " but keep it on the table",
                  " and don't pick it up", " across the surface", " keeping it flat on the table",
                  " while it stays on the table", " without raising it")
CONTAINER_PREPOSITIONS = {"in": ("in", "into", "inside", "in", "into"), "on": ("on", "onto", "on", "onto")}
STACK_PREPOSITIONS = ("on top of", "on", "onto", "on top of", "atop", "on to", "upon", "onto the top of")
RELATION_WORDS = {
    "to the left of": ("to the left of", "left of", "on the left side of", "to the left side of"),
    "to the right of": ("to the right of", "right of", "on the right side of", "to the right hand side of"),
    "in front of": ("in front of", "on the near side of", "closer to the robot than"),
    "behind": ("behind", "on the far side of", "in back of", "at the back of"),
}
DIRECTION_WORDS = {
    "to the left": ("to the left", "left", "leftwards", "towards the left", "over to the left"),
    "to the right": ("to the right", "right", "rightwards", "towards the right", "over to the right"),
    "forward": ("forward", "forwards", "away from you", "away from the robot", "further away"),
    "backward": ("backward", "backwards", "towards you", "toward the robot", "closer to you", "back"),
}
ADJECTIVES = ("", "", "", "", "little ", "small ", "")
ASR_SLIPS = {"to": "two", "the": "a", "bowl": "bowel", "for": "four", "right": "write", "in": "an", "on": "an"}
FILLERS = ("um", "uh", "er", "like", "you know", "so")


@dataclass(frozen=True)
class Example:
    text: str
    label: str  # one of CLASSES
    verb: str  # the verb phrase's key (for splits by verb)
    family: str | None = None  # the task family meant (None: refused)
    fields: dict | None = None  # what the harness's task would fill its template with (the parser's fields())
    noisy: bool = False  # a speech-like slip was added (it may have garbled an argument)


def verb_key(phrase: str) -> str:
    """A verb phrase's first word: the unit of the verb split ("give {T} a push" → "give a push")."""
    words = phrase.replace("{T}", "").split()
    return " ".join(words[:1] + [w for w in words[1:3] if w in ("a", "push", "nudge", "shove", "tap")])


def verb_split(fold: int, n_folds: int = 4, seed: int = 0) -> dict[str, tuple[str, ...]]:
    """Per class, the verb phrases whose verb falls in ``fold`` (of ``n_folds``, by a seeded hash of the verb):
    validation uses one fold, training the others, so thresholds are chosen on verbs never trained on."""
    def fold_of(phrase: str) -> int:
        return zlib.crc32(f"{seed}:{verb_key(phrase)}".encode()) % n_folds

    return {c: tuple(p for p in VERB_PHRASES[c] if fold_of(p) == fold) for c in CLASSES}


def verbs_except(fold: int, n_folds: int = 4, seed: int = 0) -> dict[str, tuple[str, ...]]:
    held = verb_split(fold, n_folds, seed)
    return {c: tuple(p for p in VERB_PHRASES[c] if p not in held[c]) for c in CLASSES}


def _ing(verb: str) -> str:
    irregular = {"lie": "lying", "die": "dying", "put": "putting", "set": "setting", "drop": "dropping",
                 "get": "getting", "stop": "stopping", "plan": "planning", "pop": "popping", "tap": "tapping",
                 "shop": "shopping", "slip": "slipping", "plop": "plopping", "hug": "hugging", "pet": "petting",
                 "cut": "cutting", "sit": "sitting", "stack": "stacking", "swim": "swimming", "prod": "prodding",
                 "lob": "lobbing", "bin": "binning", "skid": "skidding", "scrub": "scrubbing", "dunk": "dunking",
                 "tip": "tipping", "grab": "grabbing", "snap": "snapping", "chuck": "chucking",
                 "park": "parking", "bump": "bumping", "herd": "herding", "slap": "slapping", "rest": "resting",
                 "stomp": "stomping", "let": "letting", "step": "stepping", "wrap": "wrapping"}
    if verb in irregular:
        return irregular[verb]
    if verb.endswith("ie"):
        return verb[:-2] + "ying"
    if verb.endswith("e") and not verb.endswith(("ee", "ye", "oe")):
        return verb[:-1] + "ing"
    return verb + "ing"


class CorpusGenerator:
    """Composes instructions for the vocabulary's objects, containers, relations and directions."""

    def __init__(self, vocabulary: Vocabulary | None = None, verbs: dict[str, tuple[str, ...]] | None = None):
        self.vocabulary = vocabulary or default_vocabulary()
        self.verbs = verbs or VERB_PHRASES
        v = self.vocabulary
        self.movable = list(v.objects)
        self.stackable = [k for k, o in v.objects.items() if o.get("stackable")]
        self.pushable = [k for k, o in v.objects.items() if o.get("pushable")]

    def _object(self, rng: random.Random, kinds: list[str], avoid: tuple[str, str] | None = None) -> tuple[str, str]:
        while True:
            pick = (rng.choice(list(self.vocabulary.colours)), rng.choice(kinds))
            if pick != avoid:
                return pick

    def _mention(self, rng: random.Random, obj: tuple[str, str]) -> str:
        colour, kind = obj
        if rng.random() < 0.12:  # the colour after the noun
            return f"the {rng.choice(ADJECTIVES)}{kind} that is {colour}"
        return f"the {rng.choice(ADJECTIVES)}{colour} {kind}"

    def _destination(self, rng: random.Random, label: str, target: tuple[str, str]) -> tuple[str, str, dict]:
        """(phrase, family, fields). Stacking verbs go on a stackable object; a move goes into a container, next
        to an object, or onto one (where the target stacks)."""
        where = rng.random()
        if label == "stack" or (where < 0.25 and target[1] in self.stackable):
            base = self._object(rng, self.stackable, avoid=target)
            return (f"{rng.choice(STACK_PREPOSITIONS)} {self._mention(rng, base)}", "stack",
                    {"target_colour": base[0], "target_object": base[1]})
        if where < 0.6:
            kind = rng.choice(list(self.vocabulary.containers))
            colour = rng.choice(list(self.vocabulary.colours))
            preposition = self.vocabulary.containers[kind]["preposition"]
            return (f"{rng.choice(CONTAINER_PREPOSITIONS[preposition])} {self._mention(rng, (colour, kind))}",
                    "place-in-container",
                    {"target_colour": colour, "container": kind, "preposition": preposition})
        relation = rng.choice(list(RELATION_WORDS))
        reference = self._object(rng, self.movable, avoid=target)
        return (f"{rng.choice(RELATION_WORDS[relation])} {self._mention(rng, reference)}", "place-relative",
                {"target_colour": reference[0], "target_object": reference[1], "relation": relation})

    def example(self, rng: random.Random) -> Example:
        label = rng.choice(CLASSES)
        kinds = {"stack": self.stackable, "push": self.pushable}.get(label, self.movable)
        target = self._object(rng, kinds)
        t = self._mention(rng, target)
        truth = {"colour": target[0], "object": target[1]}
        if label == "move" and rng.random() < 0.15:
            where, family, fields = self._destination(rng, label, target)
            return self._finish(rng, rng.choice(END_STATES).format(T=t, D=where), label, "(end state)", family,
                                {**truth, **fields})
        phrase = rng.choice(self.verbs[label])
        slots, family = {"T": t, "D": "", "W": ""}, None
        if "{D}" in phrase:
            slots["D"], family, fields = self._destination(rng, label, target)
            truth.update(fields)
        if "{W}" in phrase:
            direction = rng.choice(list(DIRECTION_WORDS))
            slots["W"] = rng.choice(DIRECTION_WORDS[direction]) + rng.choice(PUSH_MODIFIERS)
            family = "push"
            truth["direction"] = direction
        if label == "refuse":
            family, truth = None, None
            if rng.random() < 0.4:  # an impossible action with a place or a direction
                extra = rng.choice([f" {self._destination(rng, 'move', target)[0]}",
                                    f" {rng.choice(DIRECTION_WORDS[rng.choice(list(DIRECTION_WORDS))])}"])
                phrase += extra.replace("{", "{{").replace("}", "}}")
        vp = " ".join(phrase.format(**slots).split())
        head, _, rest = vp.partition(" ")
        text = rng.choice(FRAMES).format(VP=vp, VPING=f"{_ing(head)} {rest}".strip())
        return self._finish(rng, text, label, verb_key(phrase), family, truth)

    def _finish(self, rng: random.Random, text: str, label: str, verb: str, family: str | None,
                fields: dict | None) -> Example:
        noisy = self._noise(rng, text)
        return Example(noisy, label, verb, family, fields, noisy != text)

    def _noise(self, rng: random.Random, text: str) -> str:
        """Speech-recognition-like slips on a fifth of the sentences: a homophone, a filler, a repeated word."""
        if rng.random() >= 0.2:
            return text
        words = text.split()
        i = rng.randrange(len(words))
        kind = rng.random()
        if kind < 0.4 and words[i] in ASR_SLIPS:
            words[i] = ASR_SLIPS[words[i]]
        elif kind < 0.7:
            words.insert(i, rng.choice(FILLERS))
        else:
            words.insert(i, words[i])
        return " ".join(words)


def generate(n: int, seed: int, *, verbs: dict[str, tuple[str, ...]] | None = None,
             vocabulary: Vocabulary | None = None) -> list[Example]:
    """``n`` examples, balanced over the classes in expectation, reproducible from ``seed``."""
    rng = random.Random(seed)
    generator = CorpusGenerator(vocabulary, verbs)
    return [generator.example(rng) for _ in range(n)]
