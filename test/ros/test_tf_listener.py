"""nodes/tf_listener.py's own buffer over real /tf and /tf_static traffic: interpolation at a stamp, waiting for a
transform that is about to arrive, and stale or missing transforms failing with the reason."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import TransformStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rosutil import wait_until
from tf2_msgs.msg import TFMessage

from molmomotion_ros import conversions as conv
from molmomotion_ros.nodes.tf_listener import TF_QOS, TF_STATIC_QOS, TfLookup
from molmomotion_ros.transforms import NS, ExtrapolationError, FrameUnknownError


class ListenerNode(Node):
    """A plain node standing in for a managed one: its entities live as long as it does."""

    def while_active(self, entity):
        return entity


def transform(parent: str, child: str, xyz, t_s: float) -> TransformStamped:
    T = np.eye(4)
    T[:3, 3] = xyz
    msg = TransformStamped(child_frame_id=child, transform=conv.matrix_to_transform(T))
    msg.header.frame_id = parent
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(t_s), int(round((t_s % 1) * NS))
    return msg


@pytest.fixture
def graph(ros_env):
    rclpy.init()
    listener_node, talker = ListenerNode("tf_listener_test"), rclpy.create_node("tf_talker")
    executor = SingleThreadedExecutor()
    executor.add_node(listener_node)
    executor.add_node(talker)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        yield TfLookup(listener_node), talker.create_publisher(TFMessage, "/tf", TF_QOS), \
            talker.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
    finally:
        executor.shutdown()
        rclpy.try_shutdown()


def test_dynamic_and_static_transforms_over_dds(graph):
    lookup, pub_tf, pub_static = graph
    pub_static.publish(TFMessage(transforms=[transform("fr3_link0", "camera_link", [1.0, 0, 0.5], 0.0)]))
    for t_s, x in ((100.0, 0.0), (101.0, 1.0)):
        pub_tf.publish(TFMessage(transforms=[transform("fr3_link0", "fr3_hand", [x, 0, 0.3], t_s)]))
    wait_until(lambda: len(lookup.buffer.frames()) == 3, 10, what="both topics received")
    T = lookup.lookup("camera_link", "fr3_hand", int(100.25 * NS), 0.0)
    np.testing.assert_allclose(T[:3, 3], [-0.75, 0, -0.2], atol=1e-9)

    # Older than every sample: it cannot arrive later, so no wait.
    start = time.monotonic()
    with pytest.raises(ExtrapolationError, match=r"0\.500 s older than the oldest"):
        lookup.lookup("fr3_link0", "fr3_hand", int(99.5 * NS), 2.0)
    assert time.monotonic() - start < 0.5

    # Newer than the newest: waited for up to the timeout, then refused saying by how much ...
    start = time.monotonic()
    with pytest.raises(ExtrapolationError, match=r"1\.000 s newer than the newest"):
        lookup.lookup("fr3_link0", "fr3_hand", 102 * NS, 0.3)
    assert 0.3 <= time.monotonic() - start < 1.0
    # ... and served when the sample arrives meanwhile.
    threading.Timer(0.2, lambda: pub_tf.publish(TFMessage(transforms=[transform("fr3_link0", "fr3_hand",
                                                                                [2.0, 0, 0.3], 102.5)]))).start()
    np.testing.assert_allclose(lookup.lookup("fr3_link0", "fr3_hand", 102 * NS, 3.0)[0, 3], 1 + 1 / 1.5, atol=1e-9)

    with pytest.raises(FrameUnknownError, match="'world' is not in the TF tree"):
        lookup.lookup("world", "fr3_hand", 101 * NS, 0.1)
