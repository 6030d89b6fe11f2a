"""Phrasing sets: files of per-family instruction templates that replace the vocabulary's own.

A set is a YAML file (``config/phrasings/<name>.yaml`` or any path) with the layout of the vocabulary's
``phrasings`` section, plus ``held_out: true`` when it is a test set that must never be trained on
(``config/phrasings/heldout.yaml``, the held-out language test of issue 18, and ``heldout2.yaml``, a second one
written blind to the instruction parser)::

    held_out: true              # optional; such a set is refused for the train and validation splits
    new_words: [...]            # optional documentation: words no training instruction contains
    phrasings:
      push: ["<template using {colour}, {object} and {direction}>", ...]

The harness picks a set's template from a generator of its own, seeded by ``(seed, family)`` and never by the
scene's, so a scene is the same whichever set phrases it, and the same episode gets the same sentence in
``sim-eval`` and in ``eval-forecast`` (which re-phrases recorded episodes from their phrase fields).
"""

from __future__ import annotations

import re
import string
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

from molmomotion_ros.paths import config_path

PHRASINGS_DIR_NAME = "phrasings"  # under config/
SET_KEYS = frozenset({"held_out", "new_words", "phrasings", "description"})
HELD_OUT_SPLITS = ("train", "validation")  # splits a held-out set may never phrase (data for fitting or choosing)
OPTIONAL_FIELDS = frozenset({"preposition"})  # a template may say "into" instead of the container's preposition
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class PhrasingError(ValueError):
    """A phrasing set is missing, malformed, or does not fit the task families."""


@dataclass(frozen=True)
class PhrasingSet:
    name: str
    source: str  # the file it was read from
    templates: dict[str, tuple[str, ...]]  # family → templates with {placeholders}
    held_out: bool = False

    def phrase(self, family: str, seed: int, fields: dict[str, str]) -> str:
        """The instruction of episode ``(family, seed)``: a template drawn by ``(seed, family)``, filled."""
        templates = self.templates.get(family)
        if not templates:
            raise PhrasingError(f"phrasing set {self.name!r} has no phrasings for family {family!r}")
        rng = np.random.default_rng([int(seed), zlib.crc32(family.encode())])  # never the scene's generator
        return templates[int(rng.integers(len(templates)))].format(**fields)

    def describe(self) -> dict:
        """What results files record about the phrasing source."""
        return {"name": self.name, "source": self.source, "held_out": self.held_out}

    def check_fields(self, family: str, fields: set[str]) -> None:
        """PhrasingError unless every template of ``family`` uses only ``fields`` and all but the optional ones."""
        if family not in self.templates:
            raise PhrasingError(f"phrasing set {self.name!r} has no phrasings for family {family!r}")
        for template in self.templates[family]:
            used = placeholders(template)
            if used - fields:
                raise PhrasingError(f"phrasing set {self.name!r}, {family}: {template!r} uses "
                                    f"{{{sorted(used - fields)[0]}}}, which the family does not fill")
            if fields - OPTIONAL_FIELDS - used:
                raise PhrasingError(f"phrasing set {self.name!r}, {family}: {template!r} leaves out "
                                    f"{{{sorted(fields - OPTIONAL_FIELDS - used)[0]}}}")


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def phrasings_dir() -> Path:
    return config_path(PHRASINGS_DIR_NAME)


def resolve_phrasing_path(name_or_path: str | Path) -> Path:
    """A file path as given, or the shipped set of that name (``heldout`` → config/phrasings/heldout.yaml)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.suffix == "" and path.parent == Path(".") and _NAME.fullmatch(path.name):
        shipped = phrasings_dir() / f"{path.name}.yaml"
        if shipped.is_file():
            return shipped
        names = ", ".join(sorted(p.stem for p in phrasings_dir().glob("*.yaml")))
        raise PhrasingError(f"no phrasing file {str(path)!r} and no shipped set of that name ({names})")
    raise PhrasingError(f"phrasing file {str(path)!r} does not exist")


def load_phrasing_set(name_or_path: str | Path) -> PhrasingSet:
    """Read and check a phrasing set (a path, or the name of a shipped set); cached per resolved file."""
    return _load(str(resolve_phrasing_path(name_or_path).resolve()), str(name_or_path))


@lru_cache(maxsize=8)
def _load(path: str, given: str) -> PhrasingSet:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise PhrasingError(f"cannot read phrasing file {path!r}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise PhrasingError(f"phrasing file {path!r} is not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("phrasings"), dict) or not raw["phrasings"]:
        raise PhrasingError(f"phrasing file {path!r}: expected a mapping with a non-empty 'phrasings' mapping")
    unknown = sorted(str(k) for k in raw if k not in SET_KEYS)
    if unknown:
        raise PhrasingError(f"phrasing file {path!r}: unknown key {unknown[0]!r}; "
                            f"allowed: {', '.join(sorted(SET_KEYS))}")
    templates = {}
    for family, items in raw["phrasings"].items():
        if not isinstance(items, list) or not items or not all(isinstance(t, str) and t.strip() for t in items):
            raise PhrasingError(f"phrasing file {path!r}: {family!r} must be a non-empty list of templates")
        templates[str(family)] = tuple(items)
    name = given if _NAME.fullmatch(given) and not Path(given).suffix else Path(path).stem
    return PhrasingSet(name=name, source=path, templates=templates, held_out=bool(raw.get("held_out", False)))


def check_split_allowed(phrasing_set: PhrasingSet, split: str) -> None:
    """PhrasingError if a held-out set would phrase data meant for fitting or choosing (train/validation)."""
    if phrasing_set.held_out and split in HELD_OUT_SPLITS:
        raise PhrasingError(f"phrasing set {phrasing_set.name!r} is held out for testing; it never phrases "
                            f"{split!r} data (use the test or ood split)")
