"""The success-rate experiment's pre-registered protocol (``policies/protocol.yaml``, issue 21), loaded and checked.

:func:`load_protocol` reads the file into a :class:`Protocol` and refuses, with a typed error naming the
offending key, anything that would let a run drift from what was registered: unknown or missing keys,
seed ranges outside their split or overlapping each other, a test suite outside its reserved range, fewer
than 5 training seeds or 25 validation seeds per family, bars or pairs naming variants or steps the design
does not have, a scale that is not a subset of the design. Pure Python (PyYAML and ``molmomotion_sim.seeds``):
no torch, no simulator.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from molmomotion_sim.seeds import SPLITS

PROTOCOL_PATH = Path(__file__).resolve().parent / "protocol.yaml"
MIN_TRAINING_SEEDS = 5
MIN_VALIDATION_PER_FAMILY = 25
BAR_KINDS = ("rate", "paired_difference", "ratio")


class ProtocolError(ValueError):
    """The protocol cannot be used; ``key`` is the dotted path of the offending entry ("" for the file)."""

    def __init__(self, message: str, key: str = ""):
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


class ProtocolFileError(ProtocolError):
    """The file is missing or is not YAML."""


class ProtocolSchemaError(ProtocolError):
    """A key is missing, unknown, or has a value of the wrong type or out of range."""


class ProtocolSeedError(ProtocolError):
    """A seed range lies outside its split, outside its reserved range, or overlaps another."""


@dataclass(frozen=True)
class SeedRange:
    """``count`` consecutive seeds of ``split`` from ``start`` (per family)."""

    split: str
    start: int
    count: int
    key: str = ""  # where in the protocol it was declared

    @property
    def stop(self) -> int:
        return self.start + self.count

    @property
    def seeds(self) -> range:
        return range(self.start, self.stop)

    def prefix(self, count: int) -> "SeedRange":
        return SeedRange(self.split, self.start, count, self.key)

    def overlaps(self, other: "SeedRange") -> bool:
        return self.start < other.stop and other.start < self.stop

    def __str__(self) -> str:
        return f"{self.split} {self.start}-{self.stop - 1}"


@dataclass(frozen=True)
class Variant:
    name: str
    encoder: str
    forecast_input: bool
    geometric_inputs: bool
    role: str  # primary | ablation | control


@dataclass(frozen=True)
class Suite:
    name: str
    split: str
    seeds: SeedRange  # per family
    reserved: SeedRange | None  # the range nothing else may touch; ``seeds`` lies in it
    options: str  # whose task options (config/suites/<options>.yaml)


@dataclass(frozen=True)
class Bar:
    id: str
    kind: str  # rate | paired_difference | ratio
    variants: tuple[str, ...]  # one for a rate, two (first, second) otherwise
    steps: tuple[int, ...]  # where it is judged
    threshold: float


@dataclass(frozen=True)
class Scale:
    name: str
    variants: tuple[str, ...]
    encoder_training: tuple[str, ...]
    steps: tuple[int, ...]
    training_seeds: int
    validation_per_family: int
    test_per_family: int
    ood_per_family: int
    command: str


@dataclass(frozen=True)
class Statistics:
    level: float
    replicates: int
    seed: int
    scene_draw: str  # crossed | nested
    strata: str  # family | none


@dataclass(frozen=True)
class Protocol:
    version: int
    families: tuple[str, ...]
    variants: dict[str, Variant]
    encoders: tuple[str, ...]
    step_grid: tuple[int, ...]
    final_step: int
    training_seeds: tuple[int, ...]
    demonstrations: dict[str, SeedRange]  # train, validation
    motion_pretraining: dict[str, SeedRange]  # scenes, validation
    pretraining_families: tuple[str, ...]
    suites: dict[str, Suite]
    bars: tuple[Bar, ...]
    pairs: tuple[tuple[str, str], ...]
    statistics: Statistics
    scales: dict[str, Scale]
    reference: dict
    raw: dict
    sha256: str
    path: Path

    def seed_ranges(self) -> dict[str, SeedRange]:
        """Every declared seed range by its key: demonstrations, pretraining, suites (and their reserved ranges)."""
        ranges = {r.key: r for r in (*self.demonstrations.values(), *self.motion_pretraining.values())}
        for suite in self.suites.values():
            ranges[suite.seeds.key] = suite.seeds
            if suite.reserved is not None:
                ranges[suite.reserved.key] = suite.reserved
        return ranges

    def training_ranges(self) -> list[SeedRange]:
        """The seeds anything is trained on: demonstrations and motion pretraining (their validation included)."""
        return [*self.demonstrations.values(), *self.motion_pretraining.values()]

    def resolve_steps(self, spec) -> tuple[int, ...]:
        if spec == "final":
            return (self.final_step,)
        if spec == "grid":
            return self.step_grid
        return (int(spec),)


# --- reading -------------------------------------------------------------------------------------------
TOP_KEYS = {"version", "issue", "amendments", "question", "families", "encoders", "motion_pretraining",
            "demonstrations", "variants", "geometric_inputs", "encoder_training", "step_grid", "final_step",
            "training_seeds", "recipe", "choices", "suites", "bars", "verdicts", "pairs", "statistics",
            "reference", "scales"}
REQUIRED_SUITES = ("validation", "test")


def load_protocol(path: str | Path | None = None) -> Protocol:
    """Read and check the protocol (default: the shipped ``policies/protocol.yaml``)."""
    path = Path(path) if path is not None else PROTOCOL_PATH
    try:
        text = path.read_text()
    except OSError as err:
        raise ProtocolFileError(f"cannot read the protocol {path}: {err.strerror or err}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ProtocolFileError(f"{path} is not YAML: {' '.join(str(err).split())}") from None
    return replace(parse_protocol(raw, path), sha256=hashlib.sha256(text.encode()).hexdigest())


def parse_protocol(raw: Any, path: Path | str = "<memory>") -> Protocol:
    """Check a protocol already read from YAML (a dict); see :func:`load_protocol`."""
    doc = _mapping(raw, "")
    _keys(doc, "", required=TOP_KEYS - {"amendments", "question", "issue", "recipe", "choices", "verdicts",
                                         "geometric_inputs", "encoder_training"}, allowed=TOP_KEYS)
    version = _int(doc["version"], "version", minimum=1)
    families = _names(doc["families"], "families")

    encoders = tuple(_mapping(doc["encoders"], "encoders"))
    pretraining = _mapping(doc["motion_pretraining"], "motion_pretraining")
    _keys(pretraining, "motion_pretraining", required={"scenes", "families", "validation"},
          allowed={"scenes", "families", "families_held_out_from_pretraining", "validation", "batch_size"})
    pre_ranges = {k: _seed_range(pretraining[k], f"motion_pretraining.{k}") for k in ("scenes", "validation")}
    pre_families = _names(pretraining["families"], "motion_pretraining.families")
    _subset(pre_families, families, "motion_pretraining.families", "families")
    held_out = _names(pretraining.get("families_held_out_from_pretraining", []),
                      "motion_pretraining.families_held_out_from_pretraining", allow_empty=True)
    if set(held_out) & set(pre_families):
        raise ProtocolSchemaError(f"{sorted(set(held_out) & set(pre_families))} are both held out from and part of "
                                  "pretraining", "motion_pretraining.families_held_out_from_pretraining")

    demos = _mapping(doc["demonstrations"], "demonstrations")
    _keys(demos, "demonstrations", required={"train", "validation"}, allowed={"train", "validation", "oracle",
                                                                                "frames_every"})
    demo_ranges = {k: _seed_range(demos[k], f"demonstrations.{k}") for k in ("train", "validation")}
    for key, r in (("demonstrations.train", demo_ranges["train"]), ("motion_pretraining.scenes", pre_ranges["scenes"])):
        if r.split != "train":
            raise ProtocolSeedError(f"training scenes must come from the train split, not {r.split!r}", key)

    variants = {}
    for name, spec in _mapping(doc["variants"], "variants").items():
        key = f"variants.{name}"
        spec = _mapping(spec, key)
        _keys(spec, key, required={"encoder", "forecast_input", "geometric_inputs", "role"},
              allowed={"encoder", "forecast_input", "geometric_inputs", "role"})
        if spec["encoder"] not in encoders:
            raise ProtocolSchemaError(f"unknown encoder {spec['encoder']!r}; declared: {', '.join(encoders)}",
                                      f"{key}.encoder")
        if spec["role"] not in ("primary", "ablation", "control"):
            raise ProtocolSchemaError(f"role must be primary, ablation or control, got {spec['role']!r}", f"{key}.role")
        variants[str(name)] = Variant(str(name), spec["encoder"],
                                      _bool(spec["forecast_input"], f"{key}.forecast_input"),
                                      _bool(spec["geometric_inputs"], f"{key}.geometric_inputs"), spec["role"])
    for needed in ("A", "B"):
        if needed not in variants:
            raise ProtocolSchemaError(f"variant {needed} is missing: the experiment compares A and B", "variants")

    grid = tuple(_int(s, f"step_grid[{i}]", minimum=1) for i, s in enumerate(_list(doc["step_grid"], "step_grid")))
    if not grid or list(grid) != sorted(set(grid)):
        raise ProtocolSchemaError(f"must be non-empty, strictly increasing, got {list(grid)}", "step_grid")
    final = _int(doc["final_step"], "final_step", minimum=1)
    if final != grid[-1]:
        raise ProtocolSchemaError(f"must be the grid's last step {grid[-1]}, got {final}", "final_step")
    seeds = tuple(_int(s, f"training_seeds[{i}]", minimum=0)
                  for i, s in enumerate(_list(doc["training_seeds"], "training_seeds")))
    if len(set(seeds)) != len(seeds) or len(seeds) < MIN_TRAINING_SEEDS:
        raise ProtocolSchemaError(f"need at least {MIN_TRAINING_SEEDS} distinct training seeds, got {list(seeds)}",
                                  "training_seeds")

    suites = {}
    for name, spec in _mapping(doc["suites"], "suites").items():
        key = f"suites.{name}"
        spec = _mapping(spec, key)
        _keys(spec, key, required={"split", "seeds", "options"}, allowed={"split", "seeds", "reserved", "options"})
        split = spec["split"]
        if split not in SPLITS:
            raise ProtocolSeedError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}", f"{key}.split")
        suite_seeds = _seed_range({"split": split, **_mapping(spec["seeds"], f"{key}.seeds")}, f"{key}.seeds")
        reserved = None
        if "reserved" in spec:
            reserved = _seed_range({"split": split, **_mapping(spec["reserved"], f"{key}.reserved")}, f"{key}.reserved")
            if not (reserved.start <= suite_seeds.start and suite_seeds.stop <= reserved.stop):
                raise ProtocolSeedError(f"{suite_seeds} lies outside the reserved range {reserved}", f"{key}.seeds")
        suites[str(name)] = Suite(str(name), split, suite_seeds, reserved, str(spec["options"]))
    for name in REQUIRED_SUITES:
        if name not in suites:
            raise ProtocolSchemaError(f"suite {name!r} is missing", "suites")
    if suites["validation"].split != "validation":
        raise ProtocolSeedError("the validation suite must use validation seeds", "suites.validation.split")
    if suites["test"].split != "test":
        raise ProtocolSeedError("the test suite must use test seeds", "suites.test.split")
    if suites["test"].reserved is None:
        raise ProtocolSchemaError("the test suite needs a reserved range", "suites.test")
    if suites["validation"].seeds.count < MIN_VALIDATION_PER_FAMILY:
        raise ProtocolSchemaError(f"need at least {MIN_VALIDATION_PER_FAMILY} validation seeds per family, got "
                                  f"{suites['validation'].seeds.count}", "suites.validation.seeds.count")

    bars = tuple(_bar(b, f"bars[{i}]", variants, grid, final) for i, b in enumerate(_list(doc["bars"], "bars")))
    if len({b.id for b in bars}) != len(bars):
        raise ProtocolSchemaError("bar ids must be unique", "bars")
    pairs = []
    for i, pair in enumerate(_list(doc["pairs"], "pairs")):
        pair = tuple(_list(pair, f"pairs[{i}]"))
        if len(pair) != 2 or pair[0] == pair[1] or any(v not in variants for v in pair):
            raise ProtocolSchemaError(f"a pair is two different declared variants, got {list(pair)}", f"pairs[{i}]")
        pairs.append((str(pair[0]), str(pair[1])))

    statistics = _statistics(doc["statistics"])
    scales = {str(name): _scale(spec, f"scales.{name}", str(name), variants, grid, seeds, suites, doc)
              for name, spec in _mapping(doc["scales"], "scales").items()}
    if not scales:
        raise ProtocolSchemaError("declare at least one scale", "scales")
    reference = _mapping(doc["reference"], "reference")

    protocol = Protocol(version, families, variants, encoders, grid, final, seeds, demo_ranges, pre_ranges,
                        pre_families, suites, bars, tuple(pairs), statistics, scales, reference, doc, "", Path(path))
    check_seed_ranges(protocol)
    return protocol


def check_seed_ranges(protocol: Protocol) -> None:
    """Every range inside its split; ranges of one split pairwise disjoint, except a suite inside its own
    reserved range; nothing trained on touches a validation or test suite's seeds."""
    ranges = protocol.seed_ranges()
    for key, r in ranges.items():
        split = SPLITS[r.split]
        if not (split.start <= r.start and r.stop <= split.stop):
            raise ProtocolSeedError(f"{r} leaves the {r.split} split ({split.start}-{split.stop - 1})", key)
    own = {s.seeds.key: s.reserved.key for s in protocol.suites.values() if s.reserved is not None}
    items = sorted(ranges.items())
    for i, (key_a, a) in enumerate(items):
        for key_b, b in items[i + 1:]:
            if a.split != b.split or not a.overlaps(b):
                continue
            if own.get(key_a) == key_b or own.get(key_b) == key_a:
                continue
            raise ProtocolSeedError(f"{a} overlaps {key_b} ({b})", key_a)


# --- pieces ----------------------------------------------------------------------------------------------
def _bar(raw, key, variants, grid, final) -> Bar:
    spec = _mapping(raw, key)
    _keys(spec, key, required={"id", "kind", "threshold"}, allowed={"id", "kind", "threshold", "variant", "variants",
                                                                     "step", "steps"})
    kind = spec["kind"]
    if kind not in BAR_KINDS:
        raise ProtocolSchemaError(f"kind must be one of {', '.join(BAR_KINDS)}, got {kind!r}", f"{key}.kind")
    names = (spec["variant"],) if "variant" in spec else tuple(_list(spec.get("variants", []), f"{key}.variants"))
    if len(names) != (1 if kind == "rate" else 2) or any(v not in variants for v in names):
        raise ProtocolSchemaError(f"a {kind} bar names {'one' if kind == 'rate' else 'two'} declared variant(s), "
                                  f"got {list(names)}", key)
    where = spec.get("steps", spec.get("step"))
    if where is None:
        raise ProtocolSchemaError("say at which step (step: N | final, or steps: grid)", key)
    steps = grid if where == "grid" else (final,) if where == "final" else (_int(where, f"{key}.step", minimum=1),)
    if any(s not in grid for s in steps):
        raise ProtocolSchemaError(f"step {where} is not on the step grid {list(grid)}", f"{key}.step")
    threshold = spec["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ProtocolSchemaError(f"must be a number, got {threshold!r}", f"{key}.threshold")
    return Bar(str(spec["id"]), kind, tuple(map(str, names)), tuple(steps), float(threshold))


def _statistics(raw) -> Statistics:
    spec = _mapping(raw, "statistics")
    _keys(spec, "statistics", required={"level", "bootstrap"}, allowed={"level", "unit", "n_per_cell", "bootstrap",
                                                                       "multiplicity", "per_seed_spread"})
    level = spec["level"]
    if isinstance(level, bool) or not isinstance(level, float) or not 0.5 < level < 1:
        raise ProtocolSchemaError(f"must lie in (0.5, 1), got {level!r}", "statistics.level")
    boot = _mapping(spec["bootstrap"], "statistics.bootstrap")
    _keys(boot, "statistics.bootstrap", required={"replicates", "seed", "resample", "scene_draw", "strata"},
          allowed={"method", "replicates", "seed", "resample", "scene_draw", "strata", "paired_over"})
    if list(boot["resample"]) != ["training_seed", "scene"]:
        raise ProtocolSchemaError(f"resample training_seed then scene, got {boot['resample']}",
                                  "statistics.bootstrap.resample")
    if boot["scene_draw"] not in ("crossed", "nested"):
        raise ProtocolSchemaError(f"crossed or nested, got {boot['scene_draw']!r}", "statistics.bootstrap.scene_draw")
    if boot["strata"] not in ("family", "none"):
        raise ProtocolSchemaError(f"family or none, got {boot['strata']!r}", "statistics.bootstrap.strata")
    return Statistics(level, _int(boot["replicates"], "statistics.bootstrap.replicates", minimum=100),
                      _int(boot["seed"], "statistics.bootstrap.seed", minimum=0), boot["scene_draw"], boot["strata"])


def _scale(raw, key, name, variants, grid, seeds, suites, doc) -> Scale:
    spec = _mapping(raw, key)
    fields = {"variants", "encoder_training", "steps", "training_seeds", "validation_episodes_per_family",
              "test_episodes_per_family", "ood_episodes_per_family", "command"}
    _keys(spec, key, required=fields, allowed=fields | {"budget"})
    names = tuple(map(str, _list(spec["variants"], f"{key}.variants")))
    if not names or any(v not in variants for v in names):
        raise ProtocolSchemaError(f"variants must be declared ones, got {list(names)}", f"{key}.variants")
    for needed in ("A", "B"):
        if needed not in names:
            raise ProtocolSchemaError(f"every scale runs A and B, {needed} is missing", f"{key}.variants")
    training = tuple(map(str, _list(spec["encoder_training"], f"{key}.encoder_training")))
    known_training = tuple(_mapping(doc.get("encoder_training", {}), "encoder_training"))
    if not training or any(t not in known_training for t in training):
        raise ProtocolSchemaError(f"encoder_training must be among {list(known_training)}, got {list(training)}",
                                  f"{key}.encoder_training")
    steps = tuple(_int(s, f"{key}.steps", minimum=1) for s in _list(spec["steps"], f"{key}.steps"))
    if not steps or any(s not in grid for s in steps):
        raise ProtocolSchemaError(f"steps must come from the step grid {list(grid)}, got {list(steps)}", f"{key}.steps")
    n_seeds = _int(spec["training_seeds"], f"{key}.training_seeds", minimum=1)
    if not MIN_TRAINING_SEEDS <= n_seeds <= len(seeds):
        raise ProtocolSchemaError(f"between {MIN_TRAINING_SEEDS} and the {len(seeds)} declared training seeds, got "
                                  f"{n_seeds}", f"{key}.training_seeds")
    counts = {}
    for field, suite in (("validation_episodes_per_family", "validation"), ("test_episodes_per_family", "test"),
                         ("ood_episodes_per_family", "ood")):
        counts[suite] = _int(spec[field], f"{key}.{field}", minimum=0)
        available = suites[suite].seeds.count if suite in suites else 0
        if counts[suite] > available:
            raise ProtocolSchemaError(f"the {suite} suite declares {available} seeds per family, asked for "
                                      f"{counts[suite]}", f"{key}.{field}")
    if counts["validation"] < MIN_VALIDATION_PER_FAMILY:
        raise ProtocolSchemaError(f"every choice needs at least {MIN_VALIDATION_PER_FAMILY} validation episodes per "
                                  f"family, got {counts['validation']}", f"{key}.validation_episodes_per_family")
    if counts["test"] < 1:
        raise ProtocolSchemaError("a scale runs the test suite", f"{key}.test_episodes_per_family")
    command = spec["command"]
    if not isinstance(command, str) or not command.strip():
        raise ProtocolSchemaError("give the command that runs this scale", f"{key}.command")
    return Scale(name, names, training, steps, n_seeds, counts["validation"], counts["test"], counts["ood"],
                 " ".join(command.split()))


def _seed_range(raw, key) -> SeedRange:
    spec = _mapping(raw, key)
    _keys(spec, key, required={"split", "start", "count"}, allowed={"split", "start", "count"})
    if spec["split"] not in SPLITS:
        raise ProtocolSeedError(f"unknown split {spec['split']!r}; choose from {', '.join(SPLITS)}", f"{key}.split")
    return SeedRange(spec["split"], _int(spec["start"], f"{key}.start", minimum=0),
                     _int(spec["count"], f"{key}.count", minimum=1), key)


def _mapping(value, key) -> dict:
    if not isinstance(value, dict):
        raise ProtocolSchemaError(f"expected a mapping, got {type(value).__name__}", key)
    return value


def _list(value, key) -> list:
    if not isinstance(value, list):
        raise ProtocolSchemaError(f"expected a list, got {type(value).__name__}", key)
    return value


def _keys(spec: dict, key: str, required: set, allowed: set) -> None:
    where = f"{key}." if key else ""
    missing = sorted(required - set(spec))
    if missing:
        raise ProtocolSchemaError(f"missing {', '.join(missing)}", f"{where}{missing[0]}")
    unknown = sorted(set(map(str, spec)) - allowed)
    if unknown:
        raise ProtocolSchemaError(f"unknown key (known: {', '.join(sorted(allowed))})", f"{where}{unknown[0]}")


def _int(value, key, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolSchemaError(f"expected a whole number, got {value!r}", key)
    if minimum is not None and value < minimum:
        raise ProtocolSchemaError(f"must be >= {minimum}, got {value}", key)
    return value


def _bool(value, key) -> bool:
    if not isinstance(value, bool):
        raise ProtocolSchemaError(f"expected true or false, got {value!r}", key)
    return value


def _names(value, key, allow_empty: bool = False) -> tuple[str, ...]:
    names = tuple(map(str, _list(value, key)))
    if (not names and not allow_empty) or len(set(names)) != len(names):
        raise ProtocolSchemaError(f"expected distinct names, got {list(names)}", key)
    return names


def _subset(names, of, key, of_key) -> None:
    extra = sorted(set(names) - set(of))
    if extra:
        raise ProtocolSchemaError(f"{extra} are not in {of_key}", key)
