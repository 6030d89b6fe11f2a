"""Camera streams by stamp, without ROS: the buffers, the frame matching and the mailbox that the nodes use.

A camera frame arrives in parts on separate topics (colour, aligned depth, camera_info), each stamped by the
driver. :class:`FrameStore` keeps the recent parts by stamp and puts frames together by one rule: a frame
is an entry of the primary part at stamp t plus, of each other part, the entry whose stamp is nearest t,
if it lies within the sync tolerance (else that part is missing). The forecaster's streaming synchroniser
(:class:`StampSynchronizer`), the planner's "the depth frame at the forecast's stamp, else the nearest
complete one" and the policy's "the first complete frame after the instruction" all ask a FrameStore.

Stamps are integer nanoseconds (:func:`stamp_ns`); nothing here imports rclpy or message types (an item is
whatever the caller stores: a message, an image array).
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import count
from typing import Any

NS = 1_000_000_000


def stamp_ns(stamp) -> int:
    """Integer nanoseconds of a stamp with ``sec`` and ``nanosec`` (builtin_interfaces/Time)."""
    return int(stamp.sec) * NS + int(stamp.nanosec)


def seconds_to_ns(seconds: float) -> int:
    return int(round(seconds * NS))


class StampedBuffer:
    """(stamp_ns, item) entries in stamp order (not thread-safe: :class:`FrameStore` locks).

    ``window_ns``: entries more than this older than the newest stamp are dropped; an entry older than that
    on arrival means the clock jumped back (a restarted simulator, a looping bag) and clears the buffer
    first. ``maxlen``: beyond it the entry added earliest is dropped (as a deque would).
    """

    def __init__(self, window_ns: int | None = None, maxlen: int | None = None):
        self.window_ns = window_ns
        self.maxlen = maxlen
        self._stamps: list[int] = []
        self._items: list[Any] = []
        self._order: list[int] = []  # when each entry was added (for maxlen)
        self._counter = count()

    def __len__(self) -> int:
        return len(self._stamps)

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        return iter(list(zip(self._stamps, self._items, strict=True)))

    @property
    def oldest_ns(self) -> int | None:
        return self._stamps[0] if self._stamps else None

    @property
    def newest_ns(self) -> int | None:
        return self._stamps[-1] if self._stamps else None

    def clear(self) -> None:
        self._stamps, self._items, self._order = [], [], []

    def add(self, t_ns: int, item: Any) -> None:
        if self.window_ns is not None and self._stamps and t_ns < self._stamps[-1] - self.window_ns:
            self.clear()  # the clock jumped back
        i = bisect_right(self._stamps, t_ns)
        self._stamps.insert(i, t_ns)
        self._items.insert(i, item)
        self._order.insert(i, next(self._counter))
        self.prune()

    def prune(self) -> None:
        """Apply ``window_ns`` and ``maxlen`` (after either changed)."""
        if self.window_ns is not None and self._stamps:
            self._delete(slice(0, bisect_left(self._stamps, self._stamps[-1] - self.window_ns)))
        while self.maxlen is not None and len(self._stamps) > self.maxlen:
            first = min(range(len(self._order)), key=self._order.__getitem__)
            self._delete(slice(first, first + 1))

    def _delete(self, where: slice) -> None:
        del self._stamps[where], self._items[where], self._order[where]

    def nearest(self, t_ns: int, tolerance_ns: int) -> tuple[int, Any] | None:
        """The entry whose stamp is nearest ``t_ns`` if within ``tolerance_ns`` (the earlier one on a tie)."""
        i = bisect_left(self._stamps, t_ns)
        best = min((j for j in (i - 1, i) if 0 <= j < len(self._stamps)),
                   key=lambda j: abs(self._stamps[j] - t_ns), default=None)
        if best is None or abs(self._stamps[best] - t_ns) > tolerance_ns:
            return None
        return self._stamps[best], self._items[best]

    def near(self, t_ns: int, tolerance_ns: int) -> list[tuple[int, Any]]:
        """Entries within ``tolerance_ns`` of ``t_ns``, nearest first (the earlier first on a tie)."""
        lo, hi = bisect_left(self._stamps, t_ns - tolerance_ns), bisect_right(self._stamps, t_ns + tolerance_ns)
        entries = list(zip(self._stamps[lo:hi], self._items[lo:hi], strict=True))
        return sorted(entries, key=lambda e: abs(e[0] - t_ns))

    def since(self, t_ns: int) -> list[tuple[int, Any]]:
        """Entries stamped at or after ``t_ns``, oldest first."""
        i = bisect_left(self._stamps, t_ns)
        return list(zip(self._stamps[i:], self._items[i:], strict=True))

    def latest_at(self, t_ns: int) -> tuple[int, Any] | None:
        """The newest entry stamped at or before ``t_ns`` (e.g. the pose in effect at a frame)."""
        i = bisect_right(self._stamps, t_ns)
        return (self._stamps[i - 1], self._items[i - 1]) if i else None

    def discard_through(self, t_ns: int) -> None:
        """Drop the entries stamped at or before ``t_ns``."""
        self._delete(slice(0, bisect_right(self._stamps, t_ns)))

    def remove_if(self, predicate: Callable[[int, Any], bool]) -> list[tuple[int, Any]]:
        """Remove and return (oldest first) the entries for which ``predicate(stamp_ns, item)`` holds."""
        doomed = [j for j, (t, item) in enumerate(zip(self._stamps, self._items, strict=True)) if predicate(t, item)]
        removed = [(self._stamps[j], self._items[j]) for j in doomed]
        for j in reversed(doomed):
            self._delete(slice(j, j + 1))
        return removed


@dataclass(frozen=True)
class Frame:
    """One camera frame: the primary part's stamp and, per part, the matched (stamp_ns, item) or None."""

    stamp_ns: int
    parts: Mapping[str, tuple[int, Any] | None]

    def __getitem__(self, part: str) -> Any:
        entry = self.parts[part]
        return None if entry is None else entry[1]

    def stamp_of(self, part: str) -> int | None:
        entry = self.parts[part]
        return None if entry is None else entry[0]

    @property
    def missing(self) -> list[str]:
        return [part for part, entry in self.parts.items() if entry is None]

    @property
    def complete(self) -> bool:
        return not self.missing


class FrameStore:
    """The recent parts of camera frames by stamp (thread-safe); ``parts[0]`` is the primary part, whose
    stamp is the frame's. ``window_s`` and ``maxlen`` bound every part's buffer (see :class:`StampedBuffer`).
    """

    def __init__(self, parts: Sequence[str], sync_tolerance_s: float = 0.0, window_s: float | None = None,
                 maxlen: int | None = None):
        if not parts:
            raise ValueError("a FrameStore needs at least one part")
        self.primary = parts[0]
        self._buffers = {part: StampedBuffer(None if window_s is None else seconds_to_ns(window_s), maxlen)
                         for part in parts}
        self.sync_tolerance_ns = seconds_to_ns(sync_tolerance_s)
        self._lock = threading.Lock()

    def set_sync_tolerance(self, seconds: float) -> None:
        self.sync_tolerance_ns = seconds_to_ns(seconds)

    def set_window(self, seconds: float | None) -> None:
        with self._lock:
            for buffer in self._buffers.values():
                buffer.window_ns = None if seconds is None else seconds_to_ns(seconds)
                buffer.prune()

    def add(self, part: str, t_ns: int, item: Any) -> None:
        with self._lock:
            self._buffers[part].add(t_ns, item)

    def _frame(self, t_ns: int, item: Any) -> Frame:
        parts = {part: buffer.nearest(t_ns, self.sync_tolerance_ns) for part, buffer in self._buffers.items()
                 if part != self.primary}
        return Frame(t_ns, {self.primary: (t_ns, item), **parts})

    def near(self, t_ns: int, tolerance_ns: int) -> list[Frame]:
        """Frames whose stamp is within ``tolerance_ns`` of ``t_ns``, nearest first, complete or not."""
        with self._lock:
            return [self._frame(t, item) for t, item in self._buffers[self.primary].near(t_ns, tolerance_ns)]

    def complete_since(self, t_ns: int) -> list[Frame]:
        """The complete frames stamped at or after ``t_ns``, oldest first."""
        with self._lock:
            frames = [self._frame(t, item) for t, item in self._buffers[self.primary].since(t_ns)]
        return [frame for frame in frames if frame.complete]

    def newest_complete(self) -> Frame | None:
        with self._lock:
            for t, item in reversed(list(self._buffers[self.primary])):
                frame = self._frame(t, item)
                if frame.complete:
                    return frame
        return None

    def discard_through(self, part: str, t_ns: int) -> None:
        with self._lock:
            self._buffers[part].discard_through(t_ns)

    def expire(self, predicate: Callable[[int, Any], bool]) -> list[Frame]:
        """Remove the primary entries for which ``predicate(stamp_ns, item)`` holds; their frames as they
        were (what each lacked: :attr:`Frame.missing`)."""
        with self._lock:
            removed = self._buffers[self.primary].remove_if(predicate)
            return [self._frame(t, item) for t, item in removed]

    def newest_ns(self, part: str | None = None) -> int | None:
        """The newest stamp of a part (the primary's by default), or None when none is held."""
        with self._lock:
            return self._buffers[part or self.primary].newest_ns

    def held(self, part: str | None = None) -> tuple[int, int | None, int | None]:
        """(count, oldest stamp, newest stamp) of a part's entries (the primary's by default)."""
        with self._lock:
            buffer = self._buffers[part or self.primary]
            return len(buffer), buffer.oldest_ns, buffer.newest_ns


@dataclass(frozen=True)
class FrameSet:
    """Colour image, aligned depth and camera_info of one frame (t0 = the colour stamp)."""

    color: Any
    depth: Any
    info: Any
    stamp_ns: int


class StampSynchronizer:
    """Streaming approximate-time matching of colour, depth and camera_info on a :class:`FrameStore`.

    The newest complete frame (colour image + nearest depth and camera_info within ``tolerance_s``) wins;
    the colour and depth entries up to it are then dropped (camera_info is kept: it rarely changes). A
    colour image still unmatched ``expire_s`` after it arrived is dropped and reported (what was missing),
    so "frames but no camera_info" is seen.
    """

    def __init__(self, tolerance_s: float, queue_size: int = 10, expire_s: float = 0.5):
        self.expire_s = expire_s
        self._store = FrameStore(("color", "depth", "info"), sync_tolerance_s=tolerance_s, maxlen=queue_size)

    @property
    def tolerance_ns(self) -> int:
        return self._store.sync_tolerance_ns

    def set_tolerance(self, tolerance_s: float) -> None:
        self._store.set_sync_tolerance(tolerance_s)

    def add(self, kind: str, t_ns: int, msg: Any, arrival_s: float) -> FrameSet | None:
        """Store one part (``kind``: color, depth or info) stamped ``t_ns``; the frame set it completes, if any."""
        self._store.add(kind, t_ns, (arrival_s, msg) if kind == "color" else msg)
        frame = self._store.newest_complete()
        if frame is None:
            return None
        self._store.discard_through("color", frame.stamp_ns)
        self._store.discard_through("depth", frame.stamp_of("depth"))
        return FrameSet(frame["color"][1], frame["depth"], frame["info"], frame.stamp_ns)

    def expire(self, now_s: float) -> list[str]:
        """Drop colour images unmatched for ``expire_s``; return what each lacked."""
        expired = self._store.expire(lambda _t, item: now_s - item[0] > self.expire_s)
        names = {"depth": "depth image", "info": "camera_info"}
        return [" and ".join(names[part] for part in frame.missing) for frame in expired if frame.missing]


class LatestMailbox:
    """One slot between callbacks and a worker thread: a newer item replaces one not yet taken."""

    def __init__(self):
        self._item = None
        self._closed = False
        self._cond = threading.Condition()

    def put(self, item) -> bool:
        """Store ``item``; True when it superseded an untaken one."""
        with self._cond:
            superseded = self._item is not None
            self._item = item
            self._cond.notify()
            return superseded

    def take(self):
        """Block until an item (returned) or close() (None, even with an item left)."""
        with self._cond:
            while self._item is None and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            item, self._item = self._item, None
            return item

    def discard(self):
        """Drop the waiting item (returned, or None)."""
        with self._cond:
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
