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


def seeds_from(split: str, first_seed: int, count: int) -> list[int]:
    """``count`` consecutive seeds of ``split`` from ``first_seed``, a seed of that split (not an offset into it,
    unlike :func:`split_seeds`): the protocol's ranges are written this way (e.g. train from 50000)."""
    if split not in SPLITS:
        raise SeedRangeError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    r = SPLITS[split]
    if count <= 0:
        raise SeedRangeError(f"episode count must be positive, got {count}")
    if first_seed not in r:
        raise SeedRangeError(f"seed {first_seed} is not a {split} seed ({split}: {r.start}-{r.stop - 1})")
    if first_seed + count > r.stop:
        raise SeedRangeError(f"{count} seeds from {first_seed} leave the {split} split, whose last seed is "
                             f"{r.stop - 1}")
    return list(range(first_seed, first_seed + count))


def split_of(seed: int) -> str:
    for name, r in SPLITS.items():
        if seed in r:
            return name
    raise SeedRangeError(f"seed {seed} lies in no split ({_describe()})")


def _describe() -> str:
    return ", ".join(f"{k}: {r.start}-{r.stop - 1}" for k, r in SPLITS.items())
