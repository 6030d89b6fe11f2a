"""One bag per simulated episode: ``DIR/<suite>-<family>-<seed>/``, each a complete rosbag2 bag on its own.

``molmomotion record DIR --split-by-episode`` (and ``molmomotion launch sim_eval --record DIR``) write through
:class:`EpisodeSplitWriter` instead of one :class:`~.writer.BagWriter`. Every ``sim/episode`` message (sim_node's
latched JSON ``{"suite", "family", "seed", "instruction"}``, published at each reset) closes the open bag (its
metadata.yaml finished) and opens the episode's: the folder is named after the episode (characters other than
letters, digits, ``.``, ``_`` and ``-`` become ``_``; a suite given as a path by its file's stem; an episode seen
again gets ``_2``, ``_3``, ...). Messages before the first ``sim/episode`` go to ``DIR/preamble`` (made only when
there are such messages: the graph's start, an empty table), so nothing received is dropped.

**Where the boundary lies.** The messages of one episode reach the recorder on many subscriptions, and one
subscription's message is not ordered with another's by its arrival: the camera frame published just before a reset
may be taken after the reset's ``sim/episode``, and the ground truth published just after it before it. So the
messages are ordered by their *publish* time (the DDS source timestamp) before they are written: each waits
:data:`REORDER_WINDOW_S` after its arrival, and they leave in publish order. A message published before the
``sim/episode`` is in the earlier bag, one published after it in the episode's bag. That is exact for publishers
that share sim_node's clock (every node of a sim graph on one machine) and for messages that arrive within the
window of each other; a message that arrives later than that (a stalled callback, a transient-local message
delivered to the recorder when it subscribes) is written where the recording then is (arrival order). sim_node
publishes ``sim/episode`` first at a reset, then the episode's ground truth, camera pose and instruction, so these
open the episode's bag. A message's log time in the bag is its receive time, raised where needed (by at most
about the window) to that of the message written before it: log times follow the order written, so readers and
players that go by log time see each bag open with its ``sim/episode``.

**Each bag stands alone.** Every topic recorded so far is registered in each bag (rosbag2 lists a topic without
messages as well), and the latest messages of every transient-local (latched) topic (``/tf_static``,
``camera/pose``, ``instruction``, ``sim/ground_truth``...: as many per topic as its publishers' history depths add
up to) are written again right after the ``sim/episode`` that opens a bag, with the ``sim/episode``'s receive time
as their log time and their own publish time: a player or reader of that bag alone has them, as a late subscriber
would have. A latched topic with a message of its own already waiting (published right after the ``sim/episode``,
as the episode's ground truth and instruction are) is not repeated: the previous episode's value would precede it.
"""

from __future__ import annotations

import heapq
import itertools
import json
import re
import struct
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

from .definitions import MessageDefinition
from .errors import BagError
from .writer import (
    COMPRESSIONS,
    BagSummary,
    BagWriter,
    FileInfo,
    TopicCount,
    TopicMetadata,
    check_definition,
    prepare_bag_folder,
)

EPISODE_TOPIC = "/sim/episode"
PREAMBLE = "preamble"
# A message waits this long after its arrival for ones published before it: a few ms apart in a quiet graph,
# a few hundred when the recorder's callbacks wait for a busy CPU.
REORDER_WINDOW_S = 1.0
MAX_REPEATED_PER_TOPIC = 100  # latched messages kept per topic to start the next bag with
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def cdr_string(data: bytes) -> str:
    """The ``data`` of a serialized ``std_msgs/String`` (CDR, either byte order); ValueError when it is not one."""
    if len(data) < 8 or data[0] != 0 or data[1] not in (0, 1):
        raise ValueError("not a CDR-encapsulated message")
    (length,) = struct.unpack_from("<I" if data[1] == 1 else ">I", data, 4)
    if length < 1 or 8 + length > len(data) or data[8 + length - 1] != 0:
        raise ValueError("not a serialized std_msgs/String")
    return data[8:8 + length - 1].decode("utf-8")


def _part(value) -> str:
    return _UNSAFE.sub("_", str(value)).strip("._") or "unknown"


def episode_bag_name(episode: dict | None) -> str:
    """``<suite>-<family>-<seed>`` of an episode's JSON, safe as a folder name ("episode" when it has none)."""
    if not isinstance(episode, dict) or not any(k in episode for k in ("suite", "family", "seed")):
        return "episode"
    suite = str(episode.get("suite", "unknown"))
    if "/" in suite or suite.endswith((".yaml", ".yml")):  # a suite given as a path: its file's stem
        suite = Path(suite).stem
    return "-".join(_part(v) for v in (suite, episode.get("family", "unknown"), episode.get("seed", "unknown")))


def latched_depth(topic: TopicMetadata) -> int:
    """How many latest messages of ``topic`` a late subscriber gets (0: not latched): the history depths of its
    publishers added up when every publisher is transient-local (the recorder then subscribes transient-local)."""
    offers = topic.offered_qos_profiles
    if not offers or any(o.durability != "transient_local" for o in offers):
        return 0
    return min(MAX_REPEATED_PER_TOPIC, sum(max(o.depth, 1) for o in offers))


@dataclass(frozen=True)
class EpisodeBag:
    """One bag of a split recording: its folder name, the episode that opened it (None: the preamble), its
    summary, and how many latched messages were written again at its start."""

    name: str
    episode: dict | None
    summary: BagSummary
    repeated: int


@dataclass(frozen=True)
class EpisodeSplitSummary:
    """The bags of a split recording, in recording order, and their totals (the attributes of a
    :class:`~.writer.BagSummary` that a summary table reads)."""

    folder: Path
    bags: tuple[EpisodeBag, ...]

    @property
    def topics(self) -> tuple[TopicCount, ...]:
        totals: dict[str, TopicCount] = {}
        for bag in self.bags:
            for count in bag.summary.topics:
                total = totals.setdefault(count.metadata.name, TopicCount(count.metadata))
                total.message_count += count.message_count
                total.payload_bytes += count.payload_bytes
        return tuple(totals.values())

    @property
    def message_count(self) -> int:
        return sum(b.summary.message_count for b in self.bags)

    @property
    def repeated(self) -> int:
        return sum(b.repeated for b in self.bags)

    @property
    def files(self) -> tuple[FileInfo, ...]:
        return tuple(f for b in self.bags for f in b.summary.files)

    @property
    def size_bytes(self) -> int:
        return sum(b.summary.size_bytes for b in self.bags)


class EpisodeSplitWriter:
    """A bag per episode in ``folder`` (new or empty), written like one :class:`~.writer.BagWriter`: ``add_topic``,
    ``write`` and ``close`` from one thread (:class:`~.recording.QueuedWriter`'s, which also calls :meth:`poll` while
    no message comes). ``bag_options`` go to each bag's BagWriter (compression, split size or duration...)."""

    def __init__(self, folder: Path, episode_topic: str = EPISODE_TOPIC, window_s: float = REORDER_WINDOW_S,
                 **bag_options):
        if bag_options.get("compression", "zstd") not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}, not "
                             f"{bag_options['compression']!r}")
        if window_s < 0:
            raise ValueError("window_s must not be negative")
        self.folder = prepare_bag_folder(folder)
        self.episode_topic = episode_topic
        self.window_ns = int(round(window_s * 1e9))
        self._bag_options = bag_options
        self._topics: dict[str, tuple[TopicMetadata, MessageDefinition]] = {}
        self._latched: dict[str, deque] = {}  # topic → its latest (data, publish ns), to start the next bag with
        self._waiting: list = []  # heap of (publish ns, arrival order, topic, data, log ns)
        self._waiting_topics: Counter[str] = Counter()
        self._order = itertools.count()
        self._latest_log_ns = 0  # the latest receive time seen
        self._last_log_ns = 0  # the log time of the message written last
        self._current: BagWriter | None = None
        self._current_info: tuple[str, dict | None, int] = ("", None, 0)  # name, episode, repeated
        self._bags: list[EpisodeBag] = []
        self._names: set[str] = set()
        self._closed_messages = self._closed_bytes = 0
        self._summary: EpisodeSplitSummary | None = None

    # --- what QueuedWriter reads -----------------------------------------------------------------------------------
    @property
    def topics(self) -> dict[str, tuple[TopicMetadata, MessageDefinition]]:
        return self._topics

    @property
    def message_count(self) -> int:
        """Messages written so far (the repeated ones included), not those still waiting to be ordered."""
        current = self._current
        return self._closed_messages + (current.message_count if current is not None else 0)

    @property
    def bytes_written(self) -> int:
        current = self._current
        return self._closed_bytes + (current.bytes_written if current is not None else 0)

    @property
    def bags(self) -> list[EpisodeBag]:
        """The bags closed so far."""
        return list(self._bags)

    @property
    def summary(self) -> EpisodeSplitSummary | None:
        return self._summary

    # --- topics and messages ---------------------------------------------------------------------------------------
    def add_topic(self, topic: TopicMetadata, definition: MessageDefinition) -> bool:
        """Register a topic, in the open bag and in every later one; False if already there."""
        self._check_open()
        if topic.name in self._topics:
            return False
        check_definition(topic, definition)
        self._topics[topic.name] = (topic, definition)
        depth = latched_depth(topic)
        if depth:
            self._latched[topic.name] = deque(maxlen=depth)
        if self._current is not None:
            self._current.add_topic(topic, definition)
        return True

    def write(self, topic: str, data: bytes, log_time_ns: int, publish_time_ns: int | None = None) -> None:
        """Take one message received at ``log_time_ns``; it is written once no message published before it can
        still be expected (:data:`REORDER_WINDOW_S` after its arrival)."""
        self._check_open()
        if topic not in self._topics:
            raise BagError(f"topic {topic} was not added before its first message")
        log_time_ns = int(log_time_ns)
        publish = int(publish_time_ns) if publish_time_ns else log_time_ns
        heapq.heappush(self._waiting, (publish, next(self._order), topic, data, log_time_ns))
        self._waiting_topics[topic] += 1
        self._latest_log_ns = max(self._latest_log_ns, log_time_ns)
        self._write_until(self._latest_log_ns - self.window_ns)

    def poll(self, now_ns: int) -> None:
        """Write what has waited long enough by the wall clock ``now_ns`` (no message came to tell the time)."""
        if self._summary is None:
            self._write_until(max(self._latest_log_ns, int(now_ns)) - self.window_ns)

    def close(self) -> EpisodeSplitSummary:
        """Write every waiting message, finish the open bag; the recording's summary. Idempotent. A write error is
        raised after the bags were finished as far as they go (the summary is then in :attr:`summary`)."""
        if self._summary is not None:
            return self._summary
        error: BagError | None = None
        try:
            self._write_until(None)
        except BagError as err:
            error = err
        try:
            self._close_current()
        except BagError as err:
            error = error or err
        self._summary = EpisodeSplitSummary(self.folder, tuple(self._bags))
        if error is not None:
            raise error
        return self._summary

    # --- ordering and splitting ------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._summary is not None:
            raise BagError(f"the recording in {self.folder} is closed")

    def _write_until(self, log_ns: int | None) -> None:
        """Write the waiting messages in publish order while the earliest published arrived by ``log_ns`` (None:
        all of them)."""
        while self._waiting and (log_ns is None or self._waiting[0][4] <= log_ns):
            publish, _, topic, data, log_time = heapq.heappop(self._waiting)
            self._waiting_topics[topic] -= 1
            # Log times never decrease in the order written, so that a reader in log-time order (any MCAP reader,
            # ros2 bag play) sees it too: a message taken before one published earlier gets that one's log time.
            log_time = self._last_log_ns = max(log_time, self._last_log_ns)
            if topic == self.episode_topic:
                self._start_episode(data, log_time, publish)
                continue
            if self._current is None:
                self._open(PREAMBLE, None)
            self._current.write(topic, data, log_time, publish)
            if topic in self._latched:
                self._latched[topic].append((data, publish))

    def _start_episode(self, data: bytes, log_time: int, publish: int) -> None:
        try:
            episode = json.loads(cdr_string(data))
        except (ValueError, UnicodeDecodeError):
            episode = None
        self._close_current()
        self._open(episode_bag_name(episode), episode if isinstance(episode, dict) else None)
        self._current.write(self.episode_topic, data, log_time, publish)
        repeated = 0
        for topic, latest in self._latched.items():
            if topic == self.episode_topic or self._waiting_topics[topic] > 0:
                continue  # the episode's own message of the topic is waiting: the old one would precede it
            for old, old_publish in latest:
                self._current.write(topic, old, log_time, old_publish)
                repeated += 1
        if self.episode_topic in self._latched:
            self._latched[self.episode_topic].append((data, publish))
        name, episode, _ = self._current_info
        self._current_info = (name, episode, repeated)

    def _open(self, base: str, episode: dict | None) -> None:
        name, n = base, 1
        while name in self._names:
            n += 1
            name = f"{base}_{n}"
        self._names.add(name)
        bag = BagWriter(self.folder / name, **self._bag_options)
        for topic, definition in self._topics.values():
            bag.add_topic(topic, definition)
        self._current, self._current_info = bag, (name, episode, 0)

    def _close_current(self) -> None:
        bag = self._current
        if bag is None:
            return
        self._current = None
        name, episode, repeated = self._current_info
        try:
            bag.close()
        finally:  # a failed close still leaves the bag's summary (finished as far as it went)
            summary = bag.summary
            if summary is not None:
                self._bags.append(EpisodeBag(name, episode, summary, repeated))
                self._closed_messages += summary.message_count
                self._closed_bytes += summary.size_bytes
