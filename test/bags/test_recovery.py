"""Recovery of a truncated bag (bags/recovery.py), without ROS: a split recording whose last file was cut off and
whose metadata.yaml was never written (what a SIGKILLed recorder leaves) becomes a complete bag that the ``mcap``
library's indexed reader opens, with every message of the complete chunks, the bag's own schemas and QoS records,
one file per source file, and the source untouched."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
import yaml
from mcap.reader import make_reader

from molmomotion_ros.bags import (
    BagFolderError,
    BagReader,
    BagWriter,
    DefinitionSource,
    MessageDefinition,
    QosProfile,
    TopicMetadata,
    default_output,
    recover,
)

DEFINITIONS = DefinitionSource([Path(sys.prefix)])
S = 1_000_000_000
T0 = 1_700_000_000 * S
LATCHED = QosProfile(reliability="reliable", durability="transient_local")
# A type nobody has installed: recovery must keep the bag's own schema for it.
THING = MessageDefinition("my_msgs/msg/Thing", "ros2msg", "uint8[] blob\nstring label\n")


def killed_recording(folder: Path) -> list[tuple[str, int, bytes]]:
    """A split bag whose last file is cut inside a chunk, no metadata.yaml; what was written, in order."""
    bag = BagWriter(folder, compression="zstd", chunk_bytes=600, max_bag_size_bytes=4000)
    bag.add_topic(TopicMetadata("/thing", THING.type_name, [LATCHED], "RIHS01_" + "ee" * 32), THING)
    bag.add_topic(TopicMetadata("/chatter", "std_msgs/msg/String"), DEFINITIONS.get("std_msgs/msg/String"))
    written = []
    for i in range(120):
        topic = "/thing" if i % 3 == 0 else "/chatter"
        data = bytes([0, 1, 0, 0]) + i.to_bytes(4, "little") * (1 + i % 9)
        bag.write(topic, data, T0 + i * S // 50, T0 + i * S // 50 - 7)
        written.append((topic, T0 + i * S // 50, data))
    summary = bag.close()
    assert len(summary.files) >= 3
    (folder / "metadata.yaml").unlink()
    last = folder / summary.files[-1].path
    with open(last, "rb") as f:
        chunk = make_reader(f).get_summary().chunk_indexes[1]
    last.write_bytes(last.read_bytes()[:chunk.chunk_start_offset + chunk.chunk_length // 2])  # cut inside chunk 2
    return written


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_a_killed_recording_is_recovered(tmp_path):
    source = tmp_path / "run1"
    written = killed_recording(source)
    before = digest(source)
    with BagReader(source) as reader:
        (truncated,) = reader.truncated_files
        assert truncated.chunks == 1 and reader.metadata is None
        readable = [(m.topic, m.log_time, m.data) for m in reader.messages()]
        report = recover(reader, default_output(source))
    assert default_output(source) == tmp_path / "run1_recovered"
    assert digest(source) == before  # the source is never written to
    # Everything up to the last complete chunk: all of the finished files, one chunk of the cut one.
    assert readable == written[:len(readable)] and len(written) - 40 < len(readable) < len(written)
    out = tmp_path / "run1_recovered"
    names = [f.path for f in report.summary.files]
    assert names == [f"run1_recovered_{i}.mcap" for i in range(len(reader.files))]  # the split kept
    recovered = []
    for name in names:
        with open(out / name, "rb") as f:  # the mcap library's indexed reader: a summary and a chunk index
            mcap = make_reader(f)
            summary = mcap.get_summary()
            assert summary is not None and summary.chunk_indexes and summary.statistics is not None
            assert {s.name: s.data.decode() for s in summary.schemas.values()}["my_msgs/msg/Thing"] == THING.text
            channels = {c.topic: c for c in summary.channels.values()}
            assert yaml.safe_load(channels["/thing"].metadata["offered_qos_profiles"])[0]["durability"] == \
                "transient_local"
            assert channels["/thing"].metadata["topic_type_hash"] == "RIHS01_" + "ee" * 32
            messages = list(mcap.iter_messages())
            recovered += [(c.topic, m.log_time, m.data) for _, c, m in messages]
            assert all(m.publish_time == m.log_time - 7 for _, _, m in messages)
    assert recovered == readable
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["message_count"] == len(readable) and meta["relative_file_paths"] == names
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in meta["topics_with_message_count"]}
    assert counts == {t: sum(1 for m in readable if m[0] == t) for t in ("/thing", "/chatter")}
    with BagReader(out) as again:  # the recovered bag reads through its index, nothing truncated
        assert all(f.indexed for f in again.files) and again.warnings == []


def test_recovery_never_writes_into_a_folder_that_holds_something(tmp_path):
    killed_recording(tmp_path / "run")
    (tmp_path / "run_recovered").mkdir()
    (tmp_path / "run_recovered" / "keep.txt").write_text("mine")
    with BagReader(tmp_path / "run") as reader, pytest.raises(
            BagFolderError, match="cannot write the recovered bag to .*run_recovered': the folder is not empty"):
        recover(reader, default_output(tmp_path / "run"))
    assert (tmp_path / "run_recovered" / "keep.txt").read_text() == "mine"


def test_a_lone_file_recovers_into_a_bag_folder(tmp_path):
    killed_recording(tmp_path / "lone")
    cut = sorted((tmp_path / "lone").glob("*.mcap"))[-1]
    assert default_output(cut) == tmp_path / "lone" / f"{cut.stem}_recovered"
    with BagReader(cut) as reader:
        report = recover(reader, tmp_path / "fixed")
    assert report.summary.message_count == reader.message_count > 0
    assert (tmp_path / "fixed" / "metadata.yaml").exists() and (tmp_path / "fixed" / "fixed_0.mcap").exists()
