"""Evaluation suites as YAML files: a new suite is a new file, never new code.

A suite names a seed split, the task families to run, how many episodes of each, and the
:class:`~molmomotion_sim.tasks.base.TaskOptions` they run under. An episode is fully determined by
``(family, seed, options)``, so a suite file pins down every scene an agent is scored on.

File format (``config/suites/*.yaml``; ``config/suites/README.md`` has the same description)::

    name: main                 # optional; defaults to the file name without .yaml
    description: ...           # optional free text
    split: test                # train | validation | test | ood (molmomotion_sim.seeds.SPLITS)
    episodes_per_family: 100   # episodes of every family that sets neither `episodes` nor seeds
    families:                  # task family names (molmomotion_sim.tasks.TASKS) → per-family settings
      place-in-container: {}   # default: the split's first `episodes_per_family` seeds
      place-relative: {episodes: 20}                   # the split's first 20 seeds
      stack: {seeds: [110000, 110007]}                 # exactly these seeds
      push: {seed_range: [110000, 110050], episodes: 10, options: {distractors: [0, 1]}}
    options:                   # TaskOptions fields for every family; a family's `options` override
      camera_jitter_m: 0.0     # per field
      exclude_combinations: [[red, duck]]

Rules, each enforced by :func:`load_suite` with a one-line :class:`SuiteError`:

* ``split`` and ``families`` are required; unknown keys at any level are errors.
* ``seeds`` (an explicit list) and ``seed_range`` (half-open ``[start, stop)``, like ``range``) are
  mutually exclusive; with ``episodes`` the first ``episodes`` seeds of that pool are used.
* Every seed must lie in the suite's split, so a suite can never mix seeds of two splits (the
  splits' ranges are disjoint: train, validation, test and ood never overlap). Different families
  may reuse the same seeds — their scenes differ because the family differs.
* Episode counts are positive integers; seeds in one family are unique.
* Option names must be TaskOptions fields; colours, objects and containers must be in the
  vocabulary (``config/vocabulary.yaml``); ``phrasings`` indices must exist for every family that
  uses them; ``phrasing_set`` (a set in ``config/phrasings`` or a path, instead of the vocabulary's
  phrasings) must phrase every family it applies to with that family's fields, and cannot go with
  ``phrasings``; ``camera_jitter_m`` is a non-negative number; ``distractors`` is ``[min, max]``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, NamedTuple

import yaml

from molmomotion_ros.paths import config_path
from molmomotion_ros.phrasings import PhrasingError, load_phrasing_set, placeholders
from molmomotion_ros.vocabulary import Vocabulary, default_vocabulary

from .seeds import SPLITS, SeedRangeError, split_of, split_seeds
from .tasks import TASKS
from .tasks.base import TaskOptions

SUITE_KEYS = frozenset({"name", "description", "split", "episodes_per_family", "families", "options"})
FAMILY_KEYS = frozenset({"episodes", "seeds", "seed_range", "options"})
SUITES_DIR_NAME = "suites"  # under config/
SUITE_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class SuiteError(ValueError):
    """A suite file is missing, malformed, or names something that does not exist."""


class EpisodeSpec(NamedTuple):
    """One episode to run: a task family, a seed and the options its scene is drawn with."""

    family: str
    seed: int
    options: TaskOptions


@dataclass(frozen=True)
class FamilySpec:
    """The episodes of one family in a suite."""

    family: str
    seeds: tuple[int, ...]  # the seeds that run, in order
    options: TaskOptions
    seed_pool: tuple[int, ...] | None = None  # explicit `seeds`/`seed_range` of the file, if any


@dataclass(frozen=True)
class Suite:
    name: str
    split: str
    families: tuple[FamilySpec, ...]
    description: str = ""
    source: str = ""  # the file it was loaded from

    def episodes(self) -> list[EpisodeSpec]:
        """Every (family, seed, options) of the suite, family by family in file order."""
        return [EpisodeSpec(f.family, seed, f.options) for f in self.families for seed in f.seeds]

    @property
    def family_names(self) -> tuple[str, ...]:
        return tuple(f.family for f in self.families)

    def __len__(self) -> int:
        return sum(len(f.seeds) for f in self.families)

    def select(self, families: list[str] | None = None, episodes_per_family: int | None = None) -> "Suite":
        """A copy restricted to ``families`` and/or with ``episodes_per_family`` episodes of each.

        Families drawing default seeds take the split's first N seeds; families with an explicit
        seed pool take the pool's first N and fail if the pool is smaller.
        """
        chosen = list(self.families)
        if families is not None:
            if not families:
                raise SuiteError("no families selected")
            by_name = {f.family: f for f in self.families}
            for name in families:
                if name not in TASKS:
                    raise SuiteError(f"unknown family {name!r}; choose from {', '.join(sorted(TASKS))}")
                if name not in by_name:
                    raise SuiteError(f"suite {self.name!r} has no family {name!r}; it has {', '.join(by_name)}")
            chosen = [by_name[name] for name in dict.fromkeys(families)]
        if episodes_per_family is not None:
            count = _positive_int(episodes_per_family, "episodes per family")
            chosen = [self._resize(f, count) for f in chosen]
        return replace(self, families=tuple(chosen))

    def with_phrasing_set(self, phrasing_set: str, vocabulary: Vocabulary | None = None) -> "Suite":
        """The same scenes phrased by another phrasing set (a name in config/phrasings or a path).

        The copy is named ``<suite>-phrasings-<set>`` so its results files never pass for the original's."""
        vocabulary = vocabulary or default_vocabulary()
        families = []
        for spec in self.families:
            where = f"suite {self.name!r}, family {spec.family!r}"
            if spec.options.phrasings is not None:
                raise SuiteError(f"{where}: 'phrasings' picks the vocabulary's templates; "
                                 "it cannot go with a phrasing set")
            checked = _phrasing_set(phrasing_set, vocabulary, spec.family, where)
            families.append(replace(spec, options=replace(spec.options, phrasing_set=checked)))
        set_name = load_phrasing_set(phrasing_set).name
        return replace(self, name=f"{self.name}-phrasings-{set_name}", families=tuple(families))

    def _resize(self, spec: FamilySpec, count: int) -> FamilySpec:
        if spec.seed_pool is None:
            return replace(spec, seeds=tuple(_split_seeds(self.split, count)))
        if count > len(spec.seed_pool):
            raise SuiteError(
                f"family {spec.family!r} of suite {self.name!r} lists {len(spec.seed_pool)} seeds; "
                f"cannot run {count} episodes"
            )
        return replace(spec, seeds=spec.seed_pool[:count])


# --- loading -----------------------------------------------------------------------------------
def suites_dir() -> Path:
    return config_path(SUITES_DIR_NAME)


def shipped_suites() -> list[str]:
    """Names of the suites under ``config/suites/``."""
    return sorted(p.stem for p in suites_dir().glob("*.yaml"))


def resolve_suite_path(name_or_path: str | Path) -> Path:
    """A file path as given, or the shipped suite of that name (``smoke`` → config/suites/smoke.yaml)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.suffix == "" and path.parent == Path("."):
        shipped = suites_dir() / f"{path.name}.yaml"
        if shipped.is_file():
            return shipped
        raise SuiteError(f"no suite file {str(path)!r} and no shipped suite of that name "
                         f"({', '.join(shipped_suites())})")
    if path.is_dir():
        raise SuiteError(f"suite path {str(path)!r} is a directory, not a YAML file")
    raise SuiteError(f"suite file {str(path)!r} does not exist")


def load_suite(name_or_path: str | Path, vocabulary: Vocabulary | None = None) -> Suite:
    """Read and validate a suite file (a path, or the name of a shipped suite)."""
    path = resolve_suite_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise SuiteError(f"cannot read suite file {str(path)!r}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise SuiteError(f"suite file {str(path)!r} is not valid YAML: {_one_line(err)}") from None
    return parse_suite(raw, source=str(path), default_name=path.stem, vocabulary=vocabulary)


def parse_suite(raw: Any, source: str = "<dict>", default_name: str = "suite",
                vocabulary: Vocabulary | None = None) -> Suite:
    """Validate the contents of a suite file (already parsed from YAML)."""
    vocabulary = vocabulary or default_vocabulary()
    where = f"suite {source}"
    if not isinstance(raw, dict):
        raise SuiteError(f"{where}: expected a mapping of suite fields, got {type(raw).__name__}")
    _check_keys(raw, SUITE_KEYS, where)
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not SUITE_NAME.fullmatch(name):
        raise SuiteError(f"{where}: name {name!r} must be letters, digits, '.', '_' or '-' (it names result files)")
    where = f"suite {name!r}"
    if "split" not in raw:
        raise SuiteError(f"{where}: missing 'split' (one of {', '.join(SPLITS)})")
    split = raw["split"]
    if split not in SPLITS:
        raise SuiteError(f"{where}: unknown split {split!r}; choose from {', '.join(SPLITS)}")
    default_count = raw.get("episodes_per_family")
    if default_count is not None:
        default_count = _positive_int(default_count, f"{where}: episodes_per_family")
    families_raw = raw.get("families")
    if not isinstance(families_raw, dict) or not families_raw:
        raise SuiteError(f"{where}: 'families' must be a non-empty mapping of family name → settings")
    suite_options = _mapping(raw.get("options"), f"{where}: options")
    families = tuple(
        _parse_family(family, settings, split, default_count, suite_options, vocabulary, where)
        for family, settings in families_raw.items()
    )
    return Suite(name=name, split=split, families=families, description=str(raw.get("description", "")),
                 source=source)


def _parse_family(family: Any, settings: Any, split: str, default_count: int | None, suite_options: dict,
                  vocabulary: Vocabulary, where: str) -> FamilySpec:
    if family not in TASKS:
        raise SuiteError(f"{where}: unknown family {family!r}; choose from {', '.join(sorted(TASKS))}")
    where = f"{where}, family {family!r}"
    settings = _mapping(settings, where)
    _check_keys(settings, FAMILY_KEYS, where)
    if "seeds" in settings and "seed_range" in settings:
        raise SuiteError(f"{where}: give 'seeds' or 'seed_range', not both")
    pool = _seed_pool(settings, split, where)
    count = settings.get("episodes")
    if count is not None:
        count = _positive_int(count, f"{where}: episodes")
    if pool is None:
        count = count or default_count
        if count is None:
            raise SuiteError(f"{where}: no episode count (set 'episodes' or the suite's 'episodes_per_family')")
        seeds = tuple(_split_seeds(split, count, where))
    else:
        count = count or len(pool)
        if count > len(pool):
            raise SuiteError(f"{where}: asks for {count} episodes but lists only {len(pool)} seeds")
        seeds = pool[:count]
    options = parse_options({**suite_options, **_mapping(settings.get("options"), f"{where}: options")},
                            family, vocabulary, where)
    return FamilySpec(family=family, seeds=seeds, options=options, seed_pool=pool)


def _seed_pool(settings: dict, split: str, where: str) -> tuple[int, ...] | None:
    if "seeds" in settings:
        raw = settings["seeds"]
        if not isinstance(raw, list) or not raw:
            raise SuiteError(f"{where}: 'seeds' must be a non-empty list of integers")
        pool = tuple(_int(s, f"{where}: seed") for s in raw)
        if len(set(pool)) != len(pool):
            duplicate = next(s for s in pool if pool.count(s) > 1)
            raise SuiteError(f"{where}: seed {duplicate} is listed twice")
    elif "seed_range" in settings:
        raw = settings["seed_range"]
        if not isinstance(raw, list) or len(raw) != 2:
            raise SuiteError(f"{where}: 'seed_range' must be [start, stop) (two integers)")
        start, stop = (_int(s, f"{where}: seed_range") for s in raw)
        if stop <= start:
            raise SuiteError(f"{where}: seed_range [{start}, {stop}) is empty")
        pool = tuple(range(start, stop))
    else:
        return None
    allowed = SPLITS[split]
    for seed in pool if "seeds" in settings else (pool[0], pool[-1]):  # a range is contiguous
        if seed not in allowed:
            raise SuiteError(f"{where}: seed {seed} is not in the {split!r} split ({_seed_home(seed)}); "
                             f"a suite uses seeds of one split only")
    return pool


def _seed_home(seed: int) -> str:
    try:
        return f"it belongs to {split_of(seed)!r}"
    except SeedRangeError:
        return "it lies in no split"


def _split_seeds(split: str, count: int, where: str = "") -> list[int]:
    try:
        return split_seeds(split, count)
    except SeedRangeError as err:
        raise SuiteError(f"{where + ': ' if where else ''}{err}") from None


# --- options -----------------------------------------------------------------------------------
def parse_options(raw: dict, family: str, vocabulary: Vocabulary | None = None, where: str = "options") -> TaskOptions:
    """TaskOptions from a plain mapping, checking every name against the vocabulary."""
    vocabulary = vocabulary or default_vocabulary()
    known = {f.name for f in fields(TaskOptions)}
    values = {}
    for key, value in raw.items():
        if key not in known:
            raise SuiteError(f"{where}: unknown option {key!r}; TaskOptions has {', '.join(sorted(known))}")
        values[key] = _OPTION_PARSERS[key](value, vocabulary, family, f"{where}: option {key!r}")
    options = TaskOptions(**values)
    if options.phrasings is not None and options.phrasing_set is not None:
        raise SuiteError(f"{where}: 'phrasings' picks the vocabulary's templates; it cannot go with 'phrasing_set'")
    _check_targets_left(options, where)
    return options


def _names(kind: str, allowed_of: Callable[[Vocabulary], Any]):
    def parse(value, vocabulary: Vocabulary, family: str, where: str) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not isinstance(value, list) or not value:
            raise SuiteError(f"{where}: expected a non-empty list of {kind} names")
        allowed = allowed_of(vocabulary)
        for name in value:
            if name not in allowed:
                raise SuiteError(f"{where}: unknown {kind} {name!r}; choose from {', '.join(allowed)}")
        return tuple(value)

    return parse


def _combinations(value, vocabulary: Vocabulary, family: str, where: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise SuiteError(f"{where}: expected a list of [colour, object] pairs")
    pairs = []
    for pair in value:
        if not isinstance(pair, list) or len(pair) != 2:
            raise SuiteError(f"{where}: expected [colour, object] pairs, got {pair!r}")
        colour, kind = pair
        if colour not in vocabulary.colours:
            raise SuiteError(f"{where}: unknown colour {colour!r}; choose from {', '.join(vocabulary.colours)}")
        if kind not in vocabulary.objects:
            raise SuiteError(f"{where}: unknown object {kind!r}; choose from {', '.join(vocabulary.objects)}")
        pairs.append((colour, kind))
    return tuple(pairs)


def _phrasings(value, vocabulary: Vocabulary, family: str, where: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise SuiteError(f"{where}: expected a non-empty list of phrasing indices")
    available = len(vocabulary.phrasings.get(family, ()))
    indices = tuple(_int(i, where) for i in value)
    for i in indices:
        if not 0 <= i < available:
            raise SuiteError(f"{where}: family {family!r} has phrasings 0..{available - 1}, not {i}")
    return indices


def _phrasing_set(value, vocabulary: Vocabulary, family: str, where: str) -> str | None:
    """A phrasing set's name or path, checked to phrase ``family`` with exactly the fields its templates fill."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise SuiteError(f"{where}: expected the name of a phrasing set in config/phrasings or a file path")
    try:
        load_phrasing_set(value).check_fields(family, family_fields(vocabulary, family))
    except PhrasingError as err:
        raise SuiteError(f"{where}: {err}") from None
    return value


def family_fields(vocabulary: Vocabulary, family: str) -> set[str]:
    """The {placeholders} a family fills: those of its templates in the vocabulary."""
    return set().union(*(placeholders(t) for t in vocabulary.phrasings.get(family, ())))


def _jitter(value, vocabulary: Vocabulary, family: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise SuiteError(f"{where}: expected a non-negative number of metres, got {value!r}")
    return float(value)


def _distractors(value, vocabulary: Vocabulary, family: str, where: str) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise SuiteError(f"{where}: expected [min, max] extra objects, got {value!r}")
    lo, hi = (_int(v, where) for v in value)
    if not 0 <= lo <= hi:
        raise SuiteError(f"{where}: need 0 <= min <= max, got [{lo}, {hi}]")
    return lo, hi


_OPTION_PARSERS: dict[str, Callable[[Any, Vocabulary, str, str], Any]] = {
    "objects": _names("object", lambda v: list(v.objects)),
    "colours": _names("colour", lambda v: list(v.colours)),
    "containers": _names("container", lambda v: list(v.containers)),
    "phrasings": _phrasings,
    "phrasing_set": _phrasing_set,
    "exclude_combinations": _combinations,
    "only_combinations": _combinations,
    "camera_jitter_m": _jitter,
    "distractors": _distractors,
}


def _check_targets_left(options: TaskOptions, where: str) -> None:
    if not options.only_combinations:
        return
    excluded = set(options.exclude_combinations)
    left = [
        (c, k) for c, k in options.only_combinations
        if (c, k) not in excluded and (options.colours is None or c in options.colours)
        and (options.objects is None or k in options.objects)
    ]
    if not left:
        raise SuiteError(f"{where}: the options leave no (colour, object) combination for targets")


# --- held-out combinations ---------------------------------------------------------------------
def held_out_combinations(suite: str | Path = "ood") -> tuple[tuple[str, str], ...]:
    """The (colour, object) target combinations reserved for a suite (the union of its families'
    ``only_combinations``); training data and in-distribution suites exclude them."""
    loaded = load_suite(suite)
    combos = dict.fromkeys(c for f in loaded.families for c in f.options.only_combinations)
    return tuple(combos)


# --- small validators --------------------------------------------------------------------------
def _check_keys(raw: dict, allowed: frozenset[str], where: str) -> None:
    unknown = sorted(str(k) for k in raw if k not in allowed)
    if unknown:
        raise SuiteError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SuiteError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SuiteError(f"{where}: expected an integer, got {value!r}")
    return value


def _positive_int(value: Any, where: str) -> int:
    value = _int(value, where)
    if value <= 0:
        raise SuiteError(f"{where}: must be a positive number of episodes, got {value}")
    return value


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())
