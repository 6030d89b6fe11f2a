"""The bag reader (bags/reader.py) and rosbag2's QoS records read back (bags/qos.py), without ROS.

Bags as ``ros2 bag record`` writes them are built here with the ``mcap`` library's own writer (profile ros2, zstd
chunks, message indexes, sequence numbers, the ``rosbag2`` metadata record) and metadata.yaml texts in rosbag2's
formats (Jazzy's version 9; Humble's version 5 with integer policies and QoS as a YAML string); bags of
``molmomotion record`` come from BagWriter. Truncation is a byte-exact cut of a finished file at many offsets: the
reader must return exactly the messages of the chunks that lie wholly before the cut (the chunk index of the intact
file says which)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml
import zstandard
from mcap.reader import make_reader
from mcap.writer import CompressionType, Writer
from mcap_ros2._dynamic import serialize_dynamic

from molmomotion_ros.bags import BagReader, BagReadError, BagWriter, DefinitionSource, QosProfile, TopicMetadata
from molmomotion_ros.bags.qos import INFINITE_NS, PLAYBACK_DEFAULT, parse_profiles, playback_qos

DEFINITIONS = DefinitionSource([Path(sys.prefix)])
S = 1_000_000_000
T0 = 1_700_000_000 * S
HASH = "RIHS01_" + "cd" * 32
# What rosbag2 Jazzy writes for a default rclcpp publisher (metadata version 9).
JAZZY_QOS = ("- history: unknown\n  depth: 0\n  reliability: reliable\n  durability: {durability}\n  deadline:\n"
             "    sec: 9223372036\n    nsec: 854775807\n  lifespan:\n    sec: 9223372036\n    nsec: 854775807\n"
             "  liveliness: automatic\n  liveliness_lease_duration:\n    sec: 9223372036\n    nsec: 854775807\n"
             "  avoid_ros_namespace_conventions: false")


def encoder(type_name: str):
    return serialize_dynamic(type_name, DEFINITIONS.get(type_name).text)[type_name]


def string_msg(text: str) -> bytes:
    return encoder("std_msgs/msg/String")({"data": text})


def rosbag2_file(path: Path, messages: list[tuple[str, int, bytes]], chunk_size: int = 400,
                 compression: CompressionType = CompressionType.ZSTD, use_chunking: bool = True) -> None:
    """An MCAP file laid out as rosbag2's MCAP plugin writes it; ``messages``: (topic, log time, payload), topics
    /chatter (String, volatile) and /map_info (String, transient local)."""
    with open(path, "wb") as stream:
        writer = Writer(stream, chunk_size=chunk_size, compression=compression, use_chunking=use_chunking)
        writer.start(profile="ros2", library="rosbag2 mcap storage plugin")
        writer.add_metadata("rosbag2", {"serialized_metadata": "version: 9\nros_distro: jazzy\n"})
        schema = writer.register_schema("std_msgs/msg/String", "ros2msg",
                                        DEFINITIONS.get("std_msgs/msg/String").text.encode())
        channels = {topic: writer.register_channel(topic, "cdr", schema, {
            "offered_qos_profiles": JAZZY_QOS.format(durability=durability), "topic_type_hash": HASH})
            for topic, durability in (("/chatter", "volatile"), ("/map_info", "transient_local"))}
        for sequence, (topic, t, data) in enumerate(messages):
            writer.add_message(channels[topic], log_time=t, data=data, publish_time=t - 1000, sequence=sequence)
        writer.finish()


def jazzy_metadata(files: dict[str, list], topics: dict[str, str]) -> str:
    """metadata.yaml as rosbag2 Jazzy writes it (yaml-cpp's layout)."""
    lines = ["rosbag2_bagfile_information:", "  version: 9", "  storage_identifier: mcap", "  duration:",
             "    nanoseconds: 2000000000", "  starting_time:", f"    nanoseconds_since_epoch: {T0}",
             f"  message_count: {sum(len(m) for m in files.values())}", "  topics_with_message_count:"]
    for name, durability in topics.items():
        qos = JAZZY_QOS.format(durability=durability).replace("\n", "\n          ")
        lines += ["    - topic_metadata:", f"        name: {name}", "        type: std_msgs/msg/String",
                  "        serialization_format: cdr", "        offered_qos_profiles:", f"          {qos}",
                  f"        type_description_hash: {HASH}", "      message_count: 1"]
    lines += ['  compression_format: ""', '  compression_mode: ""', "  relative_file_paths:"]
    lines += [f"    - {name}" for name in files]
    lines += ["  files:"]
    for name, messages in files.items():
        lines += [f"    - path: {name}", "      starting_time:", f"        nanoseconds_since_epoch: {T0}",
                  "      duration:", "        nanoseconds: 1", f"      message_count: {len(messages)}"]
    lines += ["  custom_data: ~", "  ros_distro: jazzy", ""]
    return "\n".join(lines)


def chatter(n: int, start: int = 0, step: int = S // 10) -> list[tuple[str, int, bytes]]:
    return [("/chatter", T0 + (start + i) * step, string_msg(f"chatter {start + i}")) for i in range(n)]


def test_a_bag_recorded_by_ros2_bag_record_jazzy(tmp_path):
    """Two files (a split), zstd chunks, rosbag2's metadata.yaml: every message in log-time order across the files
    (they overlap: a message received late sits in the next file), QoS and hashes from metadata.yaml."""
    bag = tmp_path / "rosbag2_2024_05_01-10_00_00"
    bag.mkdir()
    first = chatter(20) + [("/map_info", T0 + 5, string_msg("latched map"))]
    second = chatter(20, start=20) + [("/chatter", T0 + 19 * S // 10 + 1, string_msg("late"))]
    rosbag2_file(bag / f"{bag.name}_0.mcap", first)
    rosbag2_file(bag / f"{bag.name}_1.mcap", second)
    (bag / "metadata.yaml").write_text(jazzy_metadata({f"{bag.name}_0.mcap": first, f"{bag.name}_1.mcap": second},
                                                      {"/chatter": "volatile", "/map_info": "transient_local"}))
    with BagReader(bag) as reader:
        assert reader.warnings == [] and reader.truncated_files == []
        assert [f.indexed for f in reader.files] == [True, True]
        assert reader.ros_distro == "jazzy"
        assert {n: (t.type, t.message_count, t.type_description_hash) for n, t in reader.topics.items()} == {
            "/chatter": ("std_msgs/msg/String", 41, HASH), "/map_info": ("std_msgs/msg/String", 1, HASH)}
        latched = reader.topics["/map_info"].offered_qos_profiles
        assert [(p.reliability, p.durability, p.deadline_ns) for p in latched] == \
            [("reliable", "transient_local", INFINITE_NS)]
        assert reader.topics["/chatter"].schema.text == DEFINITIONS.get("std_msgs/msg/String").text
        messages = list(reader.messages())
        assert [m.log_time for m in messages] == sorted(m.log_time for m in messages)
        expected = sorted(first + second, key=lambda m: m[1])
        assert [(m.topic, m.log_time, m.data) for m in messages] == expected
        assert messages[0].publish_time == messages[0].log_time - 1000
        assert reader.start_ns == T0 and reader.message_count == 42
        # A topic filter and a start time, as --topics and --start-offset use them.
        later = list(reader.messages(["/chatter"], start_ns=T0 + 3 * S))
        assert [m.data for m in later] == [string_msg(f"chatter {i}") for i in range(30, 40)]


def test_a_humble_bag_with_integer_policies(tmp_path):
    """Metadata version 5: offered_qos_profiles is a YAML string with rmw's enum values, and Foxy's Fast-RTPS
    "infinite" durations; the reader takes metadata.yaml's description."""
    bag = tmp_path / "humble"
    bag.mkdir()
    rosbag2_file(bag / "humble_0.mcap", chatter(3))
    qos = ("- history: 3\n  depth: 0\n  reliability: 2\n  durability: 2\n  deadline:\n    sec: 2147483647\n"
           "    nsec: 4294967295\n  lifespan:\n    sec: 2147483647\n    nsec: 4294967295\n  liveliness: 1\n"
           "  liveliness_lease_duration:\n    sec: 2147483647\n    nsec: 4294967295\n"
           "  avoid_ros_namespace_conventions: false")
    (bag / "metadata.yaml").write_text(yaml.safe_dump({"rosbag2_bagfile_information": {
        "version": 5, "storage_identifier": "mcap", "relative_file_paths": ["humble_0.mcap"],
        "topics_with_message_count": [{"topic_metadata": {"name": "/chatter", "type": "std_msgs/msg/String",
                                                          "serialization_format": "cdr",
                                                          "offered_qos_profiles": qos}, "message_count": 3}],
        "compression_format": "", "compression_mode": ""}}))
    with BagReader(bag) as reader:
        (profile,) = reader.topics["/chatter"].offered_qos_profiles
        assert (profile.history, profile.reliability, profile.durability, profile.liveliness) == \
            ("unknown", "best_effort", "volatile", "automatic")
        assert profile.deadline_ns == profile.lifespan_ns == INFINITE_NS
        assert reader.topics["/chatter"].type_description_hash == ""
        assert [m.data for m in reader.messages()] == [string_msg(f"chatter {i}") for i in range(3)]


def writer_bag(folder: Path, count: int = 30, chunk_bytes: int = 300, compression: str = "zstd") -> list[bytes]:
    bag = BagWriter(folder, compression=compression, chunk_bytes=chunk_bytes)
    bag.add_topic(TopicMetadata("/chatter", "std_msgs/msg/String"), DEFINITIONS.get("std_msgs/msg/String"))
    payloads = [string_msg(f"message {i:03d} " + "x" * (i % 7)) for i in range(count)]
    for i, data in enumerate(payloads):
        bag.write("/chatter", data, T0 + i * S // 100)
    bag.close()
    return payloads


def test_a_folder_without_metadata_a_lone_file_and_metadata_yaml_itself(tmp_path):
    payloads = writer_bag(tmp_path / "run")
    for path in (tmp_path / "run" / "metadata.yaml", tmp_path / "run" / "run_0.mcap"):
        with BagReader(path) as reader:
            assert [m.data for m in reader.messages()] == payloads
    (tmp_path / "run" / "metadata.yaml").unlink()
    with BagReader(tmp_path / "run") as reader:  # a recording killed before it wrote metadata.yaml
        assert reader.metadata is None and [f.name for f in reader.files] == ["run_0.mcap"]
        assert reader.topics["/chatter"].type == "std_msgs/msg/String"
        assert [m.data for m in reader.messages()] == payloads


def test_files_without_metadata_are_taken_in_numeric_order(tmp_path):
    bag = tmp_path / "many"
    bag.mkdir()
    for i in (0, 2, 10, 1):
        rosbag2_file(bag / f"many_{i}.mcap", chatter(1, start=i))
    with BagReader(bag) as reader:
        assert [f.name for f in reader.files] == ["many_0.mcap", "many_1.mcap", "many_2.mcap", "many_10.mcap"]


def test_an_unchunked_file_is_read_in_log_time_order(tmp_path):
    """rosbag2's `fastwrite` preset writes no chunks (so no chunk index): read from the start, sorted."""
    shuffled = [chatter(10)[i] for i in (0, 2, 1, 3, 5, 4, 6, 7, 9, 8)]
    rosbag2_file(tmp_path / "fast.mcap", shuffled, use_chunking=False)
    with BagReader(tmp_path / "fast.mcap") as reader:
        (file,) = reader.files
        assert not file.indexed and not file.truncated and "no usable summary" in file.problem
        assert reader.warnings == []
        assert [m.data for m in reader.messages()] == [m[2] for m in chatter(10)]


def test_message_and_file_compression(tmp_path):
    """rosbag2's --compression-mode message (each payload a zstd frame) and file (.mcap.zstd)."""
    plain = chatter(5)
    for mode in ("message", "file"):
        bag = tmp_path / mode
        bag.mkdir()
        stored = [(t, ns, zstandard.ZstdCompressor().compress(d)) for t, ns, d in plain] if mode == "message" \
            else plain
        rosbag2_file(bag / f"{mode}_0.mcap", stored)
        name = f"{mode}_0.mcap"
        if mode == "file":
            data = (bag / name).read_bytes()
            (bag / name).unlink()
            name += ".zstd"
            (bag / name).write_bytes(zstandard.ZstdCompressor().compress(data))
        meta = yaml.safe_load(jazzy_metadata({name: plain}, {"/chatter": "volatile"}))
        meta["rosbag2_bagfile_information"].update(compression_format="zstd", compression_mode=mode.upper())
        (bag / "metadata.yaml").write_text(yaml.safe_dump(meta))
        with BagReader(bag) as reader:
            assert [m.data for m in reader.messages()] == [d for _, _, d in plain], mode
            temporary = reader.files[0].path
        assert mode == "message" or not temporary.exists()  # the decompressed copy is gone after close


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_every_cut_of_a_file_yields_exactly_its_complete_chunks(tmp_path, compression):
    """A recorder killed mid-write leaves a prefix of the file. At every cut, the reader returns the messages of
    each chunk that ends before the cut, in order, and nothing of the chunk the cut goes through."""
    payloads = writer_bag(tmp_path / "full", count=40, chunk_bytes=250, compression=compression)
    full = (tmp_path / "full" / "full_0.mcap").read_bytes()
    with open(tmp_path / "full" / "full_0.mcap", "rb") as f:
        chunks = make_reader(f).get_summary().chunk_indexes
    assert len(chunks) >= 6
    times = [T0 + i * S // 100 for i in range(len(payloads))]
    cuts = sorted({*range(0, len(full), 53), *(c.chunk_start_offset + c.chunk_length + d for c in chunks
                                               for d in (-1, 0, 1)), len(full) - 1, len(full)})
    for cut in cuts:
        path = tmp_path / "cut.mcap"
        path.write_bytes(full[:cut])
        complete = [c for c in chunks if c.chunk_start_offset + c.chunk_length <= cut]
        last = max((c.message_end_time for c in complete), default=-1)
        expected = [p for p, t in zip(payloads, times, strict=True) if t <= last]
        with BagReader(path) as reader:
            got = [m.data for m in reader.messages()]
            assert got == expected, f"cut at {cut} of {len(full)}"
            (file,) = reader.files
            assert file.truncated == (cut < len(full)), cut
            if cut < len(full) and cut >= 8:
                assert file.chunks == len(complete), cut
                assert any("is truncated" in w for w in reader.warnings)


def test_a_zero_filled_tail_ends_the_readable_part(tmp_path):
    """A file system that lost the last pages after a crash leaves zeros: the chunks before them are kept."""
    payloads = writer_bag(tmp_path / "z", count=40, chunk_bytes=250, compression="none")
    data = (tmp_path / "z" / "z_0.mcap").read_bytes()
    with open(tmp_path / "z" / "z_0.mcap", "rb") as f:
        chunks = make_reader(f).get_summary().chunk_indexes
    keep = chunks[2].chunk_start_offset + chunks[2].chunk_length
    (tmp_path / "zeros.mcap").write_bytes(data[:keep + 5] + bytes(4000))
    with BagReader(tmp_path / "zeros.mcap") as reader:
        got = [m.data for m in reader.messages()]
    assert got == payloads[:len(got)] and len(got) >= 3 and got[-1] == payloads[len(got) - 1]


@pytest.mark.parametrize("case, message", [
    ("missing", "cannot read the bag '{path}': no such file or folder"),
    ("text", "cannot read the bag '{path}': it is not an MCAP file (it does not start with the MCAP magic bytes)"),
    ("empty-folder", "cannot read the bag '{path}': not a bag: no metadata.yaml and no .mcap file in the folder"),
    ("sqlite", "cannot read the bag '{path}': its storage is 'sqlite3'; only MCAP bags are read"),
    ("lost-file", "cannot read the bag '{path}': metadata.yaml lists lost_0.mcap, which is missing"),
    ("not-yaml", "cannot read the bag '{path}': {path}/metadata.yaml is not YAML"),
    ("not-rosbag2", "cannot read the bag '{path}': {path}/metadata.yaml is not rosbag2 metadata"),
    ("lz4-files", "cannot read the bag '{path}': compressed with 'lz4'; only zstd is read"),
    ("foreign-file", "cannot read the bag '{path}': {path}/x_0.mcap is not an MCAP file"),
])
def test_bad_bags_are_named_with_their_cause(tmp_path, case, message):
    path = tmp_path / case
    info = {"version": 9, "storage_identifier": "mcap", "relative_file_paths": ["lost_0.mcap"]}
    if case == "text":
        path.write_text("not a bag\n")
    elif case == "empty-folder":
        path.mkdir()
        (path / "notes.txt").write_text("x")
    elif case in ("sqlite", "lost-file", "lz4-files"):
        path.mkdir()
        info.update({"sqlite": {"storage_identifier": "sqlite3"}, "lost-file": {},
                     "lz4-files": {"compression_format": "lz4", "compression_mode": "FILE"}}[case])
        (path / "metadata.yaml").write_text(yaml.safe_dump({"rosbag2_bagfile_information": info}))
    elif case in ("not-yaml", "not-rosbag2"):
        path.mkdir()
        (path / "metadata.yaml").write_text("a: [\n" if case == "not-yaml" else "a: 1\n")
    elif case == "foreign-file":
        path.mkdir()
        (path / "x_0.mcap").write_bytes(b"SQLite format 3\x00")
    with pytest.raises(BagReadError) as raised:
        BagReader(path)
    assert str(raised.value).startswith(message.format(path=path)), str(raised.value)


def test_offered_qos_profiles_in_every_form():
    jazzy = parse_profiles(JAZZY_QOS.format(durability="transient_local"))
    assert jazzy == parse_profiles(yaml.safe_load(JAZZY_QOS.format(durability="transient_local")))
    assert jazzy == [QosProfile(history="unknown", depth=0, reliability="reliable", durability="transient_local")]
    assert parse_profiles("") == parse_profiles(None) == parse_profiles("[]") == []
    assert parse_profiles("- {history: 1, depth: 5, reliability: 1, durability: 1, liveliness: 1}")[0].history == \
        "keep_last"
    with pytest.raises(ValueError, match="reliability"):
        parse_profiles("- {reliability: sometimes, durability: volatile}")
    with pytest.raises(ValueError, match="depth"):
        parse_profiles("- {reliability: reliable, durability: volatile, depth: lots}")


def test_playback_qos_follows_ros2_bag_play():
    latched = QosProfile(history="keep_last", depth=1, reliability="reliable", durability="transient_local")
    offered, warning = playback_qos([latched, QosProfile(history="keep_all", reliability="reliable",
                                                         durability="transient_local")])
    assert warning is None  # history differs: it does not decide compatibility
    assert (offered.history, offered.depth, offered.reliability, offered.durability) == \
        ("keep_last", 10, "reliable", "transient_local")
    sensor = QosProfile(reliability="best_effort", durability="volatile")
    assert playback_qos([sensor])[0].reliability == "best_effort"
    mixed, warning = playback_qos([latched, sensor])
    assert mixed == PLAYBACK_DEFAULT and "different QoS profiles" in warning
    assert playback_qos([]) == (PLAYBACK_DEFAULT, None)


def test_a_copied_bag_folder_reads_the_same(tmp_path):
    """Paths in metadata.yaml are relative: a bag moved elsewhere still reads."""
    payloads = writer_bag(tmp_path / "orig")
    shutil.copytree(tmp_path / "orig", tmp_path / "moved" / "orig")
    with BagReader(tmp_path / "moved" / "orig") as reader:
        assert [m.data for m in reader.messages()] == payloads
