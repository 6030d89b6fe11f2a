"""Time parameterisation never breaks a limit; rigid fits recover known motions."""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from molmomotion_ros.geometry import FitError, kabsch, object_motion_from_tracks
from molmomotion_ros.planning.limits import JointLimits, LimitsError
from molmomotion_ros.planning.timing import TimingError, time_parameterize

LIMITS = JointLimits.from_yaml()


def _rotation(rng):
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    x, y, z, w = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def test_kabsch_recovers_a_known_rigid_motion():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(8, 3)) * 0.03
    R, t = _rotation(rng), rng.normal(size=3)
    T = kabsch(points, points @ R.T + t)
    np.testing.assert_allclose(T[:3, :3], R, atol=1e-9)
    np.testing.assert_allclose(T[:3, 3], t, atol=1e-9)


def test_tracks_to_object_motion_and_rigidity_residual():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(8, 3)) * 0.03
    motions = [(_rotation(rng), rng.normal(size=3) * 0.1) for _ in range(5)]
    tracks = np.stack([points @ R.T + t for R, t in motions], 1)  # (P, F, 3)
    fitted, residual = object_motion_from_tracks(points, tracks)
    assert residual.max() < 1e-9
    np.testing.assert_allclose(fitted[2][:3, :3], motions[2][0], atol=1e-9)
    tracks[0, 3] += 0.01  # one point off by 1 cm: the step's residual shows it
    assert object_motion_from_tracks(points, tracks)[1][3] > 1e-3


def test_batched_track_fit_equals_kabsch_per_step_with_missing_points():
    rng = np.random.default_rng(4)
    points = rng.normal(size=(8, 3)) * 0.03
    tracks = points[:, None] + rng.normal(size=(8, 12, 3)) * 0.02  # non-rigid: residuals > 0
    tracks[2, 5] = np.nan  # a point lost at one step is left out of that step's fit only
    motions, residuals = object_motion_from_tracks(points, tracks)
    for f in range(12):
        T = kabsch(points, tracks[:, f])
        moved = points @ T[:3, :3].T + T[:3, 3]
        np.testing.assert_allclose(motions[f], T, atol=1e-12)
        assert residuals[f] == pytest.approx(np.sqrt(np.nanmean(np.sum((moved - tracks[:, f]) ** 2, 1))))
    with pytest.raises(FitError, match="at least 3"):
        object_motion_from_tracks(points[:2], tracks[:2])
    line = np.c_[np.linspace(0, 0.1, 5), np.zeros(5), np.zeros(5)]
    with pytest.raises(FitError, match="collinear"):
        object_motion_from_tracks(line, np.repeat(line[:, None], 3, 1))


def test_degenerate_fits_are_refused():
    with pytest.raises(FitError, match="at least 3"):
        kabsch(np.zeros((2, 3)), np.zeros((2, 3)))
    line = np.c_[np.linspace(0, 1, 5), np.zeros(5), np.zeros(5)]
    with pytest.raises(FitError, match="collinear"):
        kabsch(line, line)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), waypoints=st.integers(2, 6), scaling=st.floats(0.05, 1.0))
@example(seed=50870629, waypoints=4, scaling=1.0)  # a waypoint 2 mrad from a limit: the spline overshot it
def test_random_paths_never_break_a_limit(seed, waypoints, scaling):
    rng = np.random.default_rng(seed)
    limits = LIMITS.scaled(scaling)
    path = rng.uniform(limits.position_lower_rad, limits.position_upper_rad, (waypoints, 7))
    timed = time_parameterize(path, limits)
    assert timed.violations(limits) == []
    np.testing.assert_allclose(timed.positions_rad[[0, -1]], path[[0, -1]], atol=1e-9)
    np.testing.assert_allclose(timed.velocities_rad_s[[0, -1]], 0.0, atol=1e-6)  # rest to rest


def test_bad_paths_and_limits_are_refused():
    with pytest.raises(TimingError, match="position limits"):
        time_parameterize(np.full((2, 7), 5.0), LIMITS)
    with pytest.raises(TimingError, match="NaN"):
        time_parameterize(np.full((2, 7), np.nan), LIMITS)
    with pytest.raises(TimingError, match=r"\(M >= 2, 7\)"):
        time_parameterize(np.zeros((2, 6)), LIMITS)
    with pytest.raises(LimitsError, match="velocity_scaling"):
        LIMITS.scaled(1.5)
