"""What ``molmomotion play`` decides without ROS: which topics play, under which names and QoS, and when each message
and each ``/clock`` tick goes out. The ROS side (nodes/player.py) only creates the publishers and publishes.

Timing follows ``ros2 bag play``: a pass starts at the playback's start time (the bag's first receive time, plus
``--start-offset``); a message goes out once the wall time since the pass began, times the rate, reaches its receive
time (log time) since that start. A message already late goes out at once, so the order is always the bag's.
``/clock``, when asked, ticks at HZ per wall-clock second with the bag time the playback has reached (monotonic
within a pass; during ``--delay`` it holds the start time, so nodes with ``use_sim_time`` have a time before the first
message). ``--delay`` waits before every pass, and a ``--loop`` pass starts from the start time again: the clock jumps
back, as ros2 bag play's does, and the recorded header stamps match it again.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .errors import BagReadError
from .qos import QosProfile, playback_qos
from .reader import BagMessage, BagReader

MAX_WAIT_S = 0.1  # the longest single wait: a stop is seen within this even if a signal cannot wake the wait
DEFAULT_CLOCK_HZ = 40.0  # ros2 bag play --clock without a value


@dataclass(frozen=True)
class PlaybackOptions:
    rate: float = 1.0
    loop: bool = False
    clock_hz: float | None = None  # None: no /clock
    start_offset_s: float = 0.0
    delay_s: float = 0.0

    def __post_init__(self):
        if not self.rate > 0:
            raise ValueError("rate must be positive")
        if self.clock_hz is not None and not self.clock_hz > 0:
            raise ValueError("clock_hz must be positive")
        if self.start_offset_s < 0 or self.delay_s < 0:
            raise ValueError("start_offset_s and delay_s must not be negative")


@dataclass(frozen=True)
class PlannedTopic:
    """A topic to play: its name in the bag, the name it is published on (``--remap``), and the offered QoS."""

    name: str
    published_as: str
    type: str
    qos: QosProfile
    qos_warning: str | None
    message_count: int
    type_hash: str = ""  # RIHS01_... as recorded ("" when the bag has none)


@dataclass
class Plan:
    topics: list[PlannedTopic]
    skipped: dict[str, str] = field(default_factory=dict)  # bag topic → why it is not played


def plan_topics(reader: BagReader, topics: Sequence[str] | None = None,
                remaps: Mapping[str, str] | None = None) -> Plan:
    """The topics to play (``topics``, or all), each published as ``remaps`` says. BagReadError naming the bag when a
    named topic or a remapped one is not in it, or two topics would share a name with different types. Topics that
    cannot be played at all (not CDR, no type) are skipped with the reason; whether the type is installed is the
    ROS side's to find out."""
    remaps = dict(remaps or {})
    where = f"cannot play {str(reader.path)!r}"
    known = ", ".join(sorted(reader.topics)) or "none"
    for asked, what in [(name, "has no topic") for name in (topics or [])] + \
                       [(name, "has no topic to remap called") for name in remaps]:
        if asked not in reader.topics:
            raise BagReadError(f"{where}: the bag {what} {asked} (its topics: {known})")
    chosen = list(dict.fromkeys(topics)) if topics else sorted(reader.topics)
    plan = Plan([])
    published: dict[str, str] = {}
    for name in chosen:
        topic = reader.topics[name]
        if topic.serialization_format != "cdr":
            plan.skipped[name] = f"its messages are {topic.serialization_format!r}, not CDR"
            continue
        if not topic.type:
            plan.skipped[name] = "the bag names no message type for it"
            continue
        target = remaps.get(name, name)
        if published.setdefault(target, topic.type) != topic.type:
            raise BagReadError(f"{where}: {target} would carry two types, {published[target]} and {topic.type} "
                               f"({name} remapped onto it)")
        qos, warning = playback_qos(topic.offered_qos_profiles)
        plan.topics.append(PlannedTopic(name, target, topic.type, qos, warning, topic.message_count,
                                        topic.type_description_hash))
    return plan


@dataclass
class PlaybackStats:
    published: Counter[str] = field(default_factory=Counter)  # bag topic → messages published (all passes)
    passes: int = 0  # passes begun
    clock_ticks: int = 0
    wall_s: float = 0.0
    bag_ns: int = 0  # the furthest receive time reached, from the start
    stopped: bool = False  # by a signal, before the end


class Playback:
    """One playback: ``run()`` publishes through ``publish(message)`` and ``publish_clock(ns)`` until the bag (every
    pass, with ``loop``: until ``stop``) ends. ``messages(start_ns)`` gives one pass's messages in log-time order.
    ``now`` and ``wait(seconds) -> stopped`` are the clock (injectable for tests; by default the monotonic clock and
    ``stop.wait``)."""

    def __init__(self, messages: Callable[[int], Iterable[BagMessage]], start_ns: int, options: PlaybackOptions,
                 publish: Callable[[BagMessage], None], publish_clock: Callable[[int], None] | None = None,
                 stop: threading.Event | None = None, now: Callable[[], float] = time.monotonic,
                 wait: Callable[[float], bool] | None = None):
        self.messages = messages
        self.options = options
        self.start_ns = int(start_ns) + int(round(options.start_offset_s * 1e9))
        self.publish = publish
        self.publish_clock = publish_clock
        self.stop = stop if stop is not None else threading.Event()
        self._now = now
        self._wait = wait if wait is not None else self.stop.wait
        self._period = 1.0 / options.clock_hz if options.clock_hz and publish_clock is not None else None
        self._next_tick = 0.0
        self.stats = PlaybackStats()

    def run(self) -> PlaybackStats:
        started = self._now()
        self._next_tick = started
        try:
            while not self.stop.is_set():
                if self.options.delay_s and not self._wait_until(self._now() + self.options.delay_s,
                                                                 lambda _: self.start_ns):
                    break
                self.stats.passes += 1
                if not self._pass() or not self.options.loop:
                    break
        finally:
            self.stats.stopped = self.stop.is_set()
            self.stats.wall_s = self._now() - started
        return self.stats

    def _pass(self) -> bool:
        """One pass through the bag; False when stopped."""
        begun = self._now()
        self._next_tick = begun  # a pass starts with a tick at its start time: the jump back comes before any message
        rate = self.options.rate

        def bag_time(wall: float) -> int:
            return self.start_ns + int((wall - begun) * rate * 1e9)

        for message in self.messages(self.start_ns):
            due = begun + (message.log_time - self.start_ns) / 1e9 / rate
            if not self._wait_until(due, bag_time):
                return False
            self.publish(message)
            self.stats.published[message.topic] += 1
            self.stats.bag_ns = max(self.stats.bag_ns, message.log_time - self.start_ns)
        return True

    def _wait_until(self, deadline: float, bag_time: Callable[[float], int]) -> bool:
        """Wait for ``deadline`` (wall), ticking /clock meanwhile; False when stopped."""
        while True:
            now = self._now()
            if self._period is not None and now >= self._next_tick:
                self.publish_clock(bag_time(now))
                self.stats.clock_ticks += 1
                self._next_tick += self._period
                if self._next_tick <= now:  # fell behind (a slow publish): no burst of ticks to catch up
                    self._next_tick = now + self._period
            if self.stop.is_set():
                return False
            if now >= deadline:
                return True
            timeout = deadline - now
            if self._period is not None:
                timeout = min(timeout, self._next_tick - now)
            if self._wait(min(timeout, MAX_WAIT_S)):
                return False
