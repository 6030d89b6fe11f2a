"""``molmomotion record``'s ROS side: a node that finds the wanted topics in the graph and subscribes to them raw.

Any graph is recorded as it runs (one started by ``molmomotion launch`` or ``ros2 launch``): every
``discovery_interval_s`` the node lists the graph's topics and subscribes to each wanted one that has a publisher,
so topics that appear later are recorded from then on. A subscription takes the serialized CDR bytes (``raw``;
nothing is deserialised) with rosbag2's QoS rule (reliable / transient-local only when every publisher offers it,
so that no publisher is left unheard, and the latched messages sent before the recorder started arrive), and hands
them to the bag's :class:`~molmomotion_ros.bags.QueuedWriter`: callbacks stay cheap, the writing happens on the
writer's thread. A topic whose type has no installed definition (or no Python message module) is skipped with a
warning; the rest of the recording goes on.

The bag itself (schemas, channels, splits, metadata.yaml) is :mod:`molmomotion_ros.bags`, without rclpy.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from molmomotion_ros.bags import (
    DefinitionNotFoundError,
    DefinitionSource,
    QosProfile,
    QueuedWriter,
    SubscriptionQos,
    TopicMetadata,
    subscription_qos,
)
from molmomotion_ros.bags.qos import incompatible_offer

NODE_NAME = "molmomotion_recorder"
# Messages a subscription holds before the callbacks take them: bursts (a latched history, a camera after a
# stall) must fit; the callbacks only queue bytes, so it rarely holds more than a few.
SUBSCRIPTION_DEPTH = 1000
DISCOVERY_INTERVAL_S = 0.5
DRAIN_QUIET_S = 0.25  # after a stop, take what the subscriptions still hold until this long without a message
DRAIN_MAX_S = 3.0


def hidden(name: str) -> bool:
    """A hidden topic (a name part starting with '_'), left out of ``--all`` as ros2 bag leaves it out."""
    return any(part.startswith("_") for part in name.split("/"))


@dataclass(frozen=True)
class TopicSelection:
    """The topics to record: these absolute names, and with ``all`` every other non-hidden topic."""

    names: frozenset[str] = frozenset()
    all: bool = False

    def wants(self, name: str) -> bool:
        return name in self.names or (self.all and not hidden(name))


@dataclass
class Subscribed:
    type_name: str
    qos: SubscriptionQos
    subscription: object


@dataclass
class RecordOutcome:
    """What the recording subscribed to, what it skipped and why, and how long it ran (wall clock)."""

    subscribed: dict[str, str] = field(default_factory=dict)  # topic → type
    skipped: dict[str, str] = field(default_factory=dict)  # topic → reason
    seconds: float = 0.0


def message_class(type_name: str):
    """The Python message class of ``pkg/msg/Type`` (rclpy needs it for the type support, also for raw
    subscriptions), or the reason there is none."""
    package, _, name = type_name.rpartition("/")
    module_name = package.replace("/", ".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as err:
        return f"no Python message module for {type_name} ({type(err).__name__}: {err})"


def offered_profile(qos) -> QosProfile:
    """An rclpy QoSProfile from the graph (a publisher's offer) in rosbag2's terms."""
    return QosProfile.from_rmw(int(qos.history), qos.depth, int(qos.reliability), int(qos.durability),
                               qos.deadline.nanoseconds, qos.lifespan.nanoseconds, int(qos.liveliness),
                               qos.liveliness_lease_duration.nanoseconds, qos.avoid_ros_namespace_conventions)


def common_type_hash(endpoints) -> str:
    """The publishers' type description hash (RIHS01_...) when they agree on one, else "" (as rosbag2 records)."""
    hashes = {str(e.topic_type_hash) for e in endpoints if e.topic_type_hash.version == 1}
    return hashes.pop() if len(hashes) == 1 else ""


class RecorderNode(Node):
    """Discovers and subscribes; each message goes to ``writer`` with its receive and source timestamps."""

    def __init__(self, writer: QueuedWriter, selection: TopicSelection, definitions: DefinitionSource | None = None,
                 discovery_interval_s: float = DISCOVERY_INTERVAL_S, report: Callable[[str], None] = print,
                 warn: Callable[[str], None] = print, context: Context | None = None):
        # No rosout and no parameter services: a recorder of the graph should add as little to it as it can.
        super().__init__(NODE_NAME, context=context, enable_rosout=False, start_parameter_services=False)
        self.writer = writer
        self.selection = selection
        self.definitions = definitions if definitions is not None else DefinitionSource()
        self.report, self.warn = report, warn
        self.subscribed: dict[str, Subscribed] = {}
        self.skipped: dict[str, str] = {}
        self._incompatible_warned: set[str] = set()
        self._stopped_ns = 2**63 - 1  # the wall time of the stop (ns), once drain() runs
        self.last_backlog_s = time.monotonic()
        self._timer = self.create_timer(discovery_interval_s, self.discover)
        self.discover()

    def stop_discovery(self) -> None:
        self.destroy_timer(self._timer)

    def discover(self) -> None:
        for name, types in self.get_topic_names_and_types():
            if name in self.skipped or not self.selection.wants(name):
                continue
            if name in self.subscribed:
                self._check_new_publishers(name)
            else:
                self._subscribe(name, types)

    def _skip(self, name: str, reason: str) -> None:
        self.skipped[name] = reason
        self.warn(f"not recording {name}: {reason}")

    def _subscribe(self, name: str, types: list[str]) -> None:
        if len(types) != 1:
            self._skip(name, f"it has {len(types)} types ({', '.join(types)}); a bag topic has one")
            return
        publishers = self.get_publishers_info_by_topic(name)
        if not publishers:
            return  # only subscribers so far: nothing to hear, nor a QoS to match; tried again next time
        type_name = types[0]
        msg_class = message_class(type_name)
        if isinstance(msg_class, str):
            self._skip(name, msg_class)
            return
        try:
            definition = self.definitions.get(type_name)
        except DefinitionNotFoundError as err:
            self._skip(name, str(err))
            return
        offers = [offered_profile(p.qos_profile) for p in publishers]
        request = subscription_qos(offers)
        if request.mixed:
            self.warn(f"{name}: only some publishers offer {' and '.join(request.mixed)}; recording with the weaker "
                      "policy so that every publisher is heard")
        self.writer.add_topic(TopicMetadata(name, type_name, offers, common_type_hash(publishers)), definition)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=SUBSCRIPTION_DEPTH,
                         reliability=ReliabilityPolicy.RELIABLE if request.reliable else ReliabilityPolicy.BEST_EFFORT,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL if request.transient_local
                         else DurabilityPolicy.VOLATILE)
        try:
            subscription = self.create_subscription(msg_class, name, partial(self._on_message, name), qos, raw=True)
        except Exception as err:  # noqa: BLE001 (rclpy raises several kinds; the rest of the recording goes on)
            self._skip(name, f"cannot subscribe: {type(err).__name__}: {err}")
            return
        self.subscribed[name] = Subscribed(type_name, request, subscription)
        self.report(f"  {name}: {type_name} ({'reliable' if request.reliable else 'best_effort'}, "
                    f"{'transient_local' if request.transient_local else 'volatile'})")

    def _check_new_publishers(self, name: str) -> None:
        """Warn once when a publisher appears that the existing subscription cannot hear (rosbag2 does the same)."""
        if name in self._incompatible_warned:
            return
        for endpoint in self.get_publishers_info_by_topic(name):
            problem = incompatible_offer(self.subscribed[name].qos, offered_profile(endpoint.qos_profile))
            if problem:
                self._incompatible_warned.add(name)
                self.warn(f"{name}: a new publisher ({endpoint.node_namespace.rstrip('/')}/{endpoint.node_name}) will "
                          f"not be recorded: {problem}")
                return

    def _on_message(self, topic: str, data: bytes, info: dict) -> None:
        received = info.get("received_timestamp") or time.time_ns()
        self.writer.write(topic, data, received, info.get("source_timestamp") or received)
        if received <= self._stopped_ns:
            self.last_backlog_s = time.monotonic()

    def drain(self, executor: SingleThreadedExecutor) -> None:
        """After a stop, take what the subscriptions already hold (received before the stop, not yet taken by a
        callback): until no such message came for DRAIN_QUIET_S. Messages that keep arriving (a camera) do not
        prolong it; the few taken meanwhile are recorded too."""
        self.stop_discovery()
        self._stopped_ns = time.time_ns()
        deadline = time.monotonic() + DRAIN_MAX_S
        self.last_backlog_s = time.monotonic()
        while time.monotonic() < min(deadline, self.last_backlog_s + DRAIN_QUIET_S):
            executor.spin_once(timeout_sec=0.02)


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event, again: Callable[[], None]):
    """SIGINT and SIGTERM (what ``ros2 launch`` sends) set ``stop``; a second one calls ``again`` (stop faster). No
    KeyboardInterrupt: the bag is finished either way. Main thread only; the previous handlers come back after."""
    def on_signal(signum, frame) -> None:
        if stop.is_set():
            again()
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def record(writer: QueuedWriter, selection: TopicSelection, stop: threading.Event,
           definitions: DefinitionSource | None = None, *, discovery_interval_s: float = DISCOVERY_INTERVAL_S,
           report: Callable[[str], None] = print, warn: Callable[[str], None] = print,
           on_progress: Callable[[float], None] | None = None) -> RecordOutcome:
    """Record until ``stop`` is set (:func:`stop_on_signals`), then take what the subscriptions still hold and leave
    the graph; the caller closes ``writer``. ``on_progress(seconds)`` is called about once a second."""
    context = Context()
    node = executor = None
    started = time.monotonic()
    try:
        # Its own context, without rclpy's signal handlers: a signal must stop the loop, not shut ROS down under it.
        rclpy.init(args=[], context=context, signal_handler_options=SignalHandlerOptions.NO)
        node = RecorderNode(writer, selection, definitions, discovery_interval_s, report, warn, context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        next_progress = started + 1.0
        while not stop.is_set() and writer.error is None:  # a failed write (full disk) ends the recording
            executor.spin_once(timeout_sec=0.1)
            if on_progress is not None and time.monotonic() >= next_progress:
                on_progress(time.monotonic() - started)
                next_progress += 1.0
        seconds = time.monotonic() - started
        node.drain(executor)
        return RecordOutcome({t: s.type_name for t, s in node.subscribed.items()}, dict(node.skipped), seconds)
    finally:
        if executor is not None:
            if node is not None:
                executor.remove_node(node)
            executor.shutdown(timeout_sec=1.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=context)
