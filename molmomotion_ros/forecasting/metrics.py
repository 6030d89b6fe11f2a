"""PointMotionBench-style trajectory metrics, in metres in the camera frame at t0.

Shapes: K hypotheses, P points, F future steps. Predictions are ``(K, P, F, 3)`` (a single ``(P, F, 3)``
is taken as K=1); ground truth is ``(P, F, 3)``. ``valid`` restricts the metrics to some entries: ``(F,)``
(per step, for every point) or ``(P, F)``. Ground-truth entries that are not finite are always invalid,
so NaN in unused ground truth never reaches a result. A NaN *prediction* at a valid entry does propagate:
a forecaster that leaves a valid step unanswered gets a NaN score, not a flattering one.

* ADE: mean L2 over valid (point, step) entries.
* FDE: per point, L2 at its last valid step; mean over points that have one.
* PWT: fraction of valid entries within each threshold (``<=``), averaged over the thresholds.
* Rigidity error: mean over steps of the mean |d_ij(f) - d_ij(t0)| over point pairs i < j.

Best-of-K takes each metric's best hypothesis independently (min for errors, max for PWT), as
best-of-5 numbers are usually reported. numpy only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

PWT_THRESHOLDS_M = (0.01, 0.02, 0.05, 0.10, 0.20)
LOWER_IS_BETTER = {"ade": True, "fde": True, "pwt": False, "rigidity": True}


class MetricsInputError(ValueError):
    """Metric inputs have the wrong shape or leave nothing to score; the message says which."""


def ade(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Average displacement error per hypothesis (K,), metres."""
    dist, mask = _distances(pred, gt, valid)  # (K, P, F), (P, F)
    return np.where(mask, dist, 0.0).sum(axis=(1, 2)) / mask.sum()


def fde(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Final displacement error per hypothesis (K,): each point's last valid step, mean over points."""
    dist, mask = _distances(pred, gt, valid)  # (K, P, F), (P, F)
    has_any = mask.any(axis=1)  # (P,)
    last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)  # (P,) index of each point's last valid step
    points = np.flatnonzero(has_any)
    return dist[:, points, last[points]].mean(axis=1)  # (K, n) -> (K,)


def pwt(
    pred: np.ndarray,
    gt: np.ndarray,
    valid: np.ndarray | None = None,
    thresholds_m: Sequence[float] = PWT_THRESHOLDS_M,
) -> np.ndarray:
    """Points within threshold per hypothesis (K,): fraction of valid entries within each threshold, averaged."""
    thresholds = np.asarray(thresholds_m, dtype=float)
    if thresholds.ndim != 1 or thresholds.size == 0 or np.any(thresholds <= 0):
        raise MetricsInputError(f"thresholds_m must be a non-empty list of positive distances, got {thresholds_m}")
    dist, mask = _distances(pred, gt, valid)  # (K, P, F), (P, F)
    within = dist[..., None] <= thresholds  # (K, P, F, T)
    within = np.where(np.isnan(dist)[..., None], np.nan, within)  # an unanswered valid step stays NaN
    frac = np.where(mask[None, :, :, None], within, 0.0).sum(axis=(1, 2)) / mask.sum()  # (K, T)
    return frac.mean(axis=1)


def rigidity_error(pred: np.ndarray, points_t0: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Mean over steps of mean |pairwise distance at f - pairwise distance at t0| over pairs (K,), metres.

    ``valid`` ((F,) or (P, F)) keeps a pair at step f only when both its points are valid there; steps
    with no valid pair are left out of the mean over steps.
    """
    pred = _as_hypotheses(pred)  # (K, P, F, 3)
    num_points, num_steps = pred.shape[1:3]
    ref = np.asarray(points_t0, dtype=float)
    if ref.shape != (num_points, 3):
        raise MetricsInputError(f"points_t0 must be ({num_points}, 3) to match pred, got {ref.shape}")
    if num_points < 2:
        raise MetricsInputError("rigidity needs at least 2 points")
    mask = _valid_mask(valid, num_points, num_steps)  # (P, F)
    i, j = np.triu_indices(num_points, k=1)  # (M,) pairs
    d_t0 = np.linalg.norm(ref[i] - ref[j], axis=-1)  # (M,)
    d_f = np.linalg.norm(pred[:, i] - pred[:, j], axis=-1)  # (K, M, F)
    dev = np.abs(d_f - d_t0[None, :, None])  # (K, M, F)
    pair_mask = mask[i] & mask[j]  # (M, F)
    n_pairs = pair_mask.sum(axis=0)  # (F,)
    steps = n_pairs > 0
    if not steps.any():
        raise MetricsInputError("no step has a valid pair of points")
    per_step = np.where(pair_mask, dev, 0.0).sum(axis=1)[:, steps] / n_pairs[steps]  # (K, F')
    return per_step.mean(axis=1)


def best_of_k(values: np.ndarray, higher_is_better: bool = False) -> float:
    """The best of K per-hypothesis values (min, or max when ``higher_is_better``)."""
    values = np.asarray(values, dtype=float).reshape(-1)
    if values.size == 0:
        raise MetricsInputError("best_of_k needs at least one value")
    return float(values.max() if higher_is_better else values.min())


def mean_of_k(values: np.ndarray) -> float:
    """The mean of K per-hypothesis values."""
    values = np.asarray(values, dtype=float).reshape(-1)
    if values.size == 0:
        raise MetricsInputError("mean_of_k needs at least one value")
    return float(values.mean())


def summarize(
    pred: np.ndarray,
    gt: np.ndarray,
    valid: np.ndarray | None,
    points_t0: np.ndarray,
    thresholds_m: Sequence[float] = PWT_THRESHOLDS_M,
) -> dict[str, float]:
    """``{ade,fde,pwt,rigidity}_{best,mean}`` for one example (best = best-of-K, mean = mean over K).

    Every metric, rigidity included, is restricted to the same entries: ``valid`` and finite ``gt``.
    """
    _, mask = _distances(pred, gt, valid)  # (P, F) scored entries
    per_k = {
        "ade": ade(pred, gt, mask),
        "fde": fde(pred, gt, mask),
        "pwt": pwt(pred, gt, mask, thresholds_m),
        "rigidity": rigidity_error(pred, points_t0, mask),
    }
    out: dict[str, float] = {}
    for name, values in per_k.items():
        out[f"{name}_best"] = best_of_k(values, higher_is_better=not LOWER_IS_BETTER[name])
        out[f"{name}_mean"] = mean_of_k(values)
    return out


def aggregate(summaries: Iterable[dict[str, float]]) -> dict[str, float]:
    """Mean of each key over per-example summaries (equal weight per example), plus ``n`` examples."""
    rows = list(summaries)
    if not rows:
        raise MetricsInputError("aggregate needs at least one summary")
    keys = list(rows[0])
    for idx, row in enumerate(rows):
        if set(row) != set(keys):
            raise MetricsInputError(f"summary {idx} has keys {sorted(row)}, expected {sorted(keys)}")
    out = {key: float(np.mean([row[key] for row in rows])) for key in keys}
    out["n"] = float(len(rows))
    return out


def _as_hypotheses(pred: np.ndarray) -> np.ndarray:
    pred = np.asarray(pred, dtype=float)
    if pred.ndim == 3:
        pred = pred[None]  # (P, F, 3) -> (1, P, F, 3)
    if pred.ndim != 4 or pred.shape[-1] != 3 or 0 in pred.shape:
        raise MetricsInputError(f"pred must be (K, P, F, 3) or (P, F, 3), got {pred.shape}")
    return pred


def _valid_mask(valid: np.ndarray | None, num_points: int, num_steps: int) -> np.ndarray:
    """``valid`` as a (P, F) bool mask."""
    if valid is None:
        return np.ones((num_points, num_steps), dtype=bool)
    mask = np.asarray(valid, dtype=bool)
    if mask.shape == (num_steps,):
        return np.broadcast_to(mask, (num_points, num_steps))
    if mask.shape != (num_points, num_steps):
        raise MetricsInputError(f"valid must be ({num_steps},) or ({num_points}, {num_steps}), got {mask.shape}")
    return mask


def _distances(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """L2 distances (K, P, F) and the (P, F) mask of scored entries (valid and finite ground truth)."""
    pred = _as_hypotheses(pred)  # (K, P, F, 3)
    gt = np.asarray(gt, dtype=float)
    if gt.shape != pred.shape[1:]:
        raise MetricsInputError(f"gt must be {pred.shape[1:]} to match pred, got {gt.shape}")
    mask = _valid_mask(valid, *gt.shape[:2]) & np.all(np.isfinite(gt), axis=-1)  # (P, F)
    if not mask.any():
        raise MetricsInputError("no valid (point, step) entry to score")
    gt_filled = np.where(mask[..., None], gt, 0.0)  # NaN-free where unused
    dist = np.linalg.norm(pred - gt_filled[None], axis=-1)  # (K, P, F)
    return dist, mask
