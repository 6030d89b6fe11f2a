"""What kind of motion a forecast describes (lift, push or still), and the confusion of forecast vs task family.

The held-out language test (issue 18) asks whether a forecaster turns a reworded push into a push or into a lift;
ADE alone does not say, so every forecast is classified from its track and tallied against its family's motion.
"""

from __future__ import annotations

import numpy as np

LIFT_M = 0.03  # a pick-and-place carries the object well above this; a push keeps it under 1 cm (push.LIFT_TOL_M)
MOVE_M = 0.02  # horizontal travel below which the object is taken to stay put
MOTION_TYPES = ("lift", "push", "still")
REFUSED = "refused"  # the instruction parser refused the instruction: no forecast was made (a miss, not a motion)
OUTCOMES = (*MOTION_TYPES, REFUSED)
FAMILY_MOTION = {"place-in-container": "lift", "place-relative": "lift", "stack": "lift", "push": "push"}


def motion_type(track_world_m: np.ndarray, start_world_m: np.ndarray | None = None,
                lift_m: float = LIFT_M, move_m: float = MOVE_M) -> str:
    """Classify the motion of one forecast hypothesis of the target's points.

    ``track_world_m`` is ``(P, F, 3)`` in the world frame (z up); ``start_world_m`` ``(P, 3)`` the points at t0
    (default: the track's first step). The consensus track is, per step, the median over points of each point's
    displacement from its own start (``(F, 3)``): robust to a few query points that slip off the object.

    * ``"lift"``: the consensus rises more than ``lift_m`` above the start at some step (pick-and-place, stack);
    * ``"push"``: no such lift, but the consensus travels more than ``move_m`` horizontally at some step;
    * ``"still"``: neither (also when no step is finite).
    """
    track = np.asarray(track_world_m, dtype=float)
    start = track[:, 0] if start_world_m is None else np.asarray(start_world_m, dtype=float)
    displacement = track - start[:, None, :]  # (P, F, 3)
    finite = np.isfinite(displacement).all(axis=-1)  # (P, F)
    steps = finite.any(axis=0)  # (F,) steps with at least one finite point
    if not steps.any():
        return "still"
    masked = np.where(finite[..., None], displacement, np.nan)[:, steps]  # (P, F', 3)
    consensus = np.nanmedian(masked, axis=0)  # (F', 3)
    if consensus[:, 2].max() > lift_m:
        return "lift"
    if np.linalg.norm(consensus[:, :2], axis=-1).max() > move_m:
        return "push"
    return "still"


def confusion(rows) -> dict[str, dict]:
    """``{family: {"expected": type, "lift": n, "push": n, "still": n, "refused": n, "as_expected": fraction}}``
    from ``(family, forecast motion type or "refused")`` rows, families in first-seen order."""
    table: dict[str, dict] = {}
    for family, kind in rows:
        entry = table.setdefault(family, {"expected": FAMILY_MOTION.get(family), **dict.fromkeys(OUTCOMES, 0)})
        entry[kind] += 1
    for entry in table.values():
        total = sum(entry[kind] for kind in OUTCOMES)
        entry["as_expected"] = entry[entry["expected"]] / total if entry["expected"] and total else None
    return table


def format_confusion(by_source: dict[str, dict[str, dict]]) -> str:
    """One block per forecaster (and the ground truth): rows are families with their expected motion, columns
    the forecast's motion types."""
    header = f"{'forecaster':<18} {'family':<19} {'expected':>8} " + " ".join(f"{k:>7}" for k in OUTCOMES)
    lines = [header + f" {'as expected':>11}", "-" * (len(header) + 12)]
    for source, table in by_source.items():
        for family, entry in table.items():
            rate = "" if entry["as_expected"] is None else f"{entry['as_expected']:.1%}"
            lines.append(f"{source:<18} {family:<19} {entry['expected'] or '-':>8} "
                         + " ".join(f"{entry.get(k, 0):>7}" for k in OUTCOMES) + f" {rate:>11}")
    lines.append(f"lift: the forecast rises > {LIFT_M * 100:.0f} cm; push: moves > {MOVE_M * 100:.0f} cm along the "
                 "table without lifting; still: neither (median over the target's points); refused: the "
                 "instruction parser refused the instruction (no forecast)")
    return "\n".join(lines)
