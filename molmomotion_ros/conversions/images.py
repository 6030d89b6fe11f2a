"""sensor_msgs Image / CameraInfo ⇄ numpy and :class:`~molmomotion_ros.camera.PinholeCamera`.

Replaces cv_bridge (not available as a wheel). Conventions follow ``camera.py``: RGB arrays are
(H, W, 3) uint8; depth arrays are (H, W) float32 metres along the optical axis with NaN = no return.
On topics depth is either ``32FC1`` (metres, NaN = no return) or ``16UC1`` (millimetres, 0 = no
return, the RealSense/OpenNI convention). Incoming images may pad rows (``step`` > width × bytes per
pixel) and may be big-endian; both are honoured.
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo, Image

from ..camera import CameraConfigError, PinholeCamera
from ..distortion import DistortionError, PlumbBob, Rectifier
from .errors import ConversionError

# encoding → (numpy dtype of one channel, channels)
_COLOR_ENCODINGS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
_DEPTH_ENCODINGS = {"32FC1": np.dtype(np.float32), "16UC1": np.dtype(np.uint16)}
_MM_PER_M = 1000.0
_MAX_DEPTH_16UC1_M = 65.535


def rgb_to_msg(rgb_uint8_hwc: np.ndarray, stamp: Time, frame_id: str) -> Image:
    """(H, W, 3) uint8 RGB → ``rgb8`` Image (tightly packed rows)."""
    rgb = np.asarray(rgb_uint8_hwc)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ConversionError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    h, w, _ = rgb.shape
    msg = Image(height=h, width=w, encoding="rgb8", is_bigendian=0, step=3 * w)
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.data = np.ascontiguousarray(rgb).tobytes()
    return msg


def depth_to_msg(depth_m_float32_hw: np.ndarray, stamp: Time, frame_id: str, encoding: str = "32FC1") -> Image:
    """(H, W) metres (NaN = no return) → ``32FC1`` metres or ``16UC1`` millimetres (NaN → 0)."""
    depth_m = np.asarray(depth_m_float32_hw)
    if depth_m.ndim != 2 or not np.issubdtype(depth_m.dtype, np.floating):
        raise ConversionError(f"depth must be (H, W) float metres, got {depth_m.shape} {depth_m.dtype}")
    h, w = depth_m.shape
    if encoding == "32FC1":
        data = depth_m.astype("<f4", copy=False)
    elif encoding == "16UC1":
        mm = np.nan_to_num(depth_m.astype(np.float64) * _MM_PER_M, nan=0.0, posinf=0.0, neginf=0.0)
        if mm.max(initial=0.0) > np.iinfo(np.uint16).max:
            raise ConversionError(f"depth beyond {_MAX_DEPTH_16UC1_M} m does not fit 16UC1 millimetres")
        data = np.clip(np.round(mm), 0, None).astype("<u2")
    else:
        raise ConversionError(f"depth encoding must be 32FC1 or 16UC1, got {encoding!r}")
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=0, step=data.itemsize * w)
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.data = np.ascontiguousarray(data).tobytes()
    return msg


def _pixels(msg: Image, channel_dtype: np.dtype, channels: int) -> np.ndarray:
    """The (H, W, C) pixel array of ``msg`` in native byte order, honouring ``step`` padding."""
    h, w = int(msg.height), int(msg.width)
    if h <= 0 or w <= 0:
        raise ConversionError(f"image is empty ({w}x{h})")
    dtype = channel_dtype.newbyteorder(">" if msg.is_bigendian else "<")
    row_bytes = w * channels * dtype.itemsize
    step = int(msg.step)
    if step < row_bytes:
        raise ConversionError(f"{msg.encoding} image step {step} is shorter than a {w}-pixel row ({row_bytes} bytes)")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size < step * (h - 1) + row_bytes:
        raise ConversionError(f"{msg.encoding} image {w}x{h} with step {step} needs {step * h} bytes, "
                              f"got {data.size}")
    if data.size < step * h:  # the last row's padding may be omitted
        data = np.concatenate([data, np.zeros(step * h - data.size, np.uint8)])
    rows = data[: step * h].reshape(h, step)[:, :row_bytes]  # (H, row_bytes), padding dropped
    return np.array(np.ascontiguousarray(rows).view(dtype).reshape(h, w, channels), dtype=channel_dtype)  # owned


def msg_to_rgb(msg: Image) -> np.ndarray:
    """Image (rgb8, bgr8, rgba8, bgra8 or mono8) → (H, W, 3) uint8 RGB."""
    channels = _COLOR_ENCODINGS.get(msg.encoding)
    if channels is None:
        raise ConversionError(f"colour image encoding {msg.encoding!r} is not supported "
                              f"(expected one of {', '.join(_COLOR_ENCODINGS)})")
    px = _pixels(msg, np.dtype(np.uint8), channels)
    if msg.encoding == "mono8":
        return np.repeat(px, 3, axis=2)
    if msg.encoding.startswith("bgr"):
        return np.ascontiguousarray(px[..., 2::-1])
    return np.ascontiguousarray(px[..., :3])


def msg_to_depth_m(msg: Image) -> np.ndarray:
    """Image (32FC1 metres or 16UC1 millimetres) → (H, W) float32 metres, NaN = no return."""
    dtype = _DEPTH_ENCODINGS.get(msg.encoding)
    if dtype is None:
        raise ConversionError(f"depth image encoding {msg.encoding!r} is not supported (expected 32FC1 or 16UC1)")
    px = _pixels(msg, dtype, 1)[..., 0]
    if msg.encoding == "16UC1":
        depth_m = px.astype(np.float32) / np.float32(_MM_PER_M)
        depth_m[px == 0] = np.nan
        return depth_m
    depth_m = px.astype(np.float32, copy=True)
    depth_m[~np.isfinite(depth_m) | (depth_m <= 0)] = np.nan
    return depth_m


def camera_info_msg(camera: PinholeCamera, stamp: Time, frame_id: str) -> CameraInfo:
    """A rectified pinhole camera as CameraInfo (plumb_bob, zero distortion, K, R = I, P = [K | 0])."""
    K = camera.K
    msg = CameraInfo(height=int(camera.height), width=int(camera.width), distortion_model="plumb_bob")
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.d = [0.0] * 5
    msg.k = K.reshape(-1).tolist()
    msg.r = np.eye(3).reshape(-1).tolist()
    msg.p = np.hstack([K, np.zeros((3, 1))]).reshape(-1).tolist()
    return msg


def camera_info_to_camera(msg: CameraInfo, T_world_cam: np.ndarray | None = None) -> PinholeCamera:
    """CameraInfo → PinholeCamera (intrinsics from P when set, else K; frame_id from the header).

    Distortion is not modelled: a message with non-zero distortion coefficients is refused, since
    deprojecting raw pixels with it would silently misplace points (use :func:`camera_info_to_rectified`).
    """
    if np.any(np.asarray(msg.d, dtype=float) != 0):
        raise ConversionError(f"camera_info has distortion {list(msg.d)} ({msg.distortion_model}); "
                              "only rectified (zero-distortion) images are supported here")
    k = np.asarray(msg.k, dtype=float).reshape(3, 3)
    p = np.asarray(msg.p, dtype=float).reshape(3, 4)
    return _pinhole(msg, p[:, :3] if p[0, 0] > 0 and p[1, 1] > 0 else k, T_world_cam)


def camera_info_to_rectified(msg: CameraInfo, T_world_cam: np.ndarray | None = None
                             ) -> tuple[PinholeCamera, Rectifier | None]:
    """CameraInfo of a raw camera → (the pinhole camera its images are used as, the Rectifier that makes them
    so, or None when they already are).

    Zero distortion (any model): :func:`camera_info_to_camera`. ``plumb_bob`` with non-zero D (every
    RealSense): the images are rectified into the pinhole image of the same K (image_proc's rectify with
    P = K). Other models with non-zero coefficients are refused, naming the model."""
    d = np.asarray(msg.d, dtype=float)
    if not np.any(d != 0):
        return camera_info_to_camera(msg, T_world_cam), None
    if msg.distortion_model != "plumb_bob":
        raise ConversionError(f"camera_info distortion model {msg.distortion_model!r} with coefficients "
                              f"{d.tolist()} is not supported: only plumb_bob is rectified here (publish "
                              "rectified images with zero D, or a plumb_bob calibration)")
    try:
        distortion = PlumbBob.from_list(d)
    except DistortionError as err:
        raise ConversionError(f"camera_info: {err}") from None
    camera = _pinhole(msg, np.asarray(msg.k, dtype=float).reshape(3, 3), T_world_cam)
    return camera, Rectifier.for_camera(camera, distortion)


def _pinhole(msg: CameraInfo, intrinsics: np.ndarray, T_world_cam: np.ndarray | None) -> PinholeCamera:
    kwargs = {}
    if T_world_cam is not None:
        kwargs["T_world_cam"] = np.asarray(T_world_cam, dtype=float)
    try:
        return PinholeCamera(width=int(msg.width), height=int(msg.height), fx=float(intrinsics[0, 0]),
                             fy=float(intrinsics[1, 1]), cx=float(intrinsics[0, 2]), cy=float(intrinsics[1, 2]),
                             frame_id=msg.header.frame_id or PinholeCamera.frame_id, **kwargs)
    except CameraConfigError as err:
        raise ConversionError(f"camera_info is not a valid pinhole camera: {err}") from None


class FrameError(ConversionError):
    """One RGB-D frame cannot be used; ``kind`` says how (color_image, depth_image, camera_info, size_mismatch,
    no_depth) and ``part`` which message (color, depth, camera_info)."""

    def __init__(self, kind: str, part: str, message: str):
        super().__init__(message)
        self.kind, self.part = kind, part


def frame_inputs(color: Image, depth: Image, info: CameraInfo,
                 T_world_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray, PinholeCamera]:
    """A synchronised colour/depth/camera_info triple → (rgb, depth_m, camera with pose) as the forecaster reads
    it: rectified through camera_info's distortion when it has one, the depth aligned to the colour image.
    The forecaster node and offline re-forecasting both read frames here, so a recording replays exactly.
    Raises :class:`FrameError`."""
    try:
        rgb = msg_to_rgb(color)
    except ConversionError as err:
        raise FrameError("color_image", "color", str(err)) from None
    try:
        depth_m = msg_to_depth_m(depth)
    except ConversionError as err:
        raise FrameError("depth_image", "depth", str(err)) from None
    try:
        camera, rectifier = camera_info_to_rectified(info)
    except ConversionError as err:
        raise FrameError("camera_info", "camera_info", str(err)) from None
    if rectifier is not None and rgb.shape[:2] == depth_m.shape == (camera.height, camera.width):
        rgb, depth_m = rectifier.rgb(rgb), rectifier.depth(depth_m)
    camera = camera.with_pose(T_world_cam)
    if rgb.shape[:2] != depth_m.shape or depth_m.shape != (camera.height, camera.width):
        raise FrameError("size_mismatch", "depth",
                         f"colour {rgb.shape[1]}x{rgb.shape[0]}, depth {depth_m.shape[1]}x{depth_m.shape[0]} "
                         f"and camera_info {camera.width}x{camera.height} differ (depth must be aligned)")
    if not np.isfinite(depth_m).any():
        raise FrameError("no_depth", "depth", "the depth image has no valid pixel (all NaN or 0)")
    return rgb, depth_m, camera
