"""``molmomotion record``: record a running ROS 2 graph into a rosbag2 bag folder with MCAP storage.

The pip route to ``ros2 bag record`` (no rosbag2 wheels): the bag (``DIR/metadata.yaml``, ``DIR/DIR_0.mcap``...) is
what ``ros2 bag info/play``, Foxglove and the ``mcap`` CLI read. With ``--split-by-episode`` DIR holds one such bag
per simulated episode instead (molmomotion_ros.bags.episode_split). The writer is molmomotion_ros.bags (no rclpy);
rclpy loads in the handler, once the inputs are checked.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
from pathlib import Path

from .common import PROG, USAGE_ERROR, UsageError, positive_float, table_lines

MB = 1_000_000
# A ROS 2 topic name, absolute or relative: tokens of letters, digits and '_', none starting with a digit.
_TOPIC_NAME = re.compile(r"^/?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")


def add_parser(commands) -> None:
    """Add ``record`` to the ``molmomotion`` subcommands."""
    record = commands.add_parser(
        "record", help="record the running ROS 2 graph into a rosbag2 bag (MCAP), as `ros2 bag record` would",
        description="Subscribe to the graph's topics (serialized, with QoS that matches their publishers) and write "
        "them to DIR as a rosbag2 bag with MCAP storage: DIR/metadata.yaml and DIR/<name>_0.mcap (_1, _2, ... when "
        "split), readable by `ros2 bag info/play`, Foxglove and the mcap CLI. Without TOPICs it records the package "
        "graph's standard topics (camera, /tf, /tf_static, joint states, instruction, forecasts, trajectories, "
        "gripper, status, sim/episode, sim/ground_truth, /diagnostics); topics that appear later are recorded from "
        "then on. With --split-by-episode, DIR holds a bag per simulated episode. Ctrl-C or SIGTERM stops, finishes "
        "the files and prints what was recorded.")
    record.add_argument("dir", type=Path, metavar="DIR", help="the bag folder to create (new or empty); with "
                        "--split-by-episode the folder of the bag folders")
    record.add_argument("topics", nargs="*", default=[], metavar="TOPIC",
                        help="topics to record (relative names are in --namespace); default: the package's topics")
    record.add_argument("--all", action="store_true",
                        help="record every topic that has a publisher (hidden ones excepted), with the TOPICs")
    record.add_argument("--namespace", default="/", metavar="NS",
                        help="namespace of relative topic names and of the default topics (as `launch --namespace`)")
    record.add_argument("--compression", choices=("zstd", "none"), default="zstd",
                        help="MCAP chunk compression (default zstd; readers decompress it transparently)")
    record.add_argument("--max-bag-size", type=positive_float, metavar="MB",
                        help="start a new file when the current one reaches MB megabytes (10^6 bytes)")
    record.add_argument("--max-bag-duration", type=positive_float, metavar="S",
                        help="start a new file when a message comes more than S seconds after the file's first")
    record.add_argument("--split-by-episode", action="store_true",
                        help="a bag per simulated episode: each sim/episode message (sim_node's, at every reset) "
                        "closes the open bag and starts DIR/<suite>-<family>-<seed> (a repeated episode gets _2, "
                        "_3, ...), which opens with that message and the latest message of every latched topic "
                        "(/tf_static, camera/pose, instruction, sim/ground_truth, ...), so each bag stands alone; "
                        "messages before the first episode go to DIR/preamble. The boundary is the sim/episode's "
                        "publish time: messages are ordered by publish time within a 1 s window before they are "
                        "written (what sim_node publishes after a reset is in that episode's bag, what it published "
                        "before in the previous one). `molmomotion launch sim_eval --record DIR` records this way")
    record.add_argument("--episode-topic", default="sim/episode", metavar="TOPIC",
                        help="--split-by-episode: the topic whose messages start a bag (std_msgs/String, JSON with "
                        "suite, family, seed; default sim/episode, in --namespace); recorded in any case")
    record.add_argument("--discovery-interval", type=positive_float, default=0.5, metavar="S",
                        help="how often the graph is searched for new topics (default 0.5 s)")
    record.add_argument("--max-queue", type=positive_float, default=512, metavar="MB",
                        help="messages waiting for the writer beyond this are dropped and counted (default 512 MB)")
    record.add_argument("--no-progress", action="store_true", help="no progress line (shown only on a terminal)")
    record.set_defaults(handler=_record)


def topic_names(texts: list[str], namespace: str) -> list[str]:
    """Absolute topic names; UsageError for a name ROS 2 would refuse."""
    if namespace.strip("/") and not _TOPIC_NAME.match(namespace.strip("/")):
        raise UsageError(f"--namespace {namespace!r} is not a valid ROS 2 namespace")
    prefix = "/" + namespace.strip("/") if namespace.strip("/") else ""
    names = []
    for text in texts:
        if not _TOPIC_NAME.match(text):
            raise UsageError(f"{text!r} is not a valid ROS 2 topic name (letters, digits, '_' and '/'; no part "
                             "starting with a digit)")
        names.append(text if text.startswith("/") else f"{prefix}/{text}")
    return list(dict.fromkeys(names))


def summary_table(summary, outcome, writer, seconds: float, named: list[str] = ()) -> str:
    """Per-topic messages, drops and payload; then files, MB written and MB per minute; the ``named`` topics that
    never had a publisher. A split recording (``summary.bags``) lists its bags after that."""
    rows = []
    counts = {t.metadata.name: t for t in summary.topics}
    names = list(dict.fromkeys([*counts, *writer.dropped, *outcome.skipped]))
    for name in sorted(names):
        count = counts.get(name)
        if count is not None:
            rows.append((name, count.metadata.type, str(count.message_count), str(writer.dropped[name]),
                         f"{count.payload_bytes / MB:.2f}"))
        elif name in outcome.skipped:
            rows.append((name, "(not recorded)", "-", "-", "-"))
    dropped = sum(writer.dropped.values())
    payload = sum(t.payload_bytes for t in summary.topics)
    total = (f"all {len(counts)} topics", "", str(summary.message_count), str(dropped), f"{payload / MB:.2f}")
    lines = table_lines(("topic", "type", "messages", "dropped", "MB"), rows, total, left_columns=2)
    written = summary.size_bytes / MB
    per_minute = written / (seconds / 60) if seconds > 0 else 0.0
    files = len(summary.files)
    bags = getattr(summary, "bags", None)
    if bags is None:
        lines.append(f"recorded {seconds:.1f} s into {files} file{'s' if files != 1 else ''} in {summary.folder}: "
                     f"{written:.2f} MB written, {per_minute:.2f} MB/min; {summary.folder / 'metadata.yaml'}")
    else:
        lines.append(f"recorded {seconds:.1f} s into {len(bags)} bag{'s' if len(bags) != 1 else ''} ({files} "
                     f"file{'s' if files != 1 else ''}) in {summary.folder}: {written:.2f} MB written, "
                     f"{per_minute:.2f} MB/min")
        lines += bag_lines(summary)
    for name, reasons in sorted(writer.drop_reasons.items()):
        lines.append(f"dropped on {name}: " + "; ".join(f"{n} ({why})" for why, n in reasons.items()))
    for name, reason in sorted(outcome.skipped.items()):
        lines.append(f"not recorded {name}: {reason}")
    unseen = [n for n in named if n not in counts and n not in outcome.skipped]
    if unseen:
        lines.append(f"no publisher seen on {', '.join(unseen)}")
    return "\n".join(lines)


def bag_lines(summary) -> list[str]:
    """A split recording's bags: folder, episode, messages (those written again at its start among them), MB."""
    rows = []
    for bag in summary.bags:
        if bag.episode is None:
            what = "before the first episode" if bag.name.startswith("preamble") else "(not an episode's JSON)"
        else:
            what = f"{bag.episode.get('family', '?')} seed {bag.episode.get('seed', '?')}"
        rows.append((bag.name, what, str(bag.summary.message_count), str(bag.repeated),
                     f"{bag.summary.size_bytes / MB:.2f}"))
    total = (f"{len(rows)} bags", "", str(summary.message_count), str(summary.repeated),
             f"{summary.size_bytes / MB:.2f}")
    lines = table_lines(("bag", "episode", "messages", "repeated", "MB"), rows, total, left_columns=2)
    lines.append("(repeated: the latched topics' latest messages written again at the bag's start, counted in its "
                 "messages and in the topics above)")
    return lines


def _record(args: argparse.Namespace) -> int:
    from molmomotion_ros.bags import BagWriter, QueuedWriter
    from molmomotion_ros.bags.episode_split import EpisodeSplitWriter
    from molmomotion_ros.bags.writer import MIN_SPLIT_BYTES
    from molmomotion_ros.graph import record_topics

    names = topic_names(args.topics, args.namespace)
    if not names and not args.all:
        names = record_topics(args.namespace)
    episode_topic = topic_names([args.episode_topic], args.namespace)[0]
    if args.split_by_episode and episode_topic not in names:
        names.append(episode_topic)
    max_size = int(round(args.max_bag_size * MB)) if args.max_bag_size else 0
    if max_size and max_size < MIN_SPLIT_BYTES:
        raise UsageError(f"--max-bag-size {args.max_bag_size:g} MB is below the smallest split, "
                         f"{MIN_SPLIT_BYTES} bytes")
    # The folder is checked (and created) before ROS starts: a bad DIR costs nothing and leaves nothing behind.
    options = {"compression": args.compression, "max_bag_size_bytes": max_size,
               "max_bag_duration_s": args.max_bag_duration or 0.0}
    if args.split_by_episode:
        bag = EpisodeSplitWriter(args.dir, episode_topic=episode_topic, **options)
    else:
        bag = BagWriter(args.dir, **options)
    writer = QueuedWriter(bag, max_pending_bytes=int(args.max_queue * MB))

    from molmomotion_ros.nodes.recorder import TopicSelection, record, stop_on_signals

    progress = not args.no_progress and sys.stderr.isatty()
    what = f"{len(names)} topics" if not args.all else "every topic" + (f" (with {len(names)} named)" if names else "")
    print(f"recording {what} to {args.dir} (MCAP, {args.compression} chunks; ROS_DOMAIN_ID="
          f"{os.environ.get('ROS_DOMAIN_ID', '0')}); Ctrl-C stops", flush=True)
    if args.split_by_episode:
        print(f"a bag per episode: each {episode_topic} starts {args.dir}/<suite>-<family>-<seed>; before the first, "
              f"{args.dir}/preamble", flush=True)

    def report(text: str) -> None:
        _clear_progress(progress)
        print(text, flush=True)

    def warn(text: str) -> None:
        _clear_progress(progress)
        print(f"{PROG}: warning: {text}", file=sys.stderr, flush=True)

    def on_progress(seconds: float) -> None:
        p = writer.progress()
        sys.stderr.write(f"\r{seconds:6.0f} s  {p.written} messages on {p.topics} topics, "
                         f"{p.bytes_written / MB:.1f} MB written, {p.dropped} dropped, "
                         f"{p.pending_bytes / MB:.1f} MB queued ")
        sys.stderr.flush()

    stop = threading.Event()
    with stop_on_signals(stop, again=writer.abandon):
        try:
            outcome = record(writer, TopicSelection(frozenset(names), args.all), stop,
                             discovery_interval_s=args.discovery_interval, report=report, warn=warn,
                             on_progress=on_progress if progress else None)
        finally:
            _clear_progress(progress)
            print("stopping: finishing the bag", flush=True)
            summary = writer.close()
    print(summary_table(summary, outcome, writer, outcome.seconds, topic_names(args.topics, args.namespace)))
    if writer.error is not None:  # a full disk, a removed folder: the user's to fix, like bad input
        print(f"{PROG}: error: {' '.join(str(writer.error).split())}", file=sys.stderr)
        return USAGE_ERROR
    return 0


def _clear_progress(enabled: bool) -> None:
    if enabled:
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()
