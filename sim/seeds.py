"""Disjoint seed ranges per split: an episode is fully determined by (family, seed)."""

from __future__ import annotations

SPLITS: dict[str, range] = {
    "train": range(0, 100_000),
    "validation": range(100_000, 110_000),
    "test": range(110_000, 120_000),
    "ood": range(120_000, 130_000),  # held-out colour/object combinations and camera jitter
}


class SeedRangeError(ValueError):
    """A seed or seed range does not belong to the split it claims, or ranges overlap."""


def split_seeds(split: str, count: int, start: int = 0) -> list[int]:
    """The first ``count`` seeds of ``split`` after skipping ``start``."""
    if split not in SPLITS:
        raise SeedRangeError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    r = SPLITS[split]
    if count <= 0:
        raise SeedRangeError(f"episode count must be positive, got {count}")
    if start < 0 or start + count > len(r):
        raise SeedRangeError(f"split {split!r} holds {len(r)} seeds; asked for {start}..{start + count}")
    return list(r[start : start + count])


def split_of(seed: int) -> str:
    for name, r in SPLITS.items():
        if seed in r:
            return name
    raise SeedRangeError(f"seed {seed} lies in no split ({_describe()})")


def _describe() -> str:
    return ", ".join(f"{k}: {r.start}-{r.stop - 1}" for k, r in SPLITS.items())
