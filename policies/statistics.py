"""Intervals for success rates measured over training seeds x scenes (issue 21), in pure numpy.

The unit is one episode: training seed ``s``'s checkpoint on scene ``j`` (a family and a test seed),
success 0/1, held as a matrix ``y[s, j]``. Every checkpoint of an experiment runs the same scenes, so
seeds and scenes are crossed; the rate's uncertainty comes from both (another training seed gives another
policy; other scenes are harder or easier), and 300 episodes from 3 seeds x 100 scenes are not 300
independent trials. :func:`bootstrap_rate` resamples both levels:

1. training seeds with replacement (S of S; for a pair, independently per variant: their seeds share only
   a number);
2. scenes with replacement (J of J), within each stratum (family) when ``strata`` is given. ``crossed``
   (the default): one scene draw per replicate, shared by all seeds and by both variants of a pair, as in
   the design; ``nested``: a fresh scene draw for every resampled seed (understates the scene variance of
   a crossed design; kept for comparison).

Intervals are percentile intervals of the replicates; the point estimate is the plain mean of the data.
Every function is deterministic for its ``seed``. With 5 training seeds the percentile interval is somewhat
short: on a simulated logit-normal seeds x scenes model its nominal 95% covered the truth in ~85% of
experiments, the episode-independent Wilson interval in ~45% (``test_statistics.py``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

SCENE_DRAWS = ("crossed", "nested")


class StatisticsError(ValueError):
    """Data the estimators cannot use: empty, ragged, not 0/1 where it must be, or unpaired scenes."""


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval; ``n`` = seeds x scenes (for a pair: scenes x each side's seeds)."""

    value: float
    lo: float
    hi: float
    level: float
    n: int
    seeds: int | tuple[int, int]
    scenes: int
    replicates: int
    method: str

    def as_dict(self) -> dict:
        return asdict(self)


def _matrix(y, name: str = "y") -> np.ndarray:
    a = np.asarray(y, dtype=float)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise StatisticsError(f"{name} must be a (training seeds, scenes) matrix, got shape {np.shape(y)}")
    if not np.all(np.isfinite(a)):
        raise StatisticsError(f"{name} holds missing or infinite values: every seed must run every scene")
    return a


def _strata(strata, scenes: int) -> list[np.ndarray]:
    if strata is None:
        return [np.arange(scenes)]
    labels = np.asarray(strata)
    if labels.shape != (scenes,):
        raise StatisticsError(f"strata must label each of the {scenes} scenes, got shape {labels.shape}")
    return [np.flatnonzero(labels == label) for label in dict.fromkeys(labels.tolist())]


def _counts(rng: np.random.Generator, size: int, replicates: int) -> np.ndarray:
    """(replicates, size) how often each of ``size`` items is drawn when drawing ``size`` with replacement."""
    return rng.multinomial(size, np.full(size, 1.0 / size), size=replicates).astype(float)


def _scene_weights(rng: np.random.Generator, groups: list[np.ndarray], scenes: int, replicates: int) -> np.ndarray:
    """(replicates, scenes) draw counts, each stratum drawn within itself (its size kept)."""
    w = np.zeros((replicates, scenes))
    for members in groups:
        w[:, members] = _counts(rng, len(members), replicates)
    return w


def _mean_crossed(y: np.ndarray, seed_w: np.ndarray, scene_w: np.ndarray) -> np.ndarray:
    """Per replicate: the mean of y over the drawn seeds x the drawn scenes."""
    s, j = y.shape
    return np.einsum("rs,sj,rj->r", seed_w, y, scene_w, optimize=True) / (s * j)


def _replicates_one(y, rng, groups, replicates, scene_draw, scene_w=None) -> np.ndarray:
    s, j = y.shape
    if scene_draw == "crossed":
        scene_w = _scene_weights(rng, groups, j, replicates) if scene_w is None else scene_w
        return _mean_crossed(y, _counts(rng, s, replicates), scene_w)
    # nested: every resampled seed slot gets its own scene draw
    picks = rng.integers(0, s, size=(replicates, s))
    total = np.zeros(replicates)
    for slot in range(s):
        w = _scene_weights(rng, groups, j, replicates)
        total += np.einsum("rj,rj->r", y[picks[:, slot]], w) / j
    return total / s


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    alpha = 1.0 - level
    # A ratio over a zero denominator is infinite: interpolating between infinities gives NaN, so take order
    # statistics then.
    method = "linear" if np.all(np.isfinite(values)) else "nearest"
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2], method=method)
    return float(lo), float(hi)


def _check(level: float, replicates: int, scene_draw: str) -> None:
    if not 0 < level < 1:
        raise StatisticsError(f"level must lie in (0, 1), got {level}")
    if replicates < 100:
        raise StatisticsError(f"use at least 100 replicates, got {replicates}")
    if scene_draw not in SCENE_DRAWS:
        raise StatisticsError(f"scene_draw must be one of {', '.join(SCENE_DRAWS)}, got {scene_draw!r}")


def bootstrap_rate(y, strata=None, level: float = 0.95, replicates: int = 10_000, seed: int = 0,
                   scene_draw: str = "crossed") -> Estimate:
    """The success rate of one cell, ``y`` (training seeds, scenes), with its hierarchical bootstrap interval."""
    _check(level, replicates, scene_draw)
    y = _matrix(y)
    rng = np.random.default_rng(seed)
    values = _replicates_one(y, rng, _strata(strata, y.shape[1]), replicates, scene_draw)
    lo, hi = _interval(values, level)
    return Estimate(float(y.mean()), lo, hi, level, y.size, y.shape[0], y.shape[1], replicates,
                    f"hierarchical bootstrap ({scene_draw}: seeds, then scenes)")


def bootstrap_pair(a, b, strata=None, level: float = 0.95, replicates: int = 10_000, seed: int = 0,
                   scene_draw: str = "crossed", statistic: str = "difference",
                   paired_seeds: bool = False) -> Estimate:
    """A against B on the same scenes (columns aligned): ``difference`` (rate A − rate B) or ``ratio``
    (rate A / rate B), paired per scene: each replicate draws the scenes once for both. Seeds are drawn
    independently for A and B unless ``paired_seeds`` (same number of seeds, row s of A paired with row s of B)."""
    _check(level, replicates, scene_draw)
    if statistic not in ("difference", "ratio"):
        raise StatisticsError(f"statistic must be difference or ratio, got {statistic!r}")
    a, b = _matrix(a, "a"), _matrix(b, "b")
    if a.shape[1] != b.shape[1]:
        raise StatisticsError(f"a pair runs the same scenes: a has {a.shape[1]}, b has {b.shape[1]}")
    if paired_seeds and a.shape[0] != b.shape[0]:
        raise StatisticsError(f"paired seeds need as many seeds on both sides, got {a.shape[0]} and {b.shape[0]}")
    j = a.shape[1]
    groups = _strata(strata, j)
    rng = np.random.default_rng(seed)
    if scene_draw == "crossed":
        scene_w = _scene_weights(rng, groups, j, replicates)
        seed_a = _counts(rng, a.shape[0], replicates)
        seed_b = seed_a if paired_seeds else _counts(rng, b.shape[0], replicates)
        ra, rb = _mean_crossed(a, seed_a, scene_w), _mean_crossed(b, seed_b, scene_w)
    else:
        ra, rb = np.zeros(replicates), np.zeros(replicates)
        picks_a = rng.integers(0, a.shape[0], size=(replicates, a.shape[0]))
        picks_b = picks_a if paired_seeds else rng.integers(0, b.shape[0], size=(replicates, b.shape[0]))
        slots = max(a.shape[0], b.shape[0])
        for slot in range(slots):  # each slot's scene draw is shared by A's and B's seed in that slot
            w = _scene_weights(rng, groups, j, replicates)
            if slot < a.shape[0]:
                ra += np.einsum("rj,rj->r", a[picks_a[:, slot]], w) / (j * a.shape[0])
            if slot < b.shape[0]:
                rb += np.einsum("rj,rj->r", b[picks_b[:, slot]], w) / (j * b.shape[0])
    if statistic == "difference":
        values, point = ra - rb, float(a.mean() - b.mean())
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.where(rb > 0, ra / np.where(rb > 0, rb, 1.0), np.inf)
        point = float(a.mean() / b.mean()) if b.mean() > 0 else math.inf
    lo, hi = _interval(values, level)
    return Estimate(point, lo, hi, level, j * max(a.shape[0], b.shape[0]), (a.shape[0], b.shape[0]), j, replicates,
                    f"hierarchical bootstrap ({scene_draw}), paired per scene, {statistic}")


def per_seed_rates(y) -> np.ndarray:
    """Each training seed's success rate over its scenes."""
    return _matrix(y).mean(axis=1)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval, every episode taken as an independent trial (what the runs reported before)."""
    if n <= 0:
        return 0.0, 1.0
    rate = successes / n
    denominator = 1 + z ** 2 / n
    centre = (rate + z ** 2 / (2 * n)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / n + z ** 2 / (4 * n ** 2)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def naive_paired_difference(a, b, z: float = 1.96) -> tuple[float, float, float]:
    """(difference, lo, hi) with a normal interval over the per-slot differences, every (seed, scene) slot
    taken as independent (as ``experiment.py``'s paired table did); for comparison with :func:`bootstrap_pair`."""
    a, b = _matrix(a, "a"), _matrix(b, "b")
    if a.shape != b.shape:
        raise StatisticsError(f"slots must match, got {a.shape} and {b.shape}")
    n = a.size
    a_only = float(np.sum((a > 0.5) & (b < 0.5)))
    b_only = float(np.sum((b > 0.5) & (a < 0.5)))
    diff = (a_only - b_only) / n
    half = z * math.sqrt(max((a_only + b_only) / n - diff ** 2, 0.0) / n)
    return diff, diff - half, diff + half
