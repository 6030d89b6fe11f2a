"""``molmomotion play``'s ROS side: one publisher per topic of the bag and one for ``/clock``, nothing else.

Each topic's publisher has the type named in the bag (its Python message module provides the type support; the
messages themselves are published raw, the stored CDR bytes, never deserialised) and the QoS rosbag2's player would
offer (:func:`molmomotion_ros.bags.playback_qos`: the recorded profile, so a transient-local topic is latched again
for late subscribers). A topic whose type is not installed here is skipped with a warning. ``/clock``
(rosgraph_msgs/Clock) is offered as rclcpp's ClockQoS (keep last 1, best effort), what every node's time source
subscribes with. Reading, topic plan and timing are :mod:`molmomotion_ros.bags` (no rclpy).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import rclpy
from rclpy.context import Context
from rclpy.duration import Duration, Infinite
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, LivelinessPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rosgraph_msgs.msg import Clock

from molmomotion_ros.bags import BagReader, BagReadError, Plan, PlannedTopic, Playback, PlaybackOptions, PlaybackStats
from molmomotion_ros.bags.qos import INFINITE_NS, QosProfile

from .recorder import message_class

NODE_NAME = "molmomotion_player"
ACK_TIMEOUT_S = 2.0  # at the end, how long reliable subscribers get to acknowledge the last messages
CLOCK_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT,
                       durability=DurabilityPolicy.VOLATILE)
_HISTORY = {"keep_last": HistoryPolicy.KEEP_LAST, "keep_all": HistoryPolicy.KEEP_ALL}
_RELIABILITY = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT,
                "best_available": ReliabilityPolicy.BEST_AVAILABLE}
_DURABILITY = {"transient_local": DurabilityPolicy.TRANSIENT_LOCAL, "volatile": DurabilityPolicy.VOLATILE,
               "best_available": DurabilityPolicy.BEST_AVAILABLE}
_LIVELINESS = {"automatic": LivelinessPolicy.AUTOMATIC, "manual_by_topic": LivelinessPolicy.MANUAL_BY_TOPIC,
               "best_available": LivelinessPolicy.BEST_AVAILABLE}


@dataclass
class PlayOutcome:
    played: list[PlannedTopic] = field(default_factory=list)  # the topics that had a publisher
    skipped: dict[str, str] = field(default_factory=dict)  # bag topic → why it was not played
    stats: PlaybackStats = field(default_factory=PlaybackStats)


def _duration(ns: int) -> Duration:
    return Infinite if ns >= INFINITE_NS else Duration(nanoseconds=ns)


def rclpy_qos(profile: QosProfile) -> QoSProfile:
    """An rclpy QoSProfile for a publisher offering ``profile`` (a policy without an rmw value: the system
    default)."""
    return QoSProfile(history=_HISTORY.get(profile.history, HistoryPolicy.KEEP_LAST), depth=max(profile.depth, 1),
                      reliability=_RELIABILITY.get(profile.reliability, ReliabilityPolicy.SYSTEM_DEFAULT),
                      durability=_DURABILITY.get(profile.durability, DurabilityPolicy.SYSTEM_DEFAULT),
                      deadline=_duration(profile.deadline_ns), lifespan=_duration(profile.lifespan_ns),
                      liveliness=_LIVELINESS.get(profile.liveliness, LivelinessPolicy.SYSTEM_DEFAULT),
                      liveliness_lease_duration=_duration(profile.liveliness_lease_duration_ns),
                      avoid_ros_namespace_conventions=profile.avoid_ros_namespace_conventions)


def describe(profile: QosProfile) -> str:
    return f"{profile.reliability}, {profile.durability}"


def type_mismatch(node: Node, topic: PlannedTopic) -> str | None:
    """Why the installed type may not read the recorded messages: the bag's type hash (RIHS01, recorded from the
    publishers) differs from the installed definition's, which the graph reports for our own publisher. None when
    they agree or either is unknown (bags before Jazzy have none)."""
    if not topic.type_hash.startswith("RIHS01_"):
        return None
    installed = {str(e.topic_type_hash) for e in node.get_publishers_info_by_topic(topic.published_as)
                 if e.node_name == node.get_name() and e.topic_type_hash.version == 1}
    if not installed or topic.type_hash in installed:
        return None
    return (f"the bag's {topic.type} differs from the installed one (type hash {topic.type_hash[:19]}... recorded, "
            f"{sorted(installed)[0][:19]}... here); its messages are played as recorded, subscribers may misread them")


def play(reader: BagReader, plan: Plan, options: PlaybackOptions, stop: threading.Event,
         report: Callable[[str], None] = print, warn: Callable[[str], None] = print) -> PlayOutcome:
    """Publish the bag's planned topics until it ends (with ``loop``: until ``stop``) or ``stop`` is set.
    BagReadError when no topic of the plan has an installed type."""
    context = Context()
    node = None
    outcome = PlayOutcome(skipped=dict(plan.skipped))
    for name, reason in plan.skipped.items():
        warn(f"not playing {name}: {reason}")
    try:
        # Its own context, without rclpy's signal handlers: a signal stops the playback, not ROS under it.
        rclpy.init(args=[], context=context, signal_handler_options=SignalHandlerOptions.NO)
        node = Node(NODE_NAME, context=context, enable_rosout=False, start_parameter_services=False)
        publishers = {}
        for topic in plan.topics:
            msg_class = message_class(topic.type)
            if isinstance(msg_class, str):
                outcome.skipped[topic.name] = msg_class
                warn(f"not playing {topic.name}: {msg_class}")
                continue
            if topic.qos_warning:
                warn(f"{topic.name}: {topic.qos_warning}")
            try:
                publishers[topic.name] = node.create_publisher(msg_class, topic.published_as, rclpy_qos(topic.qos))
            except Exception as err:  # noqa: BLE001 (rclpy raises several kinds; the other topics still play)
                outcome.skipped[topic.name] = f"cannot publish it: {type(err).__name__}: {err}"
                warn(f"not playing {topic.name}: {outcome.skipped[topic.name]}")
                continue
            mismatch = type_mismatch(node, topic)
            if mismatch:
                warn(f"{topic.name}: {mismatch}")
            outcome.played.append(topic)
            renamed = f" as {topic.published_as}" if topic.published_as != topic.name else ""
            report(f"  {topic.name}{renamed}: {topic.type} ({describe(topic.qos)})")
        if not publishers:
            reasons = "; ".join(f"{name}: {why}" for name, why in outcome.skipped.items()) or "it has no topic"
            raise BagReadError(f"cannot play {str(reader.path)!r}: none of its topics can be played ({reasons})")
        clock = node.create_publisher(Clock, "/clock", CLOCK_QOS) if options.clock_hz else None

        def publish_clock(ns: int) -> None:
            message = Clock()
            message.clock.sec, message.clock.nanosec = divmod(ns, 1_000_000_000)
            clock.publish(message)

        playback = Playback(lambda start_ns: reader.messages(publishers.keys(), start_ns), reader.start_ns, options,
                            publish=lambda m: publishers[m.topic].publish(m.data),
                            publish_clock=publish_clock if clock is not None else None, stop=stop)
        outcome.stats = playback.run()
        if not stop.is_set():  # reliable subscribers take the last messages before the publishers go
            deadline = time.monotonic() + ACK_TIMEOUT_S
            for publisher in publishers.values():
                left = deadline - time.monotonic()
                if left <= 0 or stop.is_set():
                    break
                publisher.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9)))
        return outcome
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=context)
