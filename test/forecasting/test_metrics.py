"""PointMotionBench-style metrics on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from molmomotion_ros.forecasting.metrics import (
    MetricsInputError,
    ade,
    aggregate,
    best_of_k,
    fde,
    mean_of_k,
    pwt,
    rigidity_error,
    summarize,
)


def _gt(num_points: int = 4, horizon: int = 6) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(-0.5, 0.5, size=(num_points, horizon, 3))  # (P, F, 3)


def test_constant_offset():
    gt = _gt()
    pred = gt + np.array([0.0, 0.03, 0.0])
    np.testing.assert_allclose(ade(pred[None], gt), [0.03])
    np.testing.assert_allclose(fde(pred[None], gt), [0.03])


def test_single_hypothesis_without_k_axis():
    gt = _gt()
    assert ade(gt + [0.01, 0, 0], gt).shape == (1,)


def test_k_handling():
    gt = _gt()
    pred = np.stack([gt + [0.03, 0, 0], gt, gt + [0, 0, 0.1]])  # (3, P, F, 3)
    np.testing.assert_allclose(ade(pred, gt), [0.03, 0.0, 0.1])
    np.testing.assert_allclose(fde(pred, gt), [0.03, 0.0, 0.1])
    assert best_of_k(ade(pred, gt)) == pytest.approx(0.0)
    assert mean_of_k(ade(pred, gt)) == pytest.approx(0.13 / 3)
    assert best_of_k(np.array([0.2, 0.8, 0.5]), higher_is_better=True) == 0.8


def test_ade_averages_over_points_and_steps():
    gt = np.zeros((2, 2, 3))
    pred = np.zeros((2, 2, 3))
    pred[0, 1] = [0.04, 0, 0]  # one of four entries is 4 cm off
    pred[1, 1] = [0, 0.03, 0.04]  # 5 cm off
    np.testing.assert_allclose(ade(pred, gt), [0.09 / 4])
    np.testing.assert_allclose(fde(pred, gt), [0.045])  # last step: mean(4, 5) cm


def test_fde_uses_each_points_last_valid_step():
    gt = np.zeros((2, 3, 3))
    pred = np.zeros((2, 3, 3))
    pred[0, :, 0] = [0.01, 0.02, 0.03]
    pred[1, :, 0] = [0.10, 0.20, 0.30]
    valid = np.array([[True, True, False], [True, False, False]])
    np.testing.assert_allclose(fde(pred, gt, valid), [(0.02 + 0.10) / 2])
    np.testing.assert_allclose(fde(pred, gt, np.array([True, True, False])), [(0.02 + 0.20) / 2])


def test_valid_mask_ignores_nan_ground_truth():
    gt = np.zeros((1, 3, 3))
    gt[0, 2] = np.nan  # no ground truth at the last step
    pred = np.zeros((1, 3, 3))
    pred[0, :, 2] = [0.01, 0.03, 5.0]
    np.testing.assert_allclose(ade(pred, gt), [0.02])  # NaN gt is invalid by itself
    np.testing.assert_allclose(ade(pred, gt, np.array([True, True, True])), [0.02])
    np.testing.assert_allclose(ade(pred, gt, np.array([True, False, False])), [0.01])
    np.testing.assert_allclose(fde(pred, gt), [0.03])


def test_nan_prediction_at_a_valid_step_propagates():
    gt = np.zeros((1, 2, 3))
    pred = np.zeros((1, 2, 3))
    pred[0, 1] = np.nan
    assert np.isnan(ade(pred, gt)[0])
    np.testing.assert_allclose(ade(pred, gt, np.array([True, False])), [0.0])  # invalid NaN is ignored


@pytest.mark.parametrize(
    ("offset_m", "expected"),
    [(0.0, 1.0), (0.005, 1.0), (0.01, 1.0), (0.015, 0.8), (0.03, 0.6), (0.07, 0.4), (0.15, 0.2), (0.5, 0.0)],
)
def test_pwt_thresholds_step(offset_m, expected):
    gt = np.zeros((3, 4, 3))  # exact distances, so "within" at the threshold itself (<=) is tested too
    np.testing.assert_allclose(pwt(gt + [offset_m, 0, 0], gt), [expected])


def test_pwt_fraction_of_entries():
    gt = np.zeros((2, 2, 3))
    pred = np.zeros((2, 2, 3))
    pred[1, 1] = [1.0, 0, 0]  # one of four entries misses every threshold
    np.testing.assert_allclose(pwt(pred, gt), [0.75])
    np.testing.assert_allclose(pwt(pred, gt, thresholds_m=(2.0,)), [1.0])


def test_rigidity_zero_for_rigid_motion():
    points_t0 = _gt(num_points=5, horizon=1)[:, 0]  # (P, 3)
    angle = np.linspace(0, 1.0, 7)
    rot = np.stack([np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) for a in angle])
    pred = np.einsum("fij,pj->pfi", rot, points_t0) + np.linspace(0, 0.3, 7)[None, :, None]  # (P, F, 3)
    np.testing.assert_allclose(rigidity_error(pred[None], points_t0), [0.0], atol=1e-12)


def test_rigidity_hand_computed():
    points_t0 = np.array([[0.0, 0, 0], [0.1, 0, 0], [0.0, 0.2, 0]])
    pred = np.repeat(points_t0[:, None], 2, axis=1)  # (3, 2, 3), step 0 rigid
    pred[1, 1] = [0.13, 0, 0]  # step 1: |d01| +3 cm, |d12| = sqrt(.13^2+.2^2) vs sqrt(.1^2+.2^2)
    d12 = np.hypot(0.13, 0.2) - np.hypot(0.1, 0.2)
    np.testing.assert_allclose(rigidity_error(pred, points_t0), [((0.03 + 0 + d12) / 3) / 2])


def test_rigidity_needs_two_points():
    with pytest.raises(MetricsInputError, match="at least 2 points"):
        rigidity_error(np.zeros((1, 3, 3)), np.zeros((1, 3)))


def test_summarize_and_aggregate():
    points_t0 = _gt(horizon=1)[:, 0]  # (P, 3)
    gt = points_t0[:, None] + np.linspace(0.0, 0.1, 6)[None, :, None] * [1.0, 0.0, 0.0]  # rigid translation
    pred = np.stack([gt + [0.03, 0, 0], gt + [0.009, 0, 0]])
    summary = summarize(pred, gt, None, points_t0)
    assert summary["ade_best"] == pytest.approx(0.009) and summary["ade_mean"] == pytest.approx(0.0195)
    assert summary["fde_best"] == pytest.approx(0.009)
    assert summary["pwt_best"] == pytest.approx(1.0) and summary["pwt_mean"] == pytest.approx((1.0 + 0.6) / 2)
    assert summary["rigidity_best"] == pytest.approx(0.0, abs=1e-12)
    assert set(summary) == {f"{m}_{k}" for m in ("ade", "fde", "pwt", "rigidity") for k in ("best", "mean")}
    other = dict.fromkeys(summary, 1.0)
    total = aggregate([summary, other])
    assert total["ade_best"] == pytest.approx((0.009 + 1.0) / 2) and total["n"] == 2


def test_summarize_restricts_rigidity_to_valid_entries():
    gt = _gt()
    points_t0 = gt[:, 0]
    pred = gt.copy()
    pred[0, -1] = np.nan  # unanswered, but also not scored
    valid = np.ones(gt.shape[:2], dtype=bool)
    valid[0, -1] = False
    summary = summarize(pred[None], gt, valid, points_t0)
    assert all(np.isfinite(v) for v in summary.values())


def test_input_errors():
    gt = _gt()
    with pytest.raises(MetricsInputError, match="gt must be"):
        ade(gt[None], gt[:, :3])
    with pytest.raises(MetricsInputError, match="valid must be"):
        ade(gt, gt, np.ones(3, dtype=bool))
    with pytest.raises(MetricsInputError, match="no valid"):
        ade(gt, gt, np.zeros(gt.shape[1], dtype=bool))
    with pytest.raises(MetricsInputError, match="pred must be"):
        ade(np.zeros((2, 3)), gt)
    with pytest.raises(MetricsInputError, match="aggregate needs"):
        aggregate([])
    with pytest.raises(MetricsInputError, match="summary 1 has keys"):
        aggregate([{"a": 1.0}, {"b": 1.0}])
