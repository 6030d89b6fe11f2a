"""TF for the nodes: look up a 4x4 transform at a stamp, waiting up to a timeout.

:func:`make_tf_lookup` gives, behind one small API (:meth:`TfLookup.lookup`, :meth:`TfLookup.close`):

* on a ROS install (``import tf2_ros`` works): tf2_ros.Buffer + TransformListener;
* elsewhere (the pip venv): the package's :class:`~molmomotion_ros.transforms.TransformBuffer` fed by
  subscriptions to ``/tf`` (reliable, volatile, depth 100) and ``/tf_static`` (reliable, transient-local,
  depth 100) — tf2_ros's own QoS, so that every TF publisher (robot_state_publisher, static_transform_publisher,
  calibration tools) matches.

Either way a failure raises the core's :class:`~molmomotion_ros.transforms.TransformError` with the reason.
Create it at activate (its subscriptions are the node's ``while_active`` entities) and call :meth:`close`
at deactivate. Call :meth:`lookup` from a worker thread, never from a callback: it waits for messages the
executor delivers.
"""

from __future__ import annotations

import time

import numpy as np
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from tf2_msgs.msg import TFMessage

from .. import conversions
from ..streams import stamp_ns
from ..transforms import (
    ConnectivityError,
    ExtrapolationError,
    FrameUnknownError,
    TransformBuffer,
    TransformError,
)

POLL_S = 0.005
TF_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)
TF_STATIC_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)


class TfLookup:
    """The package's TF buffer over /tf and /tf_static (no tf2_ros)."""

    backend = "molmomotion_ros.transforms"

    def __init__(self, node, cache_s: float = 10.0):
        self._node = node
        self.buffer = TransformBuffer(cache_s)
        for topic, qos, static in (("/tf", TF_QOS, False), ("/tf_static", TF_STATIC_QOS, True)):
            node.while_active(node.create_subscription(TFMessage, topic, lambda m, s=static: self._on_tf(m, s), qos))

    def _on_tf(self, msg: TFMessage, static: bool) -> None:
        for transform in msg.transforms:
            try:
                self.buffer.set_transform(transform.header.frame_id.lstrip("/"), transform.child_frame_id.lstrip("/"),
                                          conversions.transform_to_matrix(transform.transform),
                                          stamp_ns(transform.header.stamp), static=static)
            except (ValueError, conversions.ConversionError) as err:  # one bad transform spoils none of the others
                self._node.get_logger().warning(f"{'/tf_static' if static else '/tf'}: transform ignored: {err}",
                                                throttle_duration_sec=30.0)

    def lookup(self, target: str, source: str, stamp_ns_: int, timeout_s: float) -> np.ndarray:
        """T_target_source (4x4) at the stamp, waiting up to ``timeout_s`` (wall) for it to arrive; raises
        TransformError. A stamp older than every sample cannot arrive later: that fails at once."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.buffer.lookup(target, source, stamp_ns_)
            except ExtrapolationError as err:
                if err.gap_s < 0 or time.monotonic() >= deadline:
                    raise
            except TransformError:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(POLL_S)

    def close(self) -> None:
        """Nothing to release: the subscriptions go with the node's other while_active entities."""


class Tf2RosLookup:
    """tf2_ros.Buffer + TransformListener, where tf2_ros is installed."""

    backend = "tf2_ros"

    def __init__(self, node, cache_s: float = 10.0):
        import tf2_ros
        from rclpy.duration import Duration

        self._tf2_ros = tf2_ros
        self.buffer = tf2_ros.Buffer(cache_time=Duration(seconds=cache_s), node=node)
        self._listener = tf2_ros.TransformListener(self.buffer, node, spin_thread=False)

    def lookup(self, target: str, source: str, stamp_ns_: int, timeout_s: float) -> np.ndarray:
        from rclpy.duration import Duration
        from rclpy.time import Time

        tf2 = self._tf2_ros
        try:
            transform = self.buffer.lookup_transform(target, source, Time(nanoseconds=stamp_ns_),
                                                     timeout=Duration(seconds=timeout_s))
        except tf2.LookupException as err:
            raise FrameUnknownError(f"no transform {target} ← {source}: {err}") from None
        except tf2.ConnectivityException as err:
            raise ConnectivityError(f"no transform {target} ← {source}: {err}") from None
        except tf2.ExtrapolationException as err:
            raise ExtrapolationError(f"no transform {target} ← {source} at {stamp_ns_ / 1e9:.3f} s: {err}",
                                     float("nan")) from None
        except tf2.TransformException as err:
            raise TransformError(f"no transform {target} ← {source}: {err}") from None
        return conversions.transform_to_matrix(transform.transform)

    def close(self) -> None:
        self._listener.unregister()


def make_tf_lookup(node, cache_s: float = 10.0) -> TfLookup | Tf2RosLookup:
    """tf2_ros where it imports (a ROS install), else the package's buffer over /tf + /tf_static."""
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        return TfLookup(node, cache_s)
    return Tf2RosLookup(node, cache_s)
