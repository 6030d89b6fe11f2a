"""The shipped FM and AR checkpoints on fresh harness frames: they load, beat standing still, speak MolmoMotion."""

import numpy as np
import pytest

from molmomotion_ros.forecasting import ForecastInputError, make_forecaster
from molmomotion_ros.forecasting.ar_text import parse_tracks, write_tracks
from molmomotion_ros.forecasting.metrics import ade
from molmomotion_sim.episode import execute
from molmomotion_sim.seeds import SPLITS
from molmomotion_sim.tasks import TASKS
from molmomotion_sim.world import World

SEED = SPLITS["test"].start + 7
STRIDE, HORIZON = 2, 32


@pytest.fixture(scope="module")
def episodes():
    """(request args, ground-truth camera-frame future (P, F, 3)) for one test seed per family."""
    out = []
    with World() as world:
        for family in sorted(TASKS):
            task = TASKS[family](world)
            task.reset(SEED)
            obs = world.render()
            cam = obs.camera
            v, u = np.nonzero(obs.segmentation == task.target.body_id)
            pick = np.linspace(0, len(u) - 1, 8).astype(int)
            uv = np.c_[u[pick], v[pick]].astype(float)
            points_cam = cam.deproject(uv, obs.depth_m[v[pick], u[pick]])
            points_world = cam.cam_to_world(points_cam)
            pos0, quat0 = world.object_pose(task.target)
            local = (points_world - pos0) @ world.rotation(quat0)
            execute(world, task.oracle_action())
            poses = [s.object_poses[task.target.body_id] for s in world.trace]  # sample k at (k + 1) / 15 s
            future = []
            for f in range(1, HORIZON + 1):
                pose = poses[min(f * STRIDE - 1, len(poses) - 1)]
                future.append(pose[:3] + local @ world.rotation(pose[3:]).T)
            future_cam = cam.world_to_cam(np.stack(future, 1))  # (P, F, 3)
            args = (obs.rgb[None], obs.depth_m[None], cam.K, cam.T_world_cam, uv, points_cam[None], task.instruction)
            out.append((family, args, future_cam))
    return out


@pytest.mark.parametrize("backend", ["fm", "ar"])
def test_shipped_forecasters_beat_standing_still(episodes, backend):
    forecaster = make_forecaster(backend)
    errors, still = [], []
    for _, args, gt in episodes:
        forecast = forecaster.predict(*args, horizon=HORIZON, num_samples=1)
        assert forecast.points_cam_m.shape == (1, 8, HORIZON, 3)
        np.testing.assert_allclose(forecast.timestamps_s[:2], [2 / 15, 4 / 15])
        errors.append(ade(forecast.points_cam_m, gt)[0])
        still.append(ade(np.repeat(args[5][0][:, None], HORIZON, 1)[None], gt)[0])
    assert np.mean(errors) < 0.5 * np.mean(still), (errors, still)


def test_fm_hypotheses_are_diverse_and_sorted(episodes):
    forecast = make_forecaster("fm").predict(*episodes[0][1], horizon=HORIZON, num_samples=8)
    assert forecast.points_cam_m.shape == (8, 8, HORIZON, 3)
    assert np.all(np.diff(forecast.scores) <= 1e-9)
    assert np.ptp(forecast.points_cam_m[:, :, -1], axis=0).max() > 1e-3


def test_ar_output_round_trips_through_molmomotion_text(episodes):
    forecast = make_forecaster("ar").predict(*episodes[1][1], horizon=HORIZON)
    anchor = episodes[1][1][5][0][0]
    text = write_tracks(forecast.points_cam_m[0], anchor, first_t=1)
    parsed = parse_tracks(text, anchor, num_points=8, horizon=HORIZON, first_t=1)
    assert np.abs(parsed.points_cam_m - forecast.points_cam_m[0]).max() <= 0.0005 + 1e-6


def test_fm_noise_is_keyed_by_the_frame_so_a_replay_gives_the_same_forecast(episodes):
    """The forecaster node passes each frame's stamp as noise_key: the same frame and key give the same
    hypotheses (a replayed bag reproduces the recorded forecasts), another key other samples, key 0 the seed's."""
    forecaster = make_forecaster("fm")
    args = episodes[0][1]
    stamp_ns = 1_733_580_000_123_456_789
    first = forecaster.predict(*args, horizon=HORIZON, num_samples=4, noise_key=stamp_ns).points_cam_m
    again = make_forecaster("fm").predict(*args, horizon=HORIZON, num_samples=4, noise_key=stamp_ns).points_cam_m
    np.testing.assert_array_equal(first, again)
    other = forecaster.predict(*args, horizon=HORIZON, num_samples=4, noise_key=stamp_ns + 33_333_333).points_cam_m
    assert np.abs(first - other).max() > 1e-4
    unkeyed = forecaster.predict(*args, horizon=HORIZON, num_samples=4).points_cam_m
    np.testing.assert_array_equal(unkeyed, forecaster.predict(*args, horizon=HORIZON, num_samples=4,
                                                              noise_key=0).points_cam_m)
    with pytest.raises(ForecastInputError, match="noise_key"):
        forecaster.predict(*args, horizon=HORIZON, noise_key=-1)
