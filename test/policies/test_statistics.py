"""The hierarchical bootstrap on synthetic data with known answers."""

import math

import numpy as np
import pytest

from molmomotion_policies.statistics import (
    StatisticsError,
    bootstrap_pair,
    bootstrap_rate,
    naive_paired_difference,
    per_seed_rates,
    wilson_interval,
)


def width(e) -> float:
    return e.hi - e.lo


def test_constant_data_has_a_degenerate_interval():
    e = bootstrap_rate(np.ones((3, 40)), replicates=500)
    assert (e.value, e.lo, e.hi, e.n, e.seeds, e.scenes) == (1.0, 1.0, 1.0, 120, 3, 40)


def test_pure_seed_effect_gives_the_binomial_quantiles_of_the_seeds():
    """Whole seeds succeed or fail (3 of 5): the rate is Binomial(5, 0.6) / 5 under seed resampling, whose 2.5%
    and 97.5% quantiles are 0.2 and 1.0, however many scenes there are."""
    y = np.repeat(np.array([1, 1, 1, 0, 0], float)[:, None], 200, axis=1)
    e = bootstrap_rate(y, replicates=20_000, seed=3)
    assert e.value == pytest.approx(0.6)
    assert (e.lo, e.hi) == (pytest.approx(0.2), pytest.approx(1.0))
    lo, hi = wilson_interval(int(y.sum()), y.size)  # 600/1000 as independent trials: +-3 points
    assert hi - lo < 0.07 < width(e) / 10


def test_pure_scene_effect_counts_each_scene_once():
    """Every seed does the same on a scene: repeating the scenes over 5 seeds adds no information, so the interval
    is the scenes' binomial one (half-width 1.96 sqrt(p(1-p)/J)), not the 5J episodes' narrower one."""
    rng = np.random.default_rng(0)
    scenes = (rng.permutation(400) < 200).astype(float)  # exactly half succeed
    y = np.tile(scenes, (5, 1))
    e = bootstrap_rate(y, replicates=20_000, seed=1)
    expected_half = 1.96 * math.sqrt(0.25 / 400)
    assert e.value == 0.5
    assert (e.hi - e.lo) / 2 == pytest.approx(expected_half, rel=0.08)
    lo, hi = wilson_interval(1000, 2000)
    assert width(e) > 2.0 * (hi - lo)


def test_seed_variance_widens_the_interval_against_the_naive_one():
    """Seeds at 30-70% success on the same 100 scenes (ordered by difficulty): the spread between seeds dominates;
    the hierarchical interval is several times the Wilson interval over all 500 episodes."""
    rates = np.array([0.3, 0.5, 0.7, 0.4, 0.6])
    difficulty = (np.arange(100) + 0.5) / 100
    y = (difficulty[None] < rates[:, None]).astype(float)
    e = bootstrap_rate(y, replicates=10_000, seed=2)
    lo, hi = wilson_interval(int(y.sum()), y.size)
    assert e.value == pytest.approx(0.5)
    assert width(e) > 2.0 * (hi - lo)
    assert per_seed_rates(y) == pytest.approx(rates)


def test_coverage_on_a_known_hierarchical_model():
    """Seeds and scenes with logit-normal effects (sd 1 and 1.5), 5 seeds x 100 scenes: the nominal 95% interval
    covers the population rate in most simulated experiments (about 85%: 5 seeds are few for a percentile
    bootstrap), the episode-independent Wilson interval in about half."""
    rng = np.random.default_rng(1)

    def sigmoid(x):
        return 1 / (1 + np.exp(-x))

    truth = sigmoid(rng.normal(0, 1, (4000, 1)) + rng.normal(0, 1.5, (1, 4000)) + 0.5).mean()
    hierarchical = naive = 0
    trials = 150
    for k in range(trials):
        p = sigmoid(rng.normal(0, 1, (5, 1)) + rng.normal(0, 1.5, (1, 100)) + 0.5)
        y = (rng.random(p.shape) < p).astype(float)
        e = bootstrap_rate(y, replicates=1000, seed=k)
        hierarchical += e.lo <= truth <= e.hi
        lo, hi = wilson_interval(int(y.sum()), y.size)
        naive += lo <= truth <= hi
    assert hierarchical / trials >= 0.80
    assert naive / trials <= 0.60
    assert hierarchical / trials - naive / trials >= 0.25


def test_strata_keep_the_family_balance():
    """Family one always succeeds, family two never: with the family split fixed, the rate is exactly 0.5 in
    every replicate; drawing scenes across families, it is not."""
    y = np.tile(np.r_[np.ones(25), np.zeros(25)], (3, 1))
    families = ["push"] * 25 + ["stack"] * 25
    stratified = bootstrap_rate(y, strata=families, replicates=2000)
    pooled = bootstrap_rate(y, replicates=2000)
    assert (stratified.lo, stratified.hi) == (0.5, 0.5)
    assert width(pooled) > 0.2


def test_crossed_scene_draws_are_wider_than_nested_ones_where_scenes_repeat():
    y = np.tile((np.arange(200) % 2).astype(float), (5, 1))
    crossed = bootstrap_rate(y, replicates=5000, seed=4)
    nested = bootstrap_rate(y, replicates=5000, seed=4, scene_draw="nested")
    assert crossed.value == nested.value == 0.5
    assert width(nested) < 0.6 * width(crossed)  # ~ 1/sqrt(5): nested treats each seed's scenes as new ones


def test_pairing_per_scene_removes_the_shared_scene_variance():
    """A = B on every scene except 20 of 200 that A solves and B does not: the difference is 0.10, and its paired
    interval is the binomial one of those 20 scenes, far narrower than two separate intervals combined."""
    rng = np.random.default_rng(5)
    b_scene = (rng.random(200) < 0.5).astype(float)
    flip = np.flatnonzero(b_scene == 0)[:20]
    a_scene = b_scene.copy()
    a_scene[flip] = 1
    a, b = np.tile(a_scene, (3, 1)), np.tile(b_scene, (3, 1))
    paired = bootstrap_pair(a, b, replicates=10_000, seed=6)
    assert paired.value == pytest.approx(0.10)
    assert paired.lo > 0.05 and paired.hi < 0.15
    assert (paired.hi - paired.lo) / 2 == pytest.approx(1.96 * math.sqrt(0.1 * 0.9 / 200), rel=0.15)
    separate = math.hypot(width(bootstrap_rate(a, seed=7)), width(bootstrap_rate(b, seed=8)))
    assert width(paired) < 0.5 * separate
    assert paired.n == 600 and paired.seeds == (3, 3) and paired.scenes == 200


def test_pair_with_seed_variance_is_wider_than_the_slot_independent_interval():
    """The per-seed A - B gaps spread from 0 to +40 points: the old normal interval over 300 independent slots is
    a fraction of the hierarchical one."""
    difficulty = (np.arange(100) + 0.5) / 100
    a = (difficulty[None] < np.array([0.6, 0.8, 0.4])[:, None]).astype(float)
    b = (difficulty[None] < np.array([0.4, 0.4, 0.4])[:, None]).astype(float)
    paired = bootstrap_pair(a, b, replicates=10_000, seed=9, paired_seeds=True)
    diff, lo, hi = naive_paired_difference(a, b)
    assert paired.value == pytest.approx(diff) == pytest.approx(0.2)
    assert width(paired) > 2.0 * (hi - lo)
    assert paired.lo <= 0.0 + 1e-9  # one seed in three shows no gap at all


def test_ratio():
    scenes = np.arange(200)
    a = np.tile((scenes < 100).astype(float), (3, 1))
    b = np.tile((scenes < 50).astype(float), (3, 1))
    e = bootstrap_pair(a, b, statistic="ratio", replicates=5000, seed=10)
    assert e.value == pytest.approx(2.0)
    assert 1.0 <= e.lo < 2.0 < e.hi
    zero = bootstrap_pair(a, np.zeros_like(b), statistic="ratio", replicates=500)
    assert zero.value == math.inf and zero.hi == math.inf


def test_deterministic_for_a_seed():
    rng = np.random.default_rng(11)
    y = (rng.random((3, 100)) < 0.6).astype(float)
    assert bootstrap_rate(y, seed=5) == bootstrap_rate(y, seed=5)
    assert bootstrap_pair(y, y[::-1], seed=5, replicates=300) == bootstrap_pair(y, y[::-1], seed=5, replicates=300)
    other = bootstrap_rate(y, seed=6)  # another seed: the same interval within Monte Carlo error
    assert abs(other.lo - bootstrap_rate(y, seed=5).lo) < 0.03


def test_naive_paired_difference_matches_the_experiment_table():
    """experiment.py's paired row: A-only 79, B-only 21 of 300 slots -> +19.3 [13.2, 25.5]."""
    a = np.zeros(300)
    b = np.zeros(300)
    a[:79] = 1
    b[79:100] = 1
    diff, lo, hi = naive_paired_difference(a[None], b[None])
    assert (round(diff * 100, 1), round(lo * 100, 1), round(hi * 100, 1)) == (19.3, 13.2, 25.5)


@pytest.mark.parametrize("call, match", [
    (lambda: bootstrap_rate(np.array([[1.0, np.nan]])), "missing"),
    (lambda: bootstrap_rate(np.ones((2, 3)), strata=["a", "b"]), "strata"),
    (lambda: bootstrap_rate(np.ones((2, 3)), level=95), "level"),
    (lambda: bootstrap_rate(np.ones((2, 3)), replicates=10), "replicates"),
    (lambda: bootstrap_rate(np.ones((2, 3)), scene_draw="flat"), "scene_draw"),
    (lambda: bootstrap_rate(np.ones((2, 3, 4))), "matrix"),
    (lambda: bootstrap_pair(np.ones((2, 3)), np.ones((2, 4))), "same scenes"),
    (lambda: bootstrap_pair(np.ones((2, 3)), np.ones((3, 3)), paired_seeds=True), "paired seeds"),
    (lambda: bootstrap_pair(np.ones((2, 3)), np.ones((2, 3)), statistic="odds"), "statistic"),
])
def test_refuses_unusable_data(call, match):
    with pytest.raises(StatisticsError, match=match):
        call()
