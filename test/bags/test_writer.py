"""The rosbag2/MCAP bag writer without ROS (bags/writer.py, bags/qos.py, bags/recording.py), read back with the
``mcap`` library's reader and ``mcap_ros2``'s decoder: file layout, schemas and channels, metadata.yaml in
rosbag2's version 9 format, splits by size and by duration, QoS records, the bag folder checks and the queue's
drop accounting."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from mcap.reader import make_reader
from mcap_ros2._dynamic import serialize_dynamic
from mcap_ros2.decoder import DecoderFactory

from molmomotion_ros.bags import (
    BagFolderError,
    BagWriter,
    DefinitionSource,
    QosProfile,
    QueuedWriter,
    TopicMetadata,
    subscription_qos,
)
from molmomotion_ros.bags.qos import incompatible_offer, profiles_yaml
from molmomotion_ros.bags.writer import NO_TIME

DEFINITIONS = DefinitionSource([Path(sys.prefix)])
S = 1_000_000_000
T0 = 1_700_000_000 * S
LATCHED = QosProfile(reliability="reliable", durability="transient_local")
SENSOR = QosProfile(reliability="best_effort", durability="volatile")
HASH = "RIHS01_" + "ab" * 32


def encoder(type_name: str):
    return serialize_dynamic(type_name, DEFINITIONS.get(type_name).text)[type_name]


def string_msg(text: str) -> bytes:
    return encoder("std_msgs/msg/String")({"data": text})


def image_msg(i: int, size: int = 12) -> bytes:
    return encoder("sensor_msgs/msg/Image")({"header": {"stamp": {"sec": i, "nanosec": 0}, "frame_id": "cam"},
                                             "height": 1, "width": size, "encoding": "mono8", "is_bigendian": 0,
                                             "step": size, "data": bytes((i + k) % 256 for k in range(size))})


def add_topics(bag: BagWriter) -> None:
    bag.add_topic(TopicMetadata("/chatter", "std_msgs/msg/String", [LATCHED], HASH),
                  DEFINITIONS.get("std_msgs/msg/String"))
    bag.add_topic(TopicMetadata("/camera/image", "sensor_msgs/msg/Image", [SENSOR, SENSOR]),
                  DEFINITIONS.get("sensor_msgs/msg/Image"))


def read(path: Path):
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        return reader.get_header(), reader.get_summary(), list(reader.iter_decoded_messages())


def test_a_bag_reads_back_with_the_mcap_reader(tmp_path):
    bag = BagWriter(tmp_path / "run", ros_distro="jazzy")
    add_topics(bag)
    for i in range(5):
        bag.write("/chatter", string_msg(f"hello {i}"), T0 + i * S, T0 + i * S - 1000)
        bag.write("/camera/image", image_msg(i), T0 + i * S + 500)
    summary = bag.close()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["metadata.yaml", "run_0.mcap"]
    assert summary.message_count == 10 and summary.size_bytes == (tmp_path / "run" / "run_0.mcap").stat().st_size

    header, info, messages = read(tmp_path / "run" / "run_0.mcap")
    assert header.profile == "ros2"
    assert {s.name: s.encoding for s in info.schemas.values()} == {"std_msgs/msg/String": "ros2msg",
                                                                   "sensor_msgs/msg/Image": "ros2msg"}
    image_schema = next(s for s in info.schemas.values() if s.name == "sensor_msgs/msg/Image")
    assert image_schema.data.decode() == DEFINITIONS.get("sensor_msgs/msg/Image").text
    channels = {c.topic: c for c in info.channels.values()}
    assert {c.message_encoding for c in channels.values()} == {"cdr"}
    assert channels["/chatter"].metadata["topic_type_hash"] == HASH
    assert channels["/camera/image"].metadata["topic_type_hash"] == ""
    offered = yaml.safe_load(channels["/camera/image"].metadata["offered_qos_profiles"])
    assert offered == [SENSOR.to_yaml_dict()] * 2 and offered[0]["reliability"] == "best_effort"
    assert {i.compression for i in info.chunk_indexes} == {"zstd"}
    assert info.statistics.message_count == 10
    assert [m.data for _, c, _, m in messages if c.topic == "/chatter"] == [f"hello {i}" for i in range(5)]
    images = [m for _, c, _, m in messages if c.topic == "/camera/image"]
    assert [m.header.stamp.sec for m in images] == list(range(5))
    assert images[3].data == bytes((3 + k) % 256 for k in range(12))
    chatter = [r for _, c, r, _ in messages if c.topic == "/chatter"]
    assert [(r.log_time, r.publish_time) for r in chatter[:2]] == [(T0, T0 - 1000), (T0 + S, T0 + S - 1000)]
    camera = [r for _, c, r, _ in messages if c.topic == "/camera/image"]
    assert camera[0].publish_time == camera[0].log_time == T0 + 500  # no source time: the receive time
    # ros2 bag reads a lone MCAP file's metadata from its "rosbag2" record.
    with open(tmp_path / "run" / "run_0.mcap", "rb") as f:
        records = list(make_reader(f).iter_metadata())
    assert [r.name for r in records] == ["rosbag2", "rosbag2"]
    assert yaml.safe_load(records[-1].metadata["serialized_metadata"])["message_count"] == 10


def test_metadata_yaml_is_rosbag2_version_9(tmp_path):
    bag = BagWriter(tmp_path / "run", compression="none", ros_distro="jazzy")
    add_topics(bag)
    bag.write("/chatter", string_msg("a"), T0 + 2 * S)
    bag.write("/chatter", string_msg("b"), T0 + S)  # out of order: the start is the earliest
    bag.write("/chatter", string_msg("c"), T0 + 4 * S)
    bag.close()
    text = (tmp_path / "run" / "metadata.yaml").read_text()
    assert text.startswith("rosbag2_bagfile_information:\n  version: 9\n  storage_identifier: mcap\n")
    assert yaml.safe_load(text) == {"rosbag2_bagfile_information": {
        "version": 9,
        "storage_identifier": "mcap",
        "duration": {"nanoseconds": 3 * S},  # from the earliest to the latest receive time
        "starting_time": {"nanoseconds_since_epoch": T0 + S},
        "message_count": 3,
        "topics_with_message_count": [
            {"topic_metadata": {"name": "/chatter", "type": "std_msgs/msg/String", "serialization_format": "cdr",
                                "offered_qos_profiles": [{
                                    "history": "unknown", "depth": 0, "reliability": "reliable",
                                    "durability": "transient_local",
                                    "deadline": {"sec": 9223372036, "nsec": 854775807},
                                    "lifespan": {"sec": 9223372036, "nsec": 854775807},
                                    "liveliness": "automatic",
                                    "liveliness_lease_duration": {"sec": 9223372036, "nsec": 854775807},
                                    "avoid_ros_namespace_conventions": False}],
                                "type_description_hash": HASH},
             "message_count": 3},
            {"topic_metadata": {"name": "/camera/image", "type": "sensor_msgs/msg/Image",
                                "serialization_format": "cdr",
                                "offered_qos_profiles": [SENSOR.to_yaml_dict(), SENSOR.to_yaml_dict()],
                                "type_description_hash": ""},
             "message_count": 0}],
        "compression_format": "",
        "compression_mode": "",
        "relative_file_paths": ["run_0.mcap"],
        "files": [{"path": "run_0.mcap", "starting_time": {"nanoseconds_since_epoch": T0 + S},
                   "duration": {"nanoseconds": 3 * S}, "message_count": 3}],
        "custom_data": None,
        "ros_distro": "jazzy"}}


def test_an_empty_bag_is_finished_and_readable(tmp_path):
    bag = BagWriter(tmp_path / "empty")
    add_topics(bag)
    summary = bag.close()
    meta = yaml.safe_load((tmp_path / "empty" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["message_count"] == 0 and meta["starting_time"]["nanoseconds_since_epoch"] == NO_TIME
    _, info, messages = read(tmp_path / "empty" / "empty_0.mcap")
    assert messages == [] and len(info.channels) == 2 and summary.message_count == 0


def test_split_by_duration_follows_rosbag2(tmp_path):
    """A message more than max_bag_duration after its file's first starts the next file (10 s → 3, 3, 3, 2)."""
    bag = BagWriter(tmp_path / "long", max_bag_duration_s=1.0)
    add_topics(bag)
    times = [T0 + k * S // 2 for k in range(11)]  # 0, 0.5, ... 5 s
    for i, t in enumerate(times):
        bag.write("/chatter", string_msg(str(i)), t)
    summary = bag.close()
    meta = yaml.safe_load((tmp_path / "long" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    names = [f"long_{i}.mcap" for i in range(4)]
    assert meta["relative_file_paths"] == names == [f.path for f in summary.files]
    assert [f["message_count"] for f in meta["files"]] == [3, 3, 3, 2]
    assert [f["starting_time"]["nanoseconds_since_epoch"] for f in meta["files"]] == [times[0], times[3], times[6],
                                                                                       times[9]]
    assert [f["duration"]["nanoseconds"] for f in meta["files"]] == [S, S, S, S // 2]
    decoded = []
    for name in names:  # every file stands alone: its own schemas and channels, also for a topic without messages
        _, info, messages = read(tmp_path / "long" / name)
        assert {c.topic for c in info.channels.values()} == {"/chatter", "/camera/image"}
        assert {s.name for s in info.schemas.values()} == {"std_msgs/msg/String", "sensor_msgs/msg/Image"}
        decoded += [m.data for _, _, _, m in messages]
    assert decoded == [str(i) for i in range(11)]


def test_split_by_size(tmp_path):
    bag = BagWriter(tmp_path / "big", compression="none", max_bag_size_bytes=30_000)
    add_topics(bag)
    for i in range(60):
        bag.write("/camera/image", image_msg(i, size=2000), T0 + i * 1000)
    summary = bag.close()
    assert len(summary.files) >= 3
    assert sum(f.message_count for f in summary.files) == 60
    for f in summary.files:
        assert f.size_bytes == (tmp_path / "big" / f.path).stat().st_size
        _, info, messages = read(tmp_path / "big" / f.path)
        if f is not summary.files[-1]:  # ended once the limit was reached: over it by the open chunk (a quarter of
            # the limit) and one message at most, before the summary section
            data_end = max(i.chunk_start_offset + i.chunk_length for i in info.chunk_indexes)
            assert 30_000 <= data_end <= 30_000 + bag.chunk_bytes + 2500
        assert len(messages) == f.message_count == info.statistics.message_count
    stamps = [m.header.stamp.sec for f in summary.files for _, _, _, m in read(tmp_path / "big" / f.path)[2]]
    assert stamps == list(range(60))


def test_bag_folder_checks(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.mcap").write_bytes(b"x")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(BagFolderError, match=r"cannot record to '.*full': the folder is not empty \(old\.mcap\)"):
        BagWriter(tmp_path / "full")
    with pytest.raises(BagFolderError, match="it is a file"):
        BagWriter(tmp_path / "a-file")
    with pytest.raises(BagFolderError, match=r"a-file/bag'"):
        BagWriter(tmp_path / "a-file" / "bag")
    assert (tmp_path / "full" / "old.mcap").read_bytes() == b"x"
    (tmp_path / "empty").mkdir()
    BagWriter(tmp_path / "empty").close()  # an empty folder is fine
    assert (tmp_path / "empty" / "empty_0.mcap").exists()


def test_qos_profiles_as_rosbag2_writes_them():
    assert profiles_yaml([LATCHED]) == (
        "- history: unknown\n  depth: 0\n  reliability: reliable\n  durability: transient_local\n"
        "  deadline:\n    sec: 9223372036\n    nsec: 854775807\n  lifespan:\n    sec: 9223372036\n"
        "    nsec: 854775807\n  liveliness: automatic\n  liveliness_lease_duration:\n    sec: 9223372036\n"
        "    nsec: 854775807\n  avoid_ros_namespace_conventions: false")
    # rmw's enum values (what the graph reports) → rmw's names
    assert QosProfile.from_rmw(1, 7, 2, 1, 1_500_000_000, 0, 3, 10, True).to_yaml_dict() == {
        "history": "keep_last", "depth": 7, "reliability": "best_effort", "durability": "transient_local",
        "deadline": {"sec": 1, "nsec": 500_000_000}, "lifespan": {"sec": 0, "nsec": 0},
        "liveliness": "manual_by_topic", "liveliness_lease_duration": {"sec": 0, "nsec": 10},
        "avoid_ros_namespace_conventions": True}


def test_subscription_qos_matches_every_publisher():
    assert subscription_qos([LATCHED, LATCHED]) == subscription_qos([LATCHED])
    assert subscription_qos([LATCHED]).reliable and subscription_qos([LATCHED]).transient_local
    mixed = subscription_qos([LATCHED, SENSOR])
    assert not mixed.reliable and not mixed.transient_local and mixed.mixed == ("reliable", "transient_local")
    assert incompatible_offer(subscription_qos([LATCHED]), SENSOR) is not None
    assert incompatible_offer(mixed, LATCHED) is None


def test_the_queue_counts_every_drop(tmp_path):
    bag = BagWriter(tmp_path / "q")
    add_topics(bag)
    writer = QueuedWriter(bag, max_pending_bytes=200)
    assert writer.write("/chatter", string_msg("fits"), T0)
    assert not writer.write("/camera/image", image_msg(0, size=500), T0)  # over the queue's bound
    summary = writer.close()
    assert not writer.write("/chatter", string_msg("late"), T0)
    assert summary.message_count == 1 and writer.error is None
    assert writer.received == {"/chatter": 2, "/camera/image": 1}
    assert writer.dropped == {"/chatter": 1, "/camera/image": 1}
    assert "queue was full" in next(iter(writer.drop_reasons["/camera/image"]))
    assert "after the recording stopped" in next(iter(writer.drop_reasons["/chatter"]))


def test_a_failed_write_keeps_what_was_written(tmp_path):
    bag = BagWriter(tmp_path / "f")
    add_topics(bag)
    writer = QueuedWriter(bag)
    writer.write("/chatter", string_msg("kept"), T0)
    writer.write("/nowhere", b"\x00\x01\x00\x00", T0)  # never added: the writer fails here
    writer.write("/chatter", string_msg("after"), T0 + 1)
    summary = writer.close()
    assert "/nowhere was not added" in str(writer.error)
    assert summary.message_count == 1 and writer.dropped == {"/nowhere": 1, "/chatter": 1}
    assert [m.data for _, _, _, m in read(tmp_path / "f" / "f_0.mcap")[2]] == ["kept"]
    assert (tmp_path / "f" / "metadata.yaml").exists()
