"""The package's TF buffer (molmomotion_ros/transforms.py): chains, interpolation, cache window and its errors."""

import numpy as np
import pytest

from molmomotion_ros.geometry import quat_to_matrix
from molmomotion_ros.transforms import (
    NS,
    ConnectivityError,
    ExtrapolationError,
    FrameUnknownError,
    TransformBuffer,
    TransformError,
    rotation_to_quat,
)


def pose(xyz, quat_xyzw=(0, 0, 0, 1)) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = quat_to_matrix(np.asarray(quat_xyzw, float))
    T[:3, 3] = xyz
    return T


def rot_z(angle: float, xyz=(0, 0, 0)) -> np.ndarray:
    return pose(xyz, (0, 0, np.sin(angle / 2), np.cos(angle / 2)))


def realsense_tree() -> TransformBuffer:
    """fr3_link0 → camera_link → camera_color_optical_frame (static), fr3_link0 → fr3_hand (dynamic)."""
    tf = TransformBuffer(cache_s=2.0)
    tf.set_transform("fr3_link0", "camera_link", pose([1.0, 0.0, 0.5], (0, 0.3826834, 0, 0.9238795)), 0, static=True)
    tf.set_transform("camera_link", "camera_color_optical_frame", pose([0, 0.015, 0], (-0.5, 0.5, -0.5, 0.5)), 0,
                     static=True)
    return tf


def test_static_chain_composes_in_order():
    tf = realsense_tree()
    expected = tf.lookup("fr3_link0", "camera_link") @ tf.lookup("camera_link", "camera_color_optical_frame")
    T = tf.lookup("fr3_link0", "camera_color_optical_frame", 123 * NS)
    np.testing.assert_allclose(T, expected, atol=1e-12)
    # The optical frame's z (viewing direction) is camera_link's x, pitched 45° down.
    np.testing.assert_allclose(T[:3, 2], [np.sqrt(0.5), 0, -np.sqrt(0.5)], atol=1e-6)
    np.testing.assert_allclose(tf.lookup("camera_color_optical_frame", "fr3_link0") @ T, np.eye(4), atol=1e-12)


def test_lookup_between_branches_goes_through_the_common_ancestor():
    tf = realsense_tree()
    tf.set_transform("fr3_link0", "fr3_hand", pose([0.4, 0.1, 0.3]), 5 * NS)
    T_hand_cam = tf.lookup("fr3_hand", "camera_link", 5 * NS)
    np.testing.assert_allclose(T_hand_cam[:3, 3], [0.6, -0.1, 0.2], atol=1e-12)


def test_dynamic_samples_are_interpolated_lerp_and_slerp():
    tf = TransformBuffer()
    tf.set_transform("base", "tool", rot_z(0.0, (0, 0, 0)), 1 * NS)
    tf.set_transform("base", "tool", rot_z(np.pi / 2, (1, 2, 0)), 2 * NS)
    T = tf.lookup("base", "tool", int(1.25 * NS))
    np.testing.assert_allclose(T[:3, 3], [0.25, 0.5, 0], atol=1e-12)
    np.testing.assert_allclose(T[:3, :3], rot_z(np.pi / 8)[:3, :3], atol=1e-9)  # a quarter of 90°, not a lerp
    np.testing.assert_allclose(tf.lookup("base", "tool", 2 * NS), rot_z(np.pi / 2, (1, 2, 0)), atol=1e-12)
    np.testing.assert_allclose(tf.lookup("base", "tool"), rot_z(np.pi / 2, (1, 2, 0)), atol=1e-12)  # newest


def test_slerp_takes_the_short_way_across_the_quaternion_sign():
    tf = TransformBuffer()
    tf.set_transform("a", "b", rot_z(np.radians(170)), 0)
    tf.set_transform("a", "b", rot_z(np.radians(-170)), 2 * NS)  # 20° further, through 180°
    T = tf.lookup("a", "b", NS)
    np.testing.assert_allclose(abs(rotation_to_quat(T[:3, :3])[2]), 1.0, atol=1e-9)  # 180° about z


def test_rotation_to_quat_round_trips_every_branch():
    rng = np.random.default_rng(0)
    for q in [*rng.normal(size=(50, 4)), [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]:
        q = np.asarray(q, float) / np.linalg.norm(q)
        R = quat_to_matrix(q)
        np.testing.assert_allclose(quat_to_matrix(rotation_to_quat(R)), R, atol=1e-12)


def test_a_stamp_outside_the_samples_says_by_how_much():
    tf = realsense_tree()
    tf.set_transform("fr3_link0", "fr3_hand", pose([0.4, 0, 0.3]), 10 * NS)
    tf.set_transform("fr3_link0", "fr3_hand", pose([0.5, 0, 0.3]), 11 * NS)
    with pytest.raises(ExtrapolationError, match=r"0\.500 s newer than the newest") as err:
        tf.lookup("camera_link", "fr3_hand", int(11.5 * NS))
    assert err.value.gap_s == pytest.approx(0.5)
    with pytest.raises(ExtrapolationError, match=r"2\.000 s older than the oldest"):
        tf.lookup("fr3_hand", "fr3_link0", 8 * NS)


def test_samples_older_than_the_cache_window_are_dropped():
    tf = TransformBuffer(cache_s=2.0)
    for second in range(10):
        tf.set_transform("odom", "base", pose([second, 0, 0]), second * NS)
    np.testing.assert_allclose(tf.lookup("odom", "base", int(7.5 * NS))[0, 3], 7.5)
    with pytest.raises(ExtrapolationError, match="older than the oldest sample"):
        tf.lookup("odom", "base", int(6.5 * NS))  # 9 s newest − 2 s window = 7 s


def test_unknown_frame_names_the_known_ones():
    tf = realsense_tree()
    with pytest.raises(FrameUnknownError, match=r"'world' is not in the TF tree \(known frames: camera_color"):
        tf.lookup("world", "camera_color_optical_frame")
    with pytest.raises(FrameUnknownError, match="none yet"):
        TransformBuffer().lookup("fr3_link0", "camera_link")


def test_disconnected_trees_name_the_missing_link():
    tf = TransformBuffer()
    tf.set_transform("camera_link", "camera_color_optical_frame", np.eye(4), 0, static=True)
    tf.set_transform("fr3_link0", "fr3_link1", np.eye(4), 0, static=True)
    with pytest.raises(ConnectivityError, match="camera_color_optical_frame → camera_link and fr3_link1 → fr3_link0"
                                                ".*joining 'camera_link' and 'fr3_link0' is missing"):
        tf.lookup("fr3_link1", "camera_color_optical_frame")
    assert issubclass(ConnectivityError, TransformError) and issubclass(ExtrapolationError, TransformError)


def test_a_new_parent_replaces_the_old_edge():
    tf = TransformBuffer()
    tf.set_transform("a", "c", pose([1, 0, 0]), 0, static=True)
    tf.set_transform("b", "c", pose([0, 2, 0]), 0, static=True)
    np.testing.assert_allclose(tf.lookup("b", "c")[:3, 3], [0, 2, 0])
    with pytest.raises(FrameUnknownError, match="'a' is not in the TF tree"):  # only c's old parent named it
        tf.lookup("a", "c")


def test_bad_samples_are_refused():
    tf = TransformBuffer()
    with pytest.raises(ValueError, match="two different"):
        tf.set_transform("a", "a", np.eye(4), 0)
    with pytest.raises(ValueError, match="rigid"):
        tf.set_transform("a", "b", np.diag([2.0, 1, 1, 1]), 0)
