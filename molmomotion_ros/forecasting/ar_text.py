"""MolmoMotion's autoregressive (AR) text format for 3D point tracks: writer and strict parser.

The AR model reads and writes trajectories as text::

    <tracks coords="3.0 1 12 -4 30 2 15 -2 28;4.0 1 20 -6 41 2 22 -5 39">3d object trajectories</tracks>

* The ``coords`` attribute holds rows separated by ``;``. A row is a timestamp followed by one or more
  ``id dx dy dz`` groups: ``t id dx dy dz [id dx dy dz ...]``. Rows that share a timestamp are merged,
  so the one-entry-per-row form ``t id dx dy dz;t id dx dy dz`` is accepted too.
* ``t`` is the frame index. History rows are ``0 .. H-1``; the first future row is ``H``. The release
  writes it with one decimal (``3.0``); any integral number is accepted (``3``, ``3.0``).
* ``id`` is the point index on the wire. The release numbers points from **1** (``id = p + 1``), which
  is this module's default ``id_base=1``; pass ``id_base=0`` for a 0-based variant.
* ``dx dy dz`` are integer millimetres of the delta from one shared anchor: point 0's camera-frame
  position at t0 (the last history frame). Invisible points are left out of their row; a row with
  no visible point is left out.

Parsing is strict: anything malformed raises :class:`TracksFormatError` with a one-line message saying
what is wrong and where. Duplicate ``(t, id)`` entries are an error, because which one the model meant
cannot be decided. Surrounding prose, repeated whitespace, newlines inside ``coords`` and a trailing
``;`` are tolerated. When the text holds several ``<tracks>`` blocks the last one is parsed: in every
answer layout of the release (endpoint-first, history-then-future) the full future comes last.

numpy and the standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

MM_PER_M = 1000.0
LABEL_HISTORY = "3d object history"  # the release's label for prompt (history) blocks
LABEL_FUTURE = "3d object trajectories"  # the release's label for answer (future) blocks
FILL_MODES = ("nan", "hold", "interpolate")

_TAG_OPEN_RE = re.compile(r"<tracks\b", re.IGNORECASE)
_TAG_RE = re.compile(
    r"<tracks\s+coords\s*=\s*\"(?P<coords>[^\"]*)\"\s*>(?P<label>[^<]*)(?:</tracks\s*>)?",
    re.IGNORECASE,
)
_INT_RE = re.compile(r"[+-]?\d+")
_TIME_RE = re.compile(r"[+-]?\d+(?:\.\d*)?")


class TracksFormatError(ValueError):
    """A ``<tracks>`` text (or the arrays to write as one) is malformed; the message says what and where."""


@dataclass(frozen=True)
class ParsedTracks:
    """One parsed ``<tracks>`` block in metres, camera frame at t0.

    ``points_cam_m[p, f]`` is point p at timestamp ``timestamps[f]``. ``visible`` marks the entries
    that were present in the text; the others are NaN or filled, depending on ``fill``.
    """

    points_cam_m: np.ndarray  # (P, F, 3) float64
    visible: np.ndarray  # (P, F) bool
    timestamps: np.ndarray  # (F,) int64 frame indices, first_t .. first_t + F - 1
    label: str
    dropped_beyond_horizon: int = 0  # entries past the horizon that were skipped (strict_horizon=False)

    @property
    def num_points(self) -> int:
        return int(self.points_cam_m.shape[0])

    @property
    def horizon(self) -> int:
        return int(self.points_cam_m.shape[1])


def write_tracks(
    points_cam_m: np.ndarray,
    anchor_cam_m: np.ndarray,
    first_t: int,
    label: str = "",
    visible: np.ndarray | None = None,
    *,
    id_base: int = 1,
) -> str:
    """Serialise ``points_cam_m`` (P, F, 3) as one ``<tracks>`` block of integer-mm deltas from the anchor.

    Row f carries timestamp ``first_t + f`` written as ``"{t:.1f}"`` like the release. ``visible`` (P, F)
    defaults to "every finite entry"; entries it marks invisible are left out, and so are rows with no
    visible entry. Deltas are rounded to the nearest millimetre.
    """
    points = np.asarray(points_cam_m, dtype=float)
    anchor = np.asarray(anchor_cam_m, dtype=float)
    if points.ndim != 3 or points.shape[2] != 3:
        raise TracksFormatError(f"points_cam_m must be (P, F, 3), got shape {points.shape}")
    if anchor.shape != (3,) or not np.all(np.isfinite(anchor)):
        raise TracksFormatError(f"anchor_cam_m must be a finite (3,) point, got {anchor.tolist()}")
    finite = np.all(np.isfinite(points), axis=-1)  # (P, F)
    if visible is None:
        vis = finite
    else:
        vis = np.asarray(visible, dtype=bool)
        if vis.shape != points.shape[:2]:
            raise TracksFormatError(f"visible must be {points.shape[:2]}, got {vis.shape}")
        bad = vis & ~finite
        if bad.any():
            p, f = np.argwhere(bad)[0]
            raise TracksFormatError(f"point {p} at step {f} is marked visible but is not finite")
    if any(c in label for c in '<>"'):
        raise TracksFormatError(f"label must not contain '<', '>' or '\"': {label!r}")
    if int(first_t) != first_t:
        raise TracksFormatError(f"first_t must be an integer frame index, got {first_t!r}")

    delta_mm = np.rint((np.where(finite[..., None], points, 0.0) - anchor) * MM_PER_M).astype(np.int64)  # (P, F, 3)
    rows = []
    for f in range(points.shape[1]):
        groups = [
            f"{p + id_base} {delta_mm[p, f, 0]} {delta_mm[p, f, 1]} {delta_mm[p, f, 2]}"
            for p in range(points.shape[0])
            if vis[p, f]
        ]
        if groups:
            rows.append(f"{float(first_t + f):.1f} " + " ".join(groups))
    return f'<tracks coords="{";".join(rows)}">{label}</tracks>'


def parse_tracks(
    text: str,
    anchor_cam_m: np.ndarray,
    num_points: int = 8,
    horizon: int | None = None,
    first_t: int | None = None,
    *,
    fill: str = "nan",
    initial_cam_m: np.ndarray | None = None,
    id_base: int = 1,
    strict_horizon: bool = True,
) -> ParsedTracks:
    """Parse the last ``<tracks coords="...">label</tracks>`` block of ``text`` into metres (camera frame).

    ``first_t`` defaults to the smallest timestamp present and ``horizon`` to span up to the largest.
    A timestamp before ``first_t`` is an error; one at or past ``first_t + horizon`` is an error too
    unless ``strict_horizon=False``, which skips it and counts it in ``dropped_beyond_horizon``.

    Missing (point, step) entries are filled according to ``fill``:

    * ``"nan"``: left NaN.
    * ``"hold"``: the point's last earlier visible value; before its first visible step, ``initial_cam_m[p]``
      (the point at t0, when given) or else its first visible value.
    * ``"interpolate"``: linear in time between visible steps, with ``initial_cam_m[p]`` as the value at
      ``first_t - 1`` when given; held flat after the last visible step, back-filled before the first one
      when there is no ``initial_cam_m``.

    A point with no visible step stays NaN unless ``initial_cam_m`` is given, in which case it is held
    there. ``visible`` always reports what the text held, never the fill.
    """
    if fill not in FILL_MODES:
        raise ValueError(f"fill must be one of {FILL_MODES}, got {fill!r}")
    anchor = np.asarray(anchor_cam_m, dtype=float)
    if anchor.shape != (3,) or not np.all(np.isfinite(anchor)):
        raise TracksFormatError(f"anchor_cam_m must be a finite (3,) point, got {np.asarray(anchor_cam_m).tolist()}")
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")
    initial = None
    if initial_cam_m is not None:
        initial = np.asarray(initial_cam_m, dtype=float)
        if initial.shape != (num_points, 3):
            raise ValueError(f"initial_cam_m must be ({num_points}, 3), got {initial.shape}")

    coords, label = _find_block(text)
    entries = _parse_coords(coords, num_points, id_base)  # {(t, p): (dx, dy, dz) mm}

    times = [t for t, _ in entries]
    if first_t is None:
        first_t = min(times) if times else 0
    if horizon is None:
        horizon = (max(times) - first_t + 1) if times else 0
    if horizon < 0:
        raise ValueError(f"horizon must be >= 0, got {horizon}")

    points = np.full((num_points, horizon, 3), np.nan)  # (P, F, 3)
    visible = np.zeros((num_points, horizon), dtype=bool)  # (P, F)
    dropped = 0
    for (t, p), delta_mm in entries.items():
        if t < first_t:
            raise TracksFormatError(f"timestamp {t} (point id {p + id_base}) is before the first expected {first_t}")
        f = t - first_t
        if f >= horizon:
            if strict_horizon:
                last_t = first_t + horizon - 1
                raise TracksFormatError(
                    f"timestamp {t} (point id {p + id_base}) is past the horizon: expected {first_t}..{last_t}"
                )
            dropped += 1
            continue
        points[p, f] = anchor + np.asarray(delta_mm, dtype=float) / MM_PER_M
        visible[p, f] = True

    if fill != "nan":
        points = _fill(points, visible, fill, initial)
    timestamps = np.arange(first_t, first_t + horizon, dtype=np.int64)  # (F,)
    return ParsedTracks(points_cam_m=points, visible=visible, timestamps=timestamps, label=label,
                        dropped_beyond_horizon=dropped)


def _find_block(text: str) -> tuple[str, str]:
    """The ``coords`` attribute and label of the last complete ``<tracks>`` block."""
    if not isinstance(text, str):
        raise TracksFormatError(f"expected model output text, got {type(text).__name__}")
    matches = list(_TAG_RE.finditer(text))
    opens = list(_TAG_OPEN_RE.finditer(text))
    if not opens:
        raise TracksFormatError(f'no <tracks coords="..."> tag in the text (starts {text[:60]!r})')
    if not matches or opens[-1].start() > matches[-1].start():  # the last block is cut off or malformed
        start = opens[-1].start()
        raise TracksFormatError(f"unterminated or malformed <tracks> tag at char {start}: {text[start:start + 60]!r}")
    last = matches[-1]
    return last.group("coords"), last.group("label").strip()


def _parse_coords(coords: str, num_points: int, id_base: int) -> dict[tuple[int, int], tuple[int, int, int]]:
    """``coords`` attribute → {(timestamp, point index): (dx, dy, dz) in mm}, in text order."""
    entries: dict[tuple[int, int], tuple[int, int, int]] = {}
    for row_idx, row in enumerate(coords.split(";")):
        fields = row.split()
        if not fields:
            continue  # empty row: a trailing or doubled ';'
        where = f"row {row_idx} ({' '.join(fields)[:40]!r})"
        if len(fields) < 5 or (len(fields) - 1) % 4:
            raise TracksFormatError(f"{where} has {len(fields)} fields; expected 't' then groups of 'id dx dy dz'")
        t = _parse_time(fields[0], where)
        for g in range(1, len(fields), 4):
            values = []
            for k, field in enumerate(fields[g: g + 4]):
                if not _INT_RE.fullmatch(field):
                    raise TracksFormatError(f"{where}, field {g + k}: {field!r} is not an integer")
                values.append(int(field))
            point_id, dx, dy, dz = values
            p = point_id - id_base
            if not 0 <= p < num_points:
                raise TracksFormatError(
                    f"{where}: point id {point_id} is out of range {id_base}..{id_base + num_points - 1}"
                )
            if (t, p) in entries:
                raise TracksFormatError(f"{where}: duplicate entry for timestamp {t}, point id {point_id}")
            entries[(t, p)] = (dx, dy, dz)
    return entries


def _parse_time(field: str, where: str) -> int:
    if not _TIME_RE.fullmatch(field):
        raise TracksFormatError(f"{where}: timestamp {field!r} is not a number")
    value = float(field)
    if value != int(value):
        raise TracksFormatError(f"{where}: timestamp {field!r} is not a whole frame index")
    return int(value)


def _fill(points: np.ndarray, visible: np.ndarray, mode: str, initial: np.ndarray | None) -> np.ndarray:
    """Fill invisible entries of ``points`` (P, F, 3) per point; see :func:`parse_tracks`."""
    out = points.copy()
    num_steps = points.shape[1]
    steps = np.arange(num_steps, dtype=float)
    for p in range(points.shape[0]):
        known_t = np.flatnonzero(visible[p]).astype(float)  # (n,)
        known_xyz = points[p, visible[p]]  # (n, 3)
        if initial is not None:  # the t0 position sits one step before the first future step
            known_t = np.concatenate([[-1.0], known_t])
            known_xyz = np.concatenate([initial[p][None], known_xyz])
        if known_t.size == 0:
            continue  # nothing to fill from: stays NaN
        if mode == "hold":
            # index of the last known sample at or before each step; before the first, use the first
            idx = np.searchsorted(known_t, steps, side="right") - 1  # (F,)
            out[p] = known_xyz[np.clip(idx, 0, None)]
        else:  # interpolate (np.interp holds the end values flat outside the known range)
            out[p] = np.stack([np.interp(steps, known_t, known_xyz[:, c]) for c in range(3)], axis=-1)
        out[p, visible[p]] = points[p, visible[p]]
    return out
