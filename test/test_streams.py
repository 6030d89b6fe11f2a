"""molmomotion_ros.streams: stamp buffers, the one rule that puts camera frames together by stamp (used by
the forecaster, the planner and the policy node), the forecaster's synchroniser and the mailbox. Plain
Python: no rclpy, no messages (items are strings here)."""

import subprocess
import sys
import threading
import time
from types import SimpleNamespace

from molmomotion_ros.streams import (
    NS,
    FrameStore,
    LatestMailbox,
    StampedBuffer,
    StampSynchronizer,
    seconds_to_ns,
    stamp_ns,
)

MS = 1_000_000


def test_streams_import_without_rclpy():
    code = ("import sys, molmomotion_ros.streams\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rclpy', 'sensor_msgs', 'std_msgs')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_stamp_ns_reads_sec_and_nanosec():
    assert stamp_ns(SimpleNamespace(sec=12, nanosec=345)) == 12 * NS + 345
    assert seconds_to_ns(0.01) == 10 * MS and seconds_to_ns(0.29) == 290 * MS  # rounded, not truncated


def test_buffer_keeps_stamp_order_and_a_window_before_the_newest():
    buffer = StampedBuffer(window_ns=100 * MS)
    for t in (0, 50, 20, 100, 130):  # one out of order
        buffer.add(t * MS, f"f{t}")
    assert [t // MS for t, _ in buffer] == [50, 100, 130]  # 0 and 20 are more than 100 ms before 130
    assert buffer.oldest_ns == 50 * MS and buffer.newest_ns == 130 * MS
    buffer.window_ns = 40 * MS
    buffer.prune()
    assert [item for _, item in buffer] == ["f100", "f130"]


def test_buffer_starts_over_when_the_clock_jumps_back():
    """A restarted simulator (or a looping bag) stamps from zero again: its frames are kept, the old ones go."""
    buffer = StampedBuffer(window_ns=1 * NS)
    for t in (100, 100.5, 101):
        buffer.add(int(t * NS), "old")
    buffer.add(int(0.2 * NS), "new")
    assert list(buffer) == [(int(0.2 * NS), "new")]
    buffer.add(int(100.2 * NS), "late")  # within the window of the newest: a late frame, not a jump
    buffer.add(int(100.0 * NS), "later")
    assert [item for _, item in buffer] == ["later", "late"]


def test_buffer_maxlen_drops_the_entry_added_first():
    buffer = StampedBuffer(maxlen=2)
    buffer.add(300, "c")
    buffer.add(100, "a")
    buffer.add(200, "b")  # full: "c" was added first, though it has the highest stamp
    assert list(buffer) == [(100, "a"), (200, "b")]


def test_buffer_lookups_by_stamp():
    buffer = StampedBuffer()
    for t in (0, 100, 200, 300):
        buffer.add(t * MS, t)
    assert buffer.nearest(140 * MS, 50 * MS) == (100 * MS, 100)
    assert buffer.nearest(150 * MS, 50 * MS) == (100 * MS, 100)  # a tie: the earlier one
    assert buffer.nearest(150 * MS, 49 * MS) is None
    assert buffer.nearest(100 * MS, 0) == (100 * MS, 100)  # tolerance 0: the exact stamp only
    assert buffer.nearest(101 * MS, 0) is None
    assert [t for _, t in buffer.near(190 * MS, 100 * MS)] == [200, 100]
    assert [t for _, t in buffer.since(100 * MS)] == [100, 200, 300]
    assert buffer.latest_at(250 * MS) == (200 * MS, 200) and buffer.latest_at(-1) is None
    assert buffer.remove_if(lambda t, item: item in (0, 200)) == [(0, 0), (200 * MS, 200)]
    buffer.discard_through(100 * MS)
    assert list(buffer) == [(300 * MS, 300)]


def test_a_frame_whose_camera_info_was_lost_gives_way_to_the_nearest_complete_one():
    """The planner: sensor-data QoS may drop a camera_info while its depth image arrives; the nearest complete
    frame within max_frame_offset_s serves, and only none at all is a failure."""
    store = FrameStore(("depth", "info"))
    for t in (0, 100, 200, 300):
        store.add("depth", t * MS, f"depth@{t}")
    for t in (0, 200, 300):  # the frame at 100 ms lost its info
        store.add("info", t * MS, f"info@{t}")
    near = store.near(110 * MS, 150 * MS)
    assert [frame.stamp_ns // MS for frame in near] == [100, 200, 0]  # nearest first, within the tolerance
    assert near[0].missing == ["info"] and near[0]["depth"] == "depth@100"
    complete = [frame for frame in near if frame.complete]
    assert (complete[0]["depth"], complete[0]["info"]) == ("depth@200", "info@200")
    assert store.near(900 * MS, 150 * MS) == []
    assert store.held() == (4, 0, 300 * MS)


def test_the_first_complete_frame_after_a_stamp():
    """The policy: colour, depth and camera_info of one stamp (the sync tolerance is 0: the same stamp)."""
    store = FrameStore(("color", "depth", "info"), window_s=10.0)
    for t in (100, 167, 233, 300):
        store.add("color", t * MS, f"rgb@{t}")
        store.add("info", t * MS, f"info@{t}")
        if t != 167:  # its depth image was dropped
            store.add("depth", (t + (1 if t == 233 else 0)) * MS, f"depth@{t}")  # 233's depth is 1 ms off
    frames = store.complete_since(120 * MS)
    assert [frame.stamp_ns // MS for frame in frames] == [300]
    store.set_sync_tolerance(0.002)  # a driver stamping depth 1 ms after colour
    assert [frame.stamp_ns // MS for frame in store.complete_since(120 * MS)] == [233, 300]
    assert store.newest_ns("color") == 300 * MS and store.newest_ns("depth") == 300 * MS
    store.set_window(0.1)
    assert store.held("color") == (2, 233 * MS, 300 * MS)


def test_synchroniser_matches_within_tolerance_and_reports_what_is_missing():
    sync = StampSynchronizer(tolerance_s=0.01, expire_s=0.5)
    t = 1_000 * NS
    assert sync.add("info", t, "info", 0.0) is None
    assert sync.add("depth", t + 4 * MS, "depth", 0.0) is None  # 4 ms late: within 10 ms
    frames = sync.add("color", t, "color", 0.0)
    assert frames is not None and frames.stamp_ns == t
    assert (frames.color, frames.depth, frames.info) == ("color", "depth", "info")
    assert sync.add("color", t + 33 * MS, "color 2", 0.1) is None  # its depth is 20 ms off, info 33 ms
    assert sync.add("depth", t + 53 * MS, "depth 2", 0.1) is None
    assert sync.expire(0.5) == []
    assert sync.expire(0.7) == ["depth image and camera_info"]


def test_synchroniser_serves_the_newest_frame_and_drops_the_older_ones():
    sync = StampSynchronizer(tolerance_s=0.005)
    t = 5 * NS
    assert sync.add("color", t, "old", 0.0) is None
    assert sync.add("color", t + 33 * MS, "new", 0.0) is None
    sync.add("info", t + 33 * MS, "info", 0.0)  # camera_info matches only the new frame
    assert sync.add("depth", t, "old depth", 0.0) is None
    frames = sync.add("depth", t + 33 * MS, "new depth", 0.0)
    assert (frames.color, frames.depth, frames.stamp_ns) == ("new", "new depth", t + 33 * MS)
    assert sync.expire(10.0) == []  # the old colour image went with the match
    sync.set_tolerance(0.0)
    assert sync.tolerance_ns == 0
    assert sync.add("color", t + 66 * MS, "next", 0.0) is None  # the camera_info stays, the depth was used


def test_mailbox_keeps_only_the_latest_item():
    mailbox = LatestMailbox()
    assert not mailbox.put("old")
    assert mailbox.put("new")  # superseded "old", never started
    assert mailbox.take() == "new"
    assert mailbox.discard() is None
    mailbox.put("dropped by a stop")
    assert mailbox.discard() == "dropped by a stop"
    mailbox.put("left at close")
    mailbox.close()
    assert mailbox.take() is None


def test_mailbox_take_blocks_until_an_item_or_close():
    mailbox = LatestMailbox()
    taken = []

    def work():
        for _ in range(2):
            taken.append(mailbox.take())

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    try:
        time.sleep(0.05)
        assert taken == [] and worker.is_alive()
        mailbox.put("request")
        deadline = time.monotonic() + 5
        while not taken and time.monotonic() < deadline:
            time.sleep(0.01)
        assert taken == ["request"]
    finally:
        mailbox.close()
    worker.join(5)
    assert taken == ["request", None] and not worker.is_alive()
