"""The task vocabulary (colours, objects, containers, relations, directions, phrasings).

One file, ``config/vocabulary.yaml``, is the source of truth for the harness, the speech grammar and the
nodes (a core module, so that speech and grounding need no simulator).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

from molmomotion_ros.paths import config_path


@dataclass(frozen=True)
class Vocabulary:
    colours: dict[str, tuple[float, float, float, float]]
    objects: dict[str, dict]
    containers: dict[str, dict]
    relations: dict[str, np.ndarray]
    directions: dict[str, np.ndarray]
    phrasings: dict[str, list[str]]

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Vocabulary":
        raw = yaml.safe_load(Path(path).read_text())
        return cls(
            colours={k: tuple(v) for k, v in raw["colours"].items()},
            objects=dict(raw["objects"]),
            containers=dict(raw["containers"]),
            relations={k: np.asarray(v, dtype=float) for k, v in raw["relations"].items()},
            directions={k: np.asarray(v, dtype=float) for k, v in raw["directions"].items()},
            phrasings={k: list(v) for k, v in raw["phrasings"].items()},
        )

    def words(self) -> list[str]:
        """Every distinct lower-case word an instruction can contain (for a speech grammar)."""
        texts = [*self.colours, *self.objects, *self.containers, *self.relations, *self.directions]
        texts += [c["preposition"] for c in self.containers.values()]
        for templates in self.phrasings.values():
            texts += [re.sub(r"\{[a-z_]+\}", " ", t) for t in templates]
        return sorted({w for t in texts for w in t.lower().split()})


@lru_cache(maxsize=1)
def default_vocabulary() -> Vocabulary:
    return Vocabulary.from_yaml(config_path("vocabulary.yaml"))
