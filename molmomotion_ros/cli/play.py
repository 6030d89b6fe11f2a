"""``molmomotion play`` and ``molmomotion recover``: a rosbag2 MCAP bag published into the running graph, as ``ros2
bag play`` would, and a truncated bag rewritten as a complete one.

The pip route to ``ros2 bag play`` (no rosbag2 wheels): any rosbag2 bag with MCAP storage plays, one recorded by
``molmomotion record`` or by ``ros2 bag record`` on a cell. Reading, topic plan, timing and recovery are
molmomotion_ros.bags (no rclpy); rclpy loads in the play handler, once the bag and the options are checked, so a bad
input costs nothing and ends with one line and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

from .common import PROG, USAGE_ERROR, UsageError, positive_float, table_lines
from .record import MB, topic_names

RECOVER_HINT = "`molmomotion recover BAG` rewrites it as a complete bag"


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a non-negative number of seconds, got {text}")
    return value


def add_parsers(commands) -> None:
    """Add ``play`` and ``recover`` to the ``molmomotion`` subcommands."""
    play = commands.add_parser(
        "play", help="publish a rosbag2 bag (MCAP) into the running graph, as `ros2 bag play` would",
        description="Publish BAG's messages as recorded (serialized, never decoded) with each topic's recorded QoS "
        "and the recorded timing, scaled by --rate. BAG is a bag folder (metadata.yaml and its .mcap files, or .mcap "
        "files alone) or one .mcap file, recorded by `molmomotion record` or `ros2 bag record`; a truncated file "
        "plays up to its last complete chunk. With --clock, /clock carries the bag's time so that nodes with "
        "use_sim_time run on it. Ctrl-C or SIGTERM stops; a per-topic summary is printed at the end.")
    play.add_argument("bag", type=Path, metavar="BAG", help="the bag folder or .mcap file")
    play.add_argument("--rate", "-r", type=positive_float, default=1.0, metavar="R",
                      help="play R times as fast as recorded (default 1)")
    play.add_argument("--loop", "-l", action="store_true",
                      help="play again from the start until stopped (/clock jumps back at each start)")
    play.add_argument("--clock", type=positive_float, nargs="?", const=40.0, metavar="HZ",
                      help="publish /clock (rosgraph_msgs/Clock) at HZ per second with the bag's time (default 40 "
                      "when given without HZ; put it after BAG)")
    play.add_argument("--topics", nargs="+", default=[], metavar="TOPIC",
                      help="play only these topics (default: all; a topic the bag lacks is an error)")
    play.add_argument("--remap", "-m", nargs="+", default=[], metavar="FROM:=TO",
                      help="publish the bag's topic FROM on TO")
    play.add_argument("--start-offset", type=non_negative_float, default=0.0, metavar="S",
                      help="start S seconds after the bag's first message")
    play.add_argument("--delay", "-d", type=non_negative_float, default=0.0, metavar="S",
                      help="wait S seconds before playing (before each pass with --loop), so that subscribers can "
                      "match the new publishers first")
    play.set_defaults(handler=_play)

    recover = commands.add_parser(
        "recover", help="rewrite a truncated rosbag2 bag (MCAP) as a complete one, in a new folder",
        description="Read every message BAG still holds (a file cut short by a killed recorder: everything up to its "
        "last complete chunk) and write them, as stored, into a new bag folder with a summary, indexes and "
        "metadata.yaml regenerated, one file per source file. BAG itself is never written to.")
    recover.add_argument("bag", type=Path, metavar="BAG", help="the bag folder or .mcap file to recover")
    recover.add_argument("--out", "-o", type=Path, metavar="DIR",
                         help="the new bag folder (new or empty; default: BAG's name with _recovered, beside it)")
    recover.set_defaults(handler=_recover)


def parse_remaps(texts: list[str]) -> dict[str, str]:
    """``FROM:=TO`` rules as absolute topic names; UsageError for a malformed rule."""
    remaps = {}
    for text in texts:
        source, sep, target = text.partition(":=")
        if not sep or not source or not target:
            raise UsageError(f"--remap {text!r}: expected FROM:=TO")
        (source,), (target,) = topic_names([source], "/"), topic_names([target], "/")
        if remaps.setdefault(source, target) != target:
            raise UsageError(f"--remap: {source} is remapped twice ({remaps[source]} and {target})")
    return remaps


def _warn(text: str) -> None:
    print(f"{PROG}: warning: {text}", file=sys.stderr, flush=True)


def _reader_warnings(reader) -> None:
    for text in reader.warnings:
        _warn(text)
    if reader.truncated_files:
        _warn(RECOVER_HINT.replace("BAG", str(reader.path)))


def _seconds(ns: int) -> str:
    return f"{ns / 1e9:.1f} s"


def _play(args: argparse.Namespace) -> int:
    from molmomotion_ros.bags import BagReader, BagReadError, PlaybackOptions, plan_topics

    names = topic_names(args.topics, "/")
    remaps = parse_remaps(args.remap)
    with BagReader(args.bag) as reader:
        if reader.start_ns is None:
            raise BagReadError(f"cannot play {str(args.bag)!r}: it holds no messages")
        if args.start_offset * 1e9 > reader.duration_ns:
            raise UsageError(f"--start-offset {args.start_offset:g} s is past the end of {str(args.bag)!r} "
                             f"({_seconds(reader.duration_ns)} long)")
        plan = plan_topics(reader, names or None, remaps)
        if args.clock:  # one clock only: a simulator's recorded /clock would fight the generated one
            recorded_clock = [t for t in plan.topics if t.published_as == "/clock"]
            if recorded_clock:
                plan.topics = [t for t in plan.topics if t.published_as != "/clock"]
                plan.skipped["/clock"] = "--clock generates /clock from the bag's time"
                _warn("not playing the recorded /clock: --clock generates it (leave --clock out to play the "
                      "recording's own clock, e.g. a simulator's)")
        options = PlaybackOptions(rate=args.rate, loop=args.loop, clock_hz=args.clock,
                                  start_offset_s=args.start_offset, delay_s=args.delay)
        _reader_warnings(reader)

        from molmomotion_ros.nodes.player import play
        from molmomotion_ros.nodes.recorder import stop_on_signals

        count = sum(t.message_count for t in plan.topics)
        extras = [f"rate {args.rate:g}"] + (["looping"] if args.loop else []) + \
            ([f"/clock at {args.clock:g} Hz"] if args.clock else [])
        print(f"playing {args.bag}: {len(plan.topics)} topics, {count} messages over "
              f"{_seconds(reader.duration_ns)} ({', '.join(extras)}; ROS_DOMAIN_ID="
              f"{os.environ.get('ROS_DOMAIN_ID', '0')}); Ctrl-C stops", flush=True)
        stop = threading.Event()
        with stop_on_signals(stop, again=lambda: None):
            outcome = play(reader, plan, options, stop, report=lambda text: print(text, flush=True), warn=_warn)
    print(play_summary(outcome, options))
    return 0


def play_summary(outcome, options) -> str:
    """Per topic: the name played on, type, QoS, messages published and in the bag; then time and passes."""
    stats = outcome.stats
    rows = [(t.published_as if t.published_as == t.name else f"{t.name} -> {t.published_as}", t.type,
             f"{t.qos.reliability}, {t.qos.durability}", str(stats.published[t.name]), str(t.message_count))
            for t in outcome.played]
    total = (f"all {len(rows)} topics", "", "", str(sum(stats.published.values())),
             str(sum(t.message_count for t in outcome.played)))
    lines = table_lines(("topic", "type", "QoS", "published", "in bag"), rows, total, left_columns=3)
    passes = f"{stats.passes} pass{'es' if stats.passes != 1 else ''}"
    clock = f"; /clock: {stats.clock_ticks} messages at {options.clock_hz:g} Hz" if options.clock_hz else ""
    if stats.stopped:
        lines.append(f"stopped after {stats.wall_s:.1f} s ({passes}, up to {_seconds(stats.bag_ns)} into the bag; "
                     f"rate {options.rate:g}){clock}")
    else:
        lines.append(f"played {_seconds(stats.bag_ns)} of the bag in {stats.wall_s:.1f} s (rate {options.rate:g}, "
                     f"{passes}){clock}")
    for name, reason in sorted(outcome.skipped.items()):
        lines.append(f"not played {name}: {reason}")
    return "\n".join(lines)


def _recover(args: argparse.Namespace) -> int:
    from molmomotion_ros.bags import BagReader, BagWriteError, default_output, recover

    out = args.out if args.out is not None else default_output(args.bag)
    with BagReader(args.bag) as reader:
        for text in reader.warnings:
            _warn(text)
        try:
            report = recover(reader, out)
        except BagWriteError as err:
            print(f"{PROG}: error: cannot write the recovered bag to {str(out)!r}: {' '.join(str(err).split())} "
                  f"({args.bag} is untouched)", file=sys.stderr)
            return USAGE_ERROR
        summary = report.summary
        rows = [(t.metadata.name, t.metadata.type, str(t.message_count)) for t in summary.topics]
        widths = [max(len(r[i]) for r in [("topic", "type", "messages"), *rows]) for i in range(3)]
        for row in [("topic", "type", "messages"), *rows]:
            print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths,
                                                                                                  strict=True))))
        for file in reader.truncated_files:
            print(f"{file.path}: truncated ({file.problem}); kept {file.message_count} messages of its "
                  f"{file.chunks} complete chunks")
        if not reader.truncated_files:
            print(f"nothing in {args.bag} was truncated; rewritten all the same")
        for name, reason in sorted(report.skipped.items()):
            print(f"not recovered {name}: {reason}")
        files = len(summary.files)
        print(f"recovered {summary.message_count} messages on {len(rows)} topics into {files} "
              f"file{'s' if files != 1 else ''} in {summary.folder} ({summary.size_bytes / MB:.2f} MB); "
              f"{summary.folder / 'metadata.yaml'}; {args.bag} is untouched")
    return 0
