"""Playback planning and timing (bags/playback.py) on a simulated clock, without ROS: when each message and each
/clock tick goes out under --rate, --start-offset, --delay and --loop, a stop, and which topics play under which
names (--topics, --remap)."""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path

import pytest

from molmomotion_ros.bags import (
    BagReader,
    BagReadError,
    BagWriter,
    DefinitionSource,
    PlaybackOptions,
    QosProfile,
    TopicMetadata,
    plan_topics,
)
from molmomotion_ros.bags.playback import Playback
from molmomotion_ros.bags.reader import BagMessage

S = 1_000_000_000
T0 = 1_700_000_000 * S


class SimulatedTime:
    """``now`` and ``wait``: a wait moves the clock on by its timeout (nothing else wakes it)."""

    def __init__(self, stop: threading.Event):
        self.t = 100.0
        self.stop = stop

    def now(self) -> float:
        return self.t

    def wait(self, seconds: float) -> bool:
        self.t += max(seconds, 0.0)
        return self.stop.is_set()


def run(messages: list[BagMessage], options: PlaybackOptions, stop_after: int | None = None, clock: bool = True):
    """(published (wall time from start, topic, log time), clock ticks (wall, ns), stats)."""
    stop = threading.Event()
    time = SimulatedTime(stop)
    published, ticks = [], []

    def publish(message: BagMessage) -> None:
        published.append((round(time.t - 100.0, 6), message.topic, message.log_time))
        if stop_after is not None and len(published) >= stop_after:
            stop.set()

    def source(start_ns: int):
        return [m for m in messages if m.log_time >= start_ns]

    playback = Playback(source, messages[0].log_time, options, publish,
                        (lambda ns: ticks.append((round(time.t - 100.0, 6), ns))) if clock else None,
                        stop=stop, now=time.now, wait=time.wait)
    return published, ticks, playback.run()


MESSAGES = [BagMessage("/a", b"", T0 + k * S // 2, T0) for k in range(5)]  # 0, 0.5, ... 2 s


def test_the_rate_scales_the_recorded_timing():
    published, _, stats = run(MESSAGES, PlaybackOptions(rate=2.0), clock=False)
    assert [p[0] for p in published] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0], abs=1e-6)
    assert [p[2] for p in published] == [m.log_time for m in MESSAGES]
    assert stats.published == {"/a": 5} and stats.passes == 1 and not stats.stopped
    assert stats.bag_ns == 2 * S and stats.wall_s == pytest.approx(1.0)
    slow, _, _ = run(MESSAGES, PlaybackOptions(rate=0.5), clock=False)
    assert slow[-1][0] == pytest.approx(4.0)


def test_clock_ticks_carry_the_bag_time_and_never_go_back():
    published, ticks, stats = run(MESSAGES, PlaybackOptions(rate=2.0, clock_hz=10.0))
    assert ticks[0] == (0.0, T0)
    walls = [w for w, _ in ticks]
    assert all(b - a == pytest.approx(0.1) for a, b in zip(walls, walls[1:], strict=False))
    times = [ns for _, ns in ticks]
    assert times == sorted(times) and times[-1] <= MESSAGES[-1].log_time
    for wall, ns in ticks:  # bag time = start + wall * rate
        assert ns == pytest.approx(T0 + wall * 2.0 * S, abs=1000)
    assert stats.clock_ticks == len(ticks) == 11  # 0 .. 1.0 s of wall time at 10 Hz


def test_the_start_offset_and_the_delay():
    published, ticks, stats = run(MESSAGES, PlaybackOptions(start_offset_s=1.0, delay_s=0.3, clock_hz=10.0))
    # The first message at or after start + 1 s goes out once the delay is over; the clock holds the start meanwhile.
    assert [p[2] for p in published] == [m.log_time for m in MESSAGES[2:]]
    assert [p[0] for p in published] == pytest.approx([0.3, 0.8, 1.3])
    assert {ns for w, ns in ticks if w < 0.3} == {T0 + S}
    assert stats.bag_ns == S


def test_a_loop_starts_again_and_the_clock_jumps_back():
    published, ticks, stats = run(MESSAGES, PlaybackOptions(loop=True, clock_hz=4.0), stop_after=8)
    assert [p[2] for p in published] == [m.log_time for m in MESSAGES] + [m.log_time for m in MESSAGES[:3]]
    assert stats.passes == 2 and stats.stopped and stats.published == {"/a": 8}
    jumps = [i for i in range(1, len(ticks)) if ticks[i][1] < ticks[i - 1][1]]
    assert len(jumps) == 1 and ticks[jumps[0]] == (published[5][0], T0)  # back at the start, before its message
    assert published[5][0] == pytest.approx(published[4][0])  # no gap between the passes (no delay asked)


def test_a_stop_ends_a_wait_at_once():
    published, _, stats = run([BagMessage("/a", b"", T0, T0), BagMessage("/a", b"", T0 + 3600 * S, T0)],
                              PlaybackOptions(), stop_after=1, clock=False)
    assert len(published) == 1 and stats.stopped and stats.wall_s < 1.0


def test_late_messages_go_out_at_once_in_order():
    """A message due before the previous one went out (a stall) is published right away, never reordered."""
    messages = [BagMessage("/a", b"", T0 + k, T0) for k in range(3)]
    published, _, _ = run(messages, PlaybackOptions(rate=1e-9), clock=False)  # 1 ns of the bag = 1 s of wall
    assert [p[2] for p in published] == [m.log_time for m in messages]


def test_options_are_checked():
    for bad in ({"rate": 0}, {"clock_hz": 0}, {"start_offset_s": -1}, {"delay_s": -0.5}):
        with pytest.raises(ValueError):
            PlaybackOptions(**bad)


@pytest.fixture
def bag(tmp_path) -> BagReader:
    definitions = DefinitionSource([Path(sys.prefix)])
    writer = BagWriter(tmp_path / "plan")
    for name, type_name in (("/chatter", "std_msgs/msg/String"), ("/image", "sensor_msgs/msg/Image"),
                            ("/other", "std_msgs/msg/String")):
        writer.add_topic(TopicMetadata(name, type_name, [QosProfile(reliability="best_effort")]),
                         definitions.get(type_name))
    writer.write("/chatter", b"\x00\x01\x00\x00\x01\x00\x00\x00\x00", T0)
    writer.close()
    with BagReader(tmp_path / "plan") as reader:
        yield reader


def test_plan_topics_names_remaps_and_qos(bag):
    plan = plan_topics(bag)
    assert [(t.name, t.published_as, t.type) for t in plan.topics] == [
        ("/chatter", "/chatter", "std_msgs/msg/String"), ("/image", "/image", "sensor_msgs/msg/Image"),
        ("/other", "/other", "std_msgs/msg/String")]
    assert {t.qos.reliability for t in plan.topics} == {"best_effort"} and plan.topics[0].message_count == 1
    plan = plan_topics(bag, ["/image", "/chatter"], {"/image": "/camera/image"})
    assert [(t.name, t.published_as) for t in plan.topics] == [("/image", "/camera/image"), ("/chatter", "/chatter")]
    plan = plan_topics(bag, None, {"/other": "/chatter"})  # same type on one name: allowed (two publishers)
    assert [t.published_as for t in plan.topics].count("/chatter") == 2


@pytest.mark.parametrize("topics, remaps, message", [
    (["/nope"], {}, "the bag has no topic /nope (its topics: /chatter, /image, /other)"),
    (None, {"/camera": "/x"}, "the bag has no topic to remap called /camera"),
    (None, {"/image": "/chatter"}, "/chatter would carry two types"),
])
def test_plan_topics_refuses_what_the_bag_lacks(bag, topics, remaps, message):
    with pytest.raises(BagReadError, match=re.escape(f"cannot play {str(bag.path)!r}: ") + ".*" + re.escape(message)):
        plan_topics(bag, topics, remaps)
