"""MolmoMotion's <tracks> text: writer, strict parser, fills, round trip."""

from __future__ import annotations

import numpy as np
import pytest

from molmomotion_ros.forecasting.ar_text import (
    LABEL_FUTURE,
    TracksFormatError,
    parse_tracks,
    write_tracks,
)

ANCHOR = np.array([0.1, -0.2, 0.9])


def _trajectory(num_points: int = 8, horizon: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    start = ANCHOR + rng.uniform(-0.1, 0.1, size=(num_points, 1, 3))
    steps = rng.uniform(-0.02, 0.02, size=(num_points, horizon, 3))
    return start + np.cumsum(steps, axis=1)  # (P, F, 3)


def test_write_matches_release_layout():
    points = np.array([[[0.1, -0.2, 0.9], [0.112, -0.204, 0.93]], [[0.2, -0.2, 0.9], [np.nan, np.nan, np.nan]]])
    text = write_tracks(points, ANCHOR, first_t=3, label=LABEL_FUTURE)
    assert text == '<tracks coords="3.0 1 0 0 0 2 100 0 0;4.0 1 12 -4 30">3d object trajectories</tracks>'


def test_write_leaves_out_rows_without_visible_points():
    points = np.zeros((2, 3, 3))
    visible = np.array([[True, False, True], [False, False, True]])
    text = write_tracks(points, np.zeros(3), first_t=0, visible=visible, id_base=0)
    assert text == '<tracks coords="0.0 0 0 0 0;2.0 0 0 0 0 1 0 0 0"></tracks>'


def test_round_trip_within_a_millimetre():
    points = _trajectory()
    visible = np.random.default_rng(1).random(points.shape[:2]) > 0.2
    text = write_tracks(points, ANCHOR, first_t=3, label=LABEL_FUTURE, visible=visible)
    parsed = parse_tracks(text, ANCHOR, num_points=8, horizon=5, first_t=3)
    np.testing.assert_array_equal(parsed.visible, visible)
    np.testing.assert_array_equal(parsed.timestamps, [3, 4, 5, 6, 7])
    err = np.abs(parsed.points_cam_m[visible] - points[visible])
    assert err.max() <= 0.0005 + 1e-12
    assert np.isnan(parsed.points_cam_m[~visible]).all()
    assert parsed.label == LABEL_FUTURE


def test_parse_tolerates_prose_spacing_and_trailing_semicolon():
    text = ('Sure! Here:\n<tracks coords="  3  1 10 0 -5 ;\n 4.0 1 20   0 -10;  ">'
            "  3d object trajectories </tracks> done.")
    parsed = parse_tracks(text, ANCHOR, num_points=2, horizon=2, first_t=3)
    np.testing.assert_allclose(parsed.points_cam_m[0], ANCHOR + [[0.010, 0, -0.005], [0.020, 0, -0.010]])
    assert parsed.visible.tolist() == [[True, True], [False, False]]
    assert parsed.label == "3d object trajectories"


def test_parse_accepts_one_entry_per_row():
    text = '<tracks coords="3 1 1 2 3;3 2 4 5 6;4 1 7 8 9">x</tracks>'
    parsed = parse_tracks(text, np.zeros(3), num_points=2)
    assert parsed.horizon == 2 and parsed.timestamps.tolist() == [3, 4]
    np.testing.assert_allclose(parsed.points_cam_m[1, 0], [0.004, 0.005, 0.006])
    assert parsed.visible.tolist() == [[True, True], [True, False]]


def test_parse_uses_the_last_block():
    text = '<tracks coords="10.0 1 5 5 5">3d object endpoints</tracks> <tracks coords="3.0 1 1 1 1">future</tracks>'
    parsed = parse_tracks(text, np.zeros(3), num_points=1)
    assert parsed.label == "future" and parsed.timestamps.tolist() == [3]


def test_empty_coords_means_nothing_visible():
    parsed = parse_tracks('<tracks coords="">x</tracks>', np.zeros(3), num_points=8, horizon=4, first_t=3)
    assert parsed.points_cam_m.shape == (8, 4, 3) and not parsed.visible.any()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("no tag at all", "no <tracks"),
        ('<tracks coords="3.0 1 1 2 3;4.0 1 2', "unterminated"),
        ('<tracks coords="3.0 1 1 x 3">a</tracks>', "'x' is not an integer"),
        ('<tracks coords="3.0 1 1 2.5 3">a</tracks>', "'2.5' is not an integer"),
        ('<tracks coords="3.0 1 1 2">a</tracks>', "has 4 fields"),
        ('<tracks coords="3.0 1 1 2 3 2 1">a</tracks>', "has 7 fields"),
        ('<tracks coords="3.0">a</tracks>', "has 1 fields"),
        ('<tracks coords="3.0 9 1 2 3">a</tracks>', "point id 9 is out of range 1..8"),
        ('<tracks coords="3.0 0 1 2 3">a</tracks>', "point id 0 is out of range"),
        ('<tracks coords="2.0 1 1 2 3">a</tracks>', "before the first expected 3"),
        ('<tracks coords="3.0 1 1 2 3;3.0 1 4 5 6">a</tracks>', "duplicate entry for timestamp 3, point id 1"),
        ('<tracks coords="3.5 1 1 2 3">a</tracks>', "not a whole frame index"),
        ('<tracks coords="t 1 1 2 3">a</tracks>', "is not a number"),
        ('<tracks coords="9.0 1 1 2 3">a</tracks>', "past the horizon: expected 3..7"),
    ],
)
def test_malformed_input_is_a_one_line_error(text, fragment):
    with pytest.raises(TracksFormatError) as info:
        parse_tracks(text, ANCHOR, num_points=8, horizon=5, first_t=3)
    message = str(info.value)
    assert fragment in message and "\n" not in message


def test_error_names_the_row():
    with pytest.raises(TracksFormatError, match=r"row 1 \('4.0 1 1 q 3'\), field 3"):
        parse_tracks('<tracks coords="3.0 1 1 2 3;4.0 1 1 q 3">a</tracks>', ANCHOR, num_points=8)


def test_beyond_horizon_can_be_dropped():
    text = '<tracks coords="3.0 1 1 2 3;4.0 1 1 2 3;5.0 1 1 2 3">a</tracks>'
    parsed = parse_tracks(text, ANCHOR, num_points=8, horizon=2, first_t=3, strict_horizon=False)
    assert parsed.dropped_beyond_horizon == 1 and parsed.visible[0].all()


def test_id_base_zero():
    parsed = parse_tracks('<tracks coords="0 0 1 0 0 7 0 1 0">a</tracks>', np.zeros(3), num_points=8, id_base=0)
    assert parsed.visible[[0, 7], 0].all() and parsed.visible.sum() == 2


# --- fills ------------------------------------------------------------------------------------
GAPPY = '<tracks coords="4.0 1 10 0 0;6.0 1 30 0 0">a</tracks>'  # point 0 at steps 1 and 3 of 0..4


def test_fill_nan_is_default():
    parsed = parse_tracks(GAPPY, np.zeros(3), num_points=2, horizon=5, first_t=3)
    assert np.isnan(parsed.points_cam_m[0, [0, 2, 4]]).all() and np.isnan(parsed.points_cam_m[1]).all()


def test_fill_hold():
    parsed = parse_tracks(GAPPY, np.zeros(3), num_points=2, horizon=5, first_t=3, fill="hold")
    np.testing.assert_allclose(parsed.points_cam_m[0, :, 0], [0.01, 0.01, 0.01, 0.03, 0.03])
    assert np.isnan(parsed.points_cam_m[1]).all()  # nothing to hold
    assert parsed.visible[0].tolist() == [False, True, False, True, False]  # visibility is not the fill


def test_fill_hold_from_initial_positions():
    initial = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    parsed = parse_tracks(GAPPY, np.zeros(3), num_points=2, horizon=5, first_t=3, fill="hold", initial_cam_m=initial)
    np.testing.assert_allclose(parsed.points_cam_m[0, :, 0], [0.0, 0.01, 0.01, 0.03, 0.03])
    np.testing.assert_allclose(parsed.points_cam_m[1], np.full((5, 3), 0.5))


def test_fill_interpolate():
    parsed = parse_tracks(GAPPY, np.zeros(3), num_points=2, horizon=5, first_t=3, fill="interpolate")
    np.testing.assert_allclose(parsed.points_cam_m[0, :, 0], [0.01, 0.01, 0.02, 0.03, 0.03])
    initial = np.zeros((2, 3))
    parsed = parse_tracks(GAPPY, np.zeros(3), num_points=2, horizon=5, first_t=3, fill="interpolate",
                          initial_cam_m=initial)
    np.testing.assert_allclose(parsed.points_cam_m[0, :, 0], [0.005, 0.01, 0.02, 0.03, 0.03])


def test_unknown_fill_is_refused():
    with pytest.raises(ValueError, match="fill must be one of"):
        parse_tracks(GAPPY, np.zeros(3), fill="zero")


def test_write_refuses_bad_arrays():
    with pytest.raises(TracksFormatError, match=r"\(P, F, 3\)"):
        write_tracks(np.zeros((8, 3)), ANCHOR, first_t=3)
    with pytest.raises(TracksFormatError, match="marked visible but is not finite"):
        write_tracks(np.full((1, 1, 3), np.nan), ANCHOR, first_t=3, visible=np.ones((1, 1), bool))
    with pytest.raises(TracksFormatError, match="anchor"):
        write_tracks(np.zeros((1, 1, 3)), [np.nan, 0, 0], first_t=3)
