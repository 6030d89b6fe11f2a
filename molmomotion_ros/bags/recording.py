"""A bag writer on its own thread, fed by a queue, so that subscription callbacks only hand bytes over.

Compressing and writing (tens of MB/s for camera topics) would otherwise run inside the executor and delay every
callback behind it. The queue is bounded by bytes, not messages: when the writer falls that far behind (a slow
disk), further messages are dropped and counted per topic, never silently; so are messages that arrive after the
recording stopped or after a write failed. :meth:`QueuedWriter.close` writes what is queued (or, abandoned, counts
it as dropped) and finishes the bag. The writer may also be an :class:`~.episode_split.EpisodeSplitWriter` (a bag
per episode), whose ``poll`` is called while no message comes, so that the messages it holds back to order them
are written in time.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass

from .definitions import MessageDefinition
from .episode_split import EpisodeSplitSummary, EpisodeSplitWriter
from .errors import BagError, BagWriteError
from .writer import BagSummary, BagWriter, TopicMetadata

DEFAULT_MAX_PENDING_BYTES = 512 * 1024 * 1024
POLL_S = 0.1  # how often a writer with ``poll`` is polled while no message comes


@dataclass(frozen=True)
class Progress:
    """A snapshot for a progress line."""

    topics: int
    received: int
    written: int
    dropped: int
    pending_bytes: int
    bytes_written: int


class QueuedWriter:
    """Thread-safe front of a :class:`~.writer.BagWriter`: ``add_topic`` and ``write`` from any thread, in order."""

    def __init__(self, writer: BagWriter | EpisodeSplitWriter, max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES):
        self.writer = writer
        self.max_pending_bytes = int(max_pending_bytes)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending_bytes = 0
        self._accepting = True
        self._abandon = threading.Event()
        self.received: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.drop_reasons: dict[str, Counter[str]] = {}
        self.error: BagError | None = None
        self._thread = threading.Thread(target=self._run, name="bag_writer", daemon=True)
        self._thread.start()

    def add_topic(self, topic: TopicMetadata, definition: MessageDefinition) -> None:
        self._queue.put(("topic", topic, definition))

    def write(self, topic: str, data: bytes, log_time_ns: int, publish_time_ns: int | None = None) -> bool:
        """Queue one message; False when it was dropped (counted, with the reason)."""
        size = len(data)
        with self._lock:
            self.received[topic] += 1
            if not self._accepting:
                self._drop(topic, "arrived after the recording stopped")
                return False
            if self.error is not None:
                self._drop(topic, "the bag could not be written")
                return False
            if self._pending_bytes + size > self.max_pending_bytes:
                self._drop(topic, f"the write queue was full ({self.max_pending_bytes / 2**20:.0f} MB)")
                return False
            self._pending_bytes += size
        self._queue.put(("message", topic, data, log_time_ns, publish_time_ns))
        return True

    def progress(self) -> Progress:
        with self._lock:
            received, dropped, pending = sum(self.received.values()), sum(self.dropped.values()), self._pending_bytes
        return Progress(len(self.writer.topics), received, self.writer.message_count, dropped, pending,
                        self.writer.bytes_written)

    def close(self, abandon: bool = False) -> BagSummary | EpisodeSplitSummary:
        """Stop accepting messages, write the queued ones (``abandon``: drop and count them instead), finish the bag.
        A failed write leaves the bag finished as far as it goes and its error in :attr:`error`."""
        with self._lock:
            self._accepting = False
        if abandon:
            self._abandon.set()
        self._queue.put(None)
        self._thread.join()
        try:
            return self.writer.close()
        except BagError as err:
            self.error = self.error or err
            return self.writer.summary

    def abandon(self) -> None:
        """Drop (and count) what is still queued instead of writing it: a second Ctrl-C while closing."""
        self._abandon.set()

    # --- the writer thread ----------------------------------------------------------------------------------------
    def _drop(self, topic: str, reason: str) -> None:  # with self._lock held
        self.dropped[topic] += 1
        self.drop_reasons.setdefault(topic, Counter())[reason] += 1

    def _run(self) -> None:
        poll = getattr(self.writer, "poll", None)
        while True:
            try:
                item = self._queue.get(timeout=POLL_S if poll is not None else None)
            except queue.Empty:
                if self.error is None:
                    try:
                        poll(time.time_ns())
                    except Exception as err:  # noqa: BLE001 (the thread must go on draining the queue)
                        with self._lock:
                            self.error = _as_bag_error(err)
                continue
            if item is None:
                return
            if item[0] == "topic":
                _, topic, definition = item
                if self.error is None:
                    try:
                        self.writer.add_topic(topic, definition)
                    except Exception as err:  # noqa: BLE001 (the thread must go on draining the queue)
                        self.error = _as_bag_error(err)
                continue
            _, topic, data, log_time_ns, publish_time_ns = item
            with self._lock:
                self._pending_bytes -= len(data)
                if self.error is not None:
                    self._drop(topic, "the bag could not be written")
                    continue
                if self._abandon.is_set():
                    self._drop(topic, "still queued when the recording was interrupted again")
                    continue
            try:
                self.writer.write(topic, data, log_time_ns, publish_time_ns)
            except Exception as err:  # noqa: BLE001 (the thread must go on draining the queue)
                with self._lock:
                    self.error = _as_bag_error(err)
                    self._drop(topic, "the bag could not be written")


def _as_bag_error(err: Exception) -> BagError:
    return err if isinstance(err, BagError) else BagWriteError(f"the bag writer failed: {type(err).__name__}: {err}")
