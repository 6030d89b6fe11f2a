"""molmomotion_ros.conversions with hand-built messages (no running graph): round trips and refusals."""

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import Pose, Quaternion
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import Image
from visualization_msgs.msg import Marker

from molmomotion_ros import conversions as conv
from molmomotion_ros.camera import PinholeCamera
from molmomotion_ros.conversions import ConversionError
from molmomotion_ros.forecasting.types import Forecast
from molmomotion_ros.paths import config_path

STAMP = Time(sec=12, nanosec=345_000_000)


@pytest.fixture
def rng():
    return np.random.default_rng(7)


@pytest.fixture
def camera():
    return PinholeCamera.from_yaml(config_path("camera.yaml"))


def _image(pixels: np.ndarray, encoding: str, pad_bytes: int = 0, bigendian: bool = False) -> Image:
    """Hand-built Image with ``pad_bytes`` of junk after every row and the given byte order."""
    h, w = pixels.shape[:2]
    data = pixels.astype(pixels.dtype.newbyteorder(">" if bigendian else "<")).reshape(h, -1).view(np.uint8)
    data = np.concatenate([data, np.full((h, pad_bytes), 0xAB, np.uint8)], axis=1)
    return Image(height=h, width=w, encoding=encoding, is_bigendian=int(bigendian), step=data.shape[1],
                 data=data.tobytes())


# --- images -------------------------------------------------------------------------------------
def test_rgb_round_trip(rng):
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    msg = conv.rgb_to_msg(rgb, STAMP, "cam")
    assert (msg.encoding, msg.step, msg.header.frame_id, msg.header.stamp) == ("rgb8", 15, "cam", STAMP)
    back = conv.msg_to_rgb(msg)
    assert back.dtype == np.uint8 and np.array_equal(back, rgb) and back.flags.writeable


@pytest.mark.parametrize("encoding", ["bgr8", "rgba8", "bgra8", "mono8"])
def test_other_colour_encodings(rng, encoding):
    rgb = rng.integers(0, 256, (4, 7, 3), dtype=np.uint8)
    if encoding == "mono8":
        rgb[:] = rgb[..., :1]
        pixels = rgb[..., :1]
    else:
        pixels = rgb[..., ::-1] if encoding.startswith("bgr") else rgb
        if encoding.endswith("a8"):
            pixels = np.concatenate([pixels, np.full((4, 7, 1), 200, np.uint8)], axis=2)
    assert np.array_equal(conv.msg_to_rgb(_image(np.ascontiguousarray(pixels), encoding, pad_bytes=3)), rgb)


def test_padded_rgb_rows(rng):
    rgb = rng.integers(0, 256, (5, 3, 3), dtype=np.uint8)
    assert np.array_equal(conv.msg_to_rgb(_image(rgb, "rgb8", pad_bytes=7)), rgb)


@pytest.mark.parametrize("encoding", ["32FC1", "16UC1"])
def test_depth_round_trip(rng, encoding):
    depth_m = rng.uniform(0.3, 2.5, (6, 8)).astype(np.float32)
    depth_m[1, 2] = np.nan
    msg = conv.depth_to_msg(depth_m, STAMP, "cam", encoding=encoding)
    assert msg.encoding == encoding
    back = conv.msg_to_depth_m(msg)
    assert back.dtype == np.float32 and back.shape == depth_m.shape
    assert np.array_equal(np.isnan(back), np.isnan(depth_m))
    assert np.nanmax(np.abs(back - depth_m)) <= (0.0005 if encoding == "16UC1" else 0.0)
    if encoding == "16UC1":
        assert np.frombuffer(msg.data, "<u2").reshape(6, 8)[1, 2] == 0  # NaN → 0 = no return


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("encoding", ["32FC1", "16UC1"])
def test_depth_padding_and_byte_order(rng, encoding, bigendian):
    mm = rng.integers(1, 4000, (5, 6)).astype(np.uint16)
    mm[0, 0] = 0
    pixels = mm if encoding == "16UC1" else (mm / 1000.0).astype(np.float32)
    if encoding == "32FC1":
        pixels[0, 0] = np.nan
    depth_m = conv.msg_to_depth_m(_image(pixels, encoding, pad_bytes=4, bigendian=bigendian))
    expected = mm / 1000.0
    assert np.isnan(depth_m[0, 0])
    assert np.allclose(depth_m.reshape(-1)[1:], expected.reshape(-1)[1:], atol=1e-6)


def test_depth_16uc1_does_not_fit_beyond_65_m():
    with pytest.raises(ConversionError, match="16UC1"):
        conv.depth_to_msg(np.full((2, 2), 70.0, np.float32), STAMP, "cam", encoding="16UC1")


@pytest.mark.parametrize(("convert", "encoding"), [(conv.msg_to_rgb, "32FC1"), (conv.msg_to_rgb, "yuv422"),
                                                   (conv.msg_to_depth_m, "rgb8"), (conv.msg_to_depth_m, "8UC1")])
def test_bad_encodings_are_named(convert, encoding):
    msg = Image(height=2, width=2, encoding=encoding, step=8, data=bytes(16))
    with pytest.raises(ConversionError, match=encoding):
        convert(msg)


@pytest.mark.parametrize(("height", "width", "step", "nbytes", "match"), [
    (4, 4, 8, 48, "shorter"),
    (4, 4, 12, 30, "needs 48 bytes"),
    (0, 4, 12, 0, "empty"),
])
def test_mismatched_sizes(height, width, step, nbytes, match):
    msg = Image(height=height, width=width, encoding="rgb8", step=step, data=bytes(nbytes))
    with pytest.raises(ConversionError, match=match):
        conv.msg_to_rgb(msg)


def test_camera_info_round_trip(camera):
    T_world_cam = camera.T_world_cam
    msg = conv.camera_info_msg(camera, STAMP, "camera_color_optical_frame")
    assert msg.distortion_model == "plumb_bob" and list(msg.d) == [0.0] * 5
    assert (msg.width, msg.height) == (camera.width, camera.height)
    assert np.allclose(np.reshape(msg.p, (3, 4))[:, :3], camera.K)
    back = conv.camera_info_to_camera(msg, T_world_cam)
    assert np.allclose(back.K, camera.K) and (back.width, back.height) == (camera.width, camera.height)
    assert np.allclose(back.T_world_cam, T_world_cam) and back.frame_id == "camera_color_optical_frame"
    assert np.allclose(conv.camera_info_to_camera(msg).T_world_cam, np.eye(4))


def test_camera_info_refusals(camera):
    msg = conv.camera_info_msg(camera, STAMP, "cam")
    msg.d = [0.1, 0.0, 0.0, 0.0, 0.0]
    with pytest.raises(ConversionError, match="distortion"):
        conv.camera_info_to_camera(msg)
    empty = conv.camera_info_msg(camera, STAMP, "cam")
    empty.k, empty.p, empty.width = [0.0] * 9, [0.0] * 12, 0
    with pytest.raises(ConversionError, match="not a valid pinhole camera"):
        conv.camera_info_to_camera(empty)


def test_camera_info_distortion_models(camera):
    """plumb_bob with non-zero D gets a rectifier into the pinhole image of the same K; other models with
    non-zero coefficients are refused naming the model; zero D of any model needs no rectification."""
    msg = conv.camera_info_msg(camera, STAMP, "cam")
    msg.p = [0.0] * 12  # rectified into K, whatever P says
    msg.d = [-0.055, 0.063, -0.0004, 0.0007, -0.02]
    pinhole, rectifier = conv.camera_info_to_rectified(msg, camera.T_world_cam)
    assert np.allclose(pinhole.K, camera.K) and np.allclose(pinhole.T_world_cam, camera.T_world_cam)
    assert rectifier is not None and rectifier.distortion.as_list() == list(msg.d)
    assert rectifier.raw_u.shape == (camera.height, camera.width)
    msg.distortion_model, msg.d = "equidistant", [0.1, 0.0, 0.0, 0.0]
    with pytest.raises(ConversionError, match="model 'equidistant' .* not supported: only plumb_bob"):
        conv.camera_info_to_rectified(msg)
    msg.d = [0.0] * 4
    assert conv.camera_info_to_rectified(msg)[1] is None
    msg.distortion_model, msg.d = "plumb_bob", [0.1, 0.0]
    with pytest.raises(ConversionError, match="5 finite"):
        conv.camera_info_to_rectified(msg)


# --- poses --------------------------------------------------------------------------------------
def test_pose_round_trip(rng):
    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=3).as_matrix()
    T[:3, 3] = rng.normal(size=3)
    pose = conv.matrix_to_pose(T)
    assert np.allclose(conv.pose_to_matrix(pose), T)
    assert np.allclose(conv.transform_to_matrix(conv.matrix_to_transform(T)), T)
    stamped = conv.pose_stamped(T, STAMP, "world")
    assert stamped.header.frame_id == "world" and np.allclose(conv.pose_to_matrix(stamped.pose), T)
    assert np.allclose(conv.xyz_quat_to_matrix(conv.matrix_to_xyz_quat(T)), T)
    q = Rotation.from_matrix(T[:3, :3]).as_quat()
    assert np.allclose([pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w], q) or \
        np.allclose([pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w], -q)


def test_pose_refusals():
    with pytest.raises(ConversionError, match="quaternion"):
        conv.pose_to_matrix(Pose(orientation=Quaternion(x=0.0, y=0.0, z=0.0, w=0.0)))
    with pytest.raises(ConversionError, match="7 numbers"):
        conv.xyz_quat_to_matrix([0.0, 0.0, 1.0])
    with pytest.raises(ConversionError, match="rotation"):
        conv.matrix_to_pose(np.diag([1.0, 1.0, -1.0, 1.0]))
    assert np.allclose(conv.xyz_quat_to_matrix([1, 2, 3, 0, 0, 0, 2.0])[:3, :3], np.eye(3))  # normalised


# --- forecasts ----------------------------------------------------------------------------------
def _forecast(rng, k=3, p=8, f=5) -> tuple[Forecast, np.ndarray]:
    points_world_m = rng.normal(size=(k, p, f, 3))
    timestamps_s = 2 * (np.arange(f) + 1) / 15.0
    forecast = Forecast(points_cam_m=points_world_m, points_world_m=points_world_m, timestamps_s=timestamps_s,
                        scores=np.sort(rng.normal(size=k))[::-1], backend="test")
    return forecast, rng.normal(size=(p, 3))


def test_best_trajectory_round_trip(rng):
    forecast, t0 = _forecast(rng)
    msg = conv.forecast_to_trajectory(forecast, t0, STAMP, "world")
    assert msg.header.frame_id == "world" and msg.header.stamp == STAMP
    assert list(msg.joint_names) == [f"point_{i}" for i in range(8)] and len(msg.points) == 6
    assert msg.points[0].time_from_start.sec == 0 and msg.points[0].time_from_start.nanosec == 0
    assert msg.points[1].transforms[3].rotation.w == 1.0
    points_t0, tracks, times = conv.msg_to_forecast_tracks(msg)
    assert np.allclose(points_t0, t0) and np.allclose(tracks, forecast.best_world_m)
    assert np.allclose(times, forecast.timestamps_s, atol=1e-9)


def test_hypotheses_round_trip(rng):
    forecast, t0 = _forecast(rng, k=4, p=8, f=3)
    msg = conv.forecast_to_hypotheses(forecast, t0, STAMP, "world")
    assert msg.joint_names[8] == "h1_point_0" and len(msg.points[0].transforms) == 32
    points_t0, tracks, times = conv.msg_to_forecast_hypotheses(msg)
    assert np.allclose(points_t0, t0) and np.allclose(tracks, forecast.points_world_m)
    assert np.allclose(times, forecast.timestamps_s)
    scores = conv.msg_to_scores(conv.scores_to_msg(forecast.scores))
    assert np.allclose(scores, forecast.scores) and scores.shape == (4,)


def test_forecast_refusals(rng):
    forecast, t0 = _forecast(rng)
    with pytest.raises(ConversionError, match="do not match"):
        conv.tracks_to_trajectory(t0[:5], forecast.best_world_m, forecast.timestamps_s, STAMP, "world")
    with pytest.raises(ConversionError, match="timestamps"):
        conv.tracks_to_trajectory(t0, forecast.best_world_m, forecast.timestamps_s[:2], STAMP, "world")
    bad = forecast.best_world_m.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ConversionError, match="finite"):
        conv.tracks_to_trajectory(t0, bad, forecast.timestamps_s, STAMP, "world")
    msg = conv.forecast_to_trajectory(forecast, t0, STAMP, "world")
    msg.points[2].transforms = msg.points[2].transforms[:3]
    with pytest.raises(ConversionError, match="3 transforms for 8"):
        conv.msg_to_forecast_tracks(msg)
    hyp = conv.forecast_to_hypotheses(forecast, t0, STAMP, "world")
    with pytest.raises(ConversionError, match="point_0"):
        conv.msg_to_forecast_tracks(hyp)


def test_markers(rng):
    forecast, t0 = _forecast(rng, k=3, p=8, f=5)
    goal = np.eye(4)
    goal[:3, 3] = [0.5, 0.1, 0.7]
    markers = conv.forecast_to_markers(t0, forecast.points_world_m, STAMP, "world", goal).markers
    assert markers[0].action == Marker.DELETEALL
    by_ns = {}
    for m in markers[1:]:
        by_ns.setdefault(m.ns, []).append(m)
        assert m.header.frame_id == "world" and m.header.stamp == STAMP
    assert [m.id for m in by_ns["forecast_best"]] == list(range(8))
    assert [m.id for m in by_ns["forecast_hypotheses"]] == list(range(16))
    assert all(len(m.points) == 6 for m in by_ns["forecast_best"] + by_ns["forecast_hypotheses"])
    assert by_ns["forecast_best"][0].scale.x > by_ns["forecast_hypotheses"][0].scale.x
    assert by_ns["forecast_hypotheses"][0].color.a < 1.0
    assert by_ns["forecast_t0"][0].type == Marker.SPHERE_LIST and len(by_ns["forecast_t0"][0].points) == 8
    assert [m.type for m in by_ns["forecast_goal"]] == [Marker.ARROW] * 3
    assert by_ns["forecast_goal"][0].points[1].x == pytest.approx(0.58)
    no_goal = conv.forecast_to_markers(t0, forecast.points_world_m, STAMP, "world").markers
    assert not any(m.ns == "forecast_goal" for m in no_goal)


# --- diagnostics --------------------------------------------------------------------------------
def test_diagnostic_array():
    msg = conv.diagnostic_array("forecaster_node", "camera/depth/image_raw", "WARN", "x" * 10_000, STAMP,
                                {"encoding": "8UC1", "count": 3})
    (status,) = msg.status
    assert status.level == DiagnosticStatus.WARN and status.name == "forecaster_node: camera/depth/image_raw"
    assert len(status.message) <= 300 and [(v.key, v.value) for v in status.values] == [("encoding", "8UC1"),
                                                                                        ("count", "3")]
    with pytest.raises(ConversionError, match="level"):
        conv.diagnostic_array("n", "s", "FATAL", "m", STAMP)
