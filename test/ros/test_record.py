"""``molmomotion record`` against a real graph: a publisher process (record_talker.py) with known messages of several
types and QoS, the recorder started through the CLI in its own process, SIGINT at the end, on an isolated domain.
The bag is then read with the ``mcap`` library's reader and decoded with ``mcap_ros2`` (neither is the writer):
every message arrived with its payload, the schemas are complete, metadata.yaml is rosbag2's and agrees with the
files. Also: a split bag, a refused bag folder, and a topic whose type has no definition being skipped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rosutil import stop, wait_until

ROOT = Path(__file__).resolve().parents[2]
TALKER = Path(__file__).with_name("record_talker.py")
TOPICS = ("/chatter", "/latched", "/camera/color/image_raw", "/tf", "/sensor", "/later")


def start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], env=env, stdout=open(log, "w"),  # noqa: SIM115
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)


def record(bag: Path, env: dict, tmp_path: Path, talker_args: list[str], *record_args: str,
           stop_signal: int = signal.SIGINT) -> tuple[str, str]:
    """Run recorder and talker until the talker has published everything; stop the recorder with ``stop_signal``
    (SIGINT: Ctrl-C; SIGTERM: what ros2 launch sends next, or `kill`); its stdout and stderr."""
    out, err = tmp_path / "recorder.out", tmp_path / "recorder.err"
    recorder = subprocess.Popen([sys.executable, "-m", "molmomotion_ros.cli", "record", str(bag), *record_args,
                                 "--discovery-interval", "0.2"], env=env, stdout=open(out, "w"),  # noqa: SIM115
                                stderr=open(err, "w"), start_new_session=True, cwd=ROOT)  # noqa: SIM115
    talker = start([str(TALKER), *talker_args], env, tmp_path / "talker.log")
    try:
        def published() -> bool:
            assert talker.poll() is None, f"talker exited: {(tmp_path / 'talker.log').read_text()}"
            assert recorder.poll() is None, f"recorder exited: {err.read_text()}"
            return "published" in (tmp_path / "talker.log").read_text()

        wait_until(published, 60, what="the talker to publish")
        os.killpg(recorder.pid, stop_signal)
        assert recorder.wait(30) == 0, f"{out.read_text()}\n{err.read_text()}"
    finally:
        stop(recorder)
        stop(talker)
    return out.read_text(), err.read_text()


def read(path: Path):
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        return reader.get_header(), reader.get_summary(), list(reader.iter_decoded_messages())


def metadata(bag: Path) -> dict:
    return yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]


def image_bytes(i: int, width: int, height: int) -> bytes:
    return bytes((7 * i + k) % 251 for k in range(3 * width * height))


def test_record_a_running_graph(ros_env, tmp_path):
    bag = tmp_path / "run1"
    stdout, stderr = record(bag, ros_env, tmp_path, ["--strings", "40", "--latched", "3", "--images", "15",
                                                     "--tf", "15", "--sensor", "5", "--later", "4"], *TOPICS)
    assert sorted(p.name for p in bag.iterdir()) == ["metadata.yaml", "run1_0.mcap"]
    header, summary, messages = read(bag / "run1_0.mcap")

    # Every message, with its payload (the latched ones were published before the recorder listened; /later's
    # publisher appeared after the recording started).
    by_topic: dict[str, list] = {}
    for _, channel, record_, decoded in messages:
        by_topic.setdefault(channel.topic, []).append((record_, decoded))
    assert [m.data for _, m in by_topic["/chatter"]] == [f"chatter {i}" for i in range(40)]
    assert [m.data for _, m in by_topic["/latched"]] == [f"latched {i}" for i in range(3)]
    assert [m.data for _, m in by_topic["/later"]] == [f"later {i}" for i in range(4)]
    images = [m for _, m in by_topic["/camera/color/image_raw"]]
    assert [(m.header.stamp.sec, m.header.frame_id, m.width, m.height, m.encoding) for m in images] == \
        [(i, "camera", 8, 6, "rgb8") for i in range(15)]
    assert all(m.data == image_bytes(i, 8, 6) for i, m in enumerate(images))
    assert [m.transforms[0].transform.translation.x for _, m in by_topic["/tf"]] == [float(i) for i in range(15)]
    assert 1 <= len(by_topic["/sensor"]) <= 5  # best effort: the recorder asked for best effort, to hear it at all
    for record_, _ in by_topic["/chatter"]:  # receive time; publish time = the source timestamp, a little earlier
        assert 0 <= record_.log_time - record_.publish_time < 5 * 10**9

    # The MCAP file as ros2 bag / Foxglove expect it.
    assert header.profile == "ros2"
    assert {i.compression for i in summary.chunk_indexes} == {"zstd"}
    schemas = {s.name: s for s in summary.schemas.values()}
    assert set(schemas) == {"std_msgs/msg/String", "sensor_msgs/msg/Image", "tf2_msgs/msg/TFMessage"}
    assert {s.encoding for s in schemas.values()} == {"ros2msg"}
    image_schema = schemas["sensor_msgs/msg/Image"].data.decode()
    assert image_schema.startswith((Path(sys.prefix) / "share/sensor_msgs/msg/Image.msg").read_text())
    assert "\n" + "=" * 80 + "\nMSG: std_msgs/Header\n" in image_schema
    assert "\n" + "=" * 80 + "\nMSG: builtin_interfaces/Time\n" in image_schema
    tf_schema = schemas["tf2_msgs/msg/TFMessage"].data.decode()
    for nested in ("geometry_msgs/TransformStamped", "geometry_msgs/Transform", "geometry_msgs/Vector3",
                   "geometry_msgs/Quaternion", "std_msgs/Header", "builtin_interfaces/Time"):
        assert tf_schema.count(f"\nMSG: {nested}\n") == 1
    channels = {c.topic: c for c in summary.channels.values()}
    assert set(channels) == set(TOPICS)
    assert {c.message_encoding for c in channels.values()} == {"cdr"}
    qos = {t: yaml.safe_load(c.metadata["offered_qos_profiles"]) for t, c in channels.items()}
    assert [(p["reliability"], p["durability"]) for p in qos["/latched"]] == [("reliable", "transient_local")]
    assert [(p["reliability"], p["durability"]) for p in qos["/sensor"]] == [("best_effort", "volatile")]
    assert all(re.fullmatch(r"RIHS01_[0-9a-f]{64}", c.metadata["topic_type_hash"]) for c in channels.values())

    # metadata.yaml: rosbag2's version 9, agreeing with the file.
    meta = metadata(bag)
    assert (meta["version"], meta["storage_identifier"], meta["compression_format"], meta["compression_mode"]) == \
        (9, "mcap", "", "")
    assert meta["relative_file_paths"] == ["run1_0.mcap"]
    assert meta["message_count"] == len(messages) == summary.statistics.message_count
    assert meta["starting_time"]["nanoseconds_since_epoch"] == summary.statistics.message_start_time
    assert meta["duration"]["nanoseconds"] == summary.statistics.message_end_time - \
        summary.statistics.message_start_time
    assert meta["files"] == [{"path": "run1_0.mcap", "starting_time": meta["starting_time"],
                              "duration": meta["duration"], "message_count": meta["message_count"]}]
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in meta["topics_with_message_count"]}
    assert counts == {topic: len(by_topic[topic]) for topic in TOPICS}
    for entry in meta["topics_with_message_count"]:
        topic = entry["topic_metadata"]
        assert topic["serialization_format"] == "cdr"
        assert topic["type"] == schemas[topic["type"]].name
        assert topic["offered_qos_profiles"] == qos[topic["name"]]
        assert topic["type_description_hash"] == channels[topic["name"]].metadata["topic_type_hash"]

    # What the command printed: each topic as it was subscribed, then the table.
    assert "/latched: std_msgs/msg/String (reliable, transient_local)" in stdout
    assert "/sensor: std_msgs/msg/String (best_effort, volatile)" in stdout
    assert re.search(r"^/chatter\s+std_msgs/msg/String\s+40\s+0\s", stdout, re.M), stdout
    assert re.search(rf"^all 6 topics\s+{len(messages)}\s+0\s", stdout, re.M), stdout
    assert re.search(r"MB written, [\d.]+ MB/min", stdout), stdout
    assert "Traceback" not in stderr, stderr


def test_a_split_recording(ros_env, tmp_path):
    bag = tmp_path / "split"
    stdout, _ = record(bag, ros_env, tmp_path, ["--images", "30", "--width", "64", "--height", "48"],
                       "/camera/color/image_raw", "/never", "--compression", "none", "--max-bag-size", "0.03",
                       stop_signal=signal.SIGTERM)
    assert "no publisher seen on /never" in stdout
    meta = metadata(bag)
    names = meta["relative_file_paths"]
    assert len(names) >= 3 and names == [f"split_{i}.mcap" for i in range(len(names))]
    assert sorted(p.name for p in bag.iterdir()) == sorted([*names, "metadata.yaml"])
    stamps = []
    for name, info in zip(names, meta["files"], strict=True):
        _, summary, messages = read(bag / name)  # each file stands alone
        assert {s.name for s in summary.schemas.values()} == {"sensor_msgs/msg/Image"}
        assert {i.compression for i in summary.chunk_indexes} == {""}
        assert info["path"] == name and info["message_count"] == len(messages)
        assert info["starting_time"]["nanoseconds_since_epoch"] == summary.statistics.message_start_time
        stamps += [m.header.stamp.sec for _, _, _, m in messages]
        assert all(m.data == image_bytes(m.header.stamp.sec, 64, 48) for _, _, _, m in messages)
    assert stamps == list(range(30))
    assert meta["message_count"] == 30


def test_a_non_empty_folder_is_refused(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "metadata.yaml").write_text("keep me\n")
    result = subprocess.run([sys.executable, "-m", "molmomotion_ros.cli", "record", str(tmp_path / "old")],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"molmomotion: error: cannot record to '{tmp_path / 'old'}': the folder is not empty (metadata.yaml); a "
        "recording never overwrites, name a new folder"]
    assert (tmp_path / "old" / "metadata.yaml").read_text() == "keep me\n"
    assert sorted(p.name for p in (tmp_path / "old").iterdir()) == ["metadata.yaml"]


def test_a_type_without_a_definition_is_skipped_and_the_rest_recorded(ros_env, tmp_path):
    """Only std_msgs' definitions are found: /image (sensor_msgs/Image) is named in a warning and skipped. A topic
    that never stops publishing (/stream) does not hold the stop up."""
    import rclpy
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from molmomotion_ros.bags import BagWriter, DefinitionSource, QueuedWriter
    from molmomotion_ros.nodes.recorder import TopicSelection
    from molmomotion_ros.nodes.recorder import record as run_recorder

    share = tmp_path / "prefix" / "share" / "std_msgs" / "msg"
    share.mkdir(parents=True)
    (share / "String.msg").write_text((Path(sys.prefix) / "share/std_msgs/msg/String.msg").read_text())
    writer = QueuedWriter(BagWriter(tmp_path / "bag"))
    warnings, reports, stop_event, streaming = [], [], threading.Event(), threading.Event()
    result = {}
    recorder = threading.Thread(target=lambda: result.update(outcome=run_recorder(
        writer, TopicSelection(frozenset({"/chatter", "/image", "/stream"})), stop_event,
        DefinitionSource([tmp_path / "prefix"]), discovery_interval_s=0.1, report=reports.append,
        warn=warnings.append)))
    rclpy.init()
    node = rclpy.create_node("talker")
    stream = node.create_publisher(String, "/stream", QoSProfile(depth=10))

    def publish_stream() -> None:
        while not streaming.is_set():
            stream.publish(String(data="on and on"))
            time.sleep(0.005)

    streamer = threading.Thread(target=publish_stream)
    try:
        chatter = node.create_publisher(String, "/chatter", QoSProfile(depth=10))
        node.create_publisher(Image, "/image", QoSProfile(depth=10))
        streamer.start()
        recorder.start()
        wait_until(lambda: chatter.get_subscription_count() > 0 and warnings, 30,
                   lambda: rclpy.spin_once(node, timeout_sec=0.05), "the recorder's subscription and warning")
        for i in range(5):
            chatter.publish(String(data=f"kept {i}"))
        assert chatter.wait_for_all_acked(rclpy.duration.Duration(seconds=10))
    finally:
        stopped = time.monotonic()
        stop_event.set()
        recorder.join(30)
        stop_s = time.monotonic() - stopped
        streaming.set()
        streamer.join()
        node.destroy_node()
        rclpy.try_shutdown()
    assert stop_s < 2.0  # the drain ends once the backlog from before the stop is taken
    summary = writer.close()
    assert len(warnings) == 1 and warnings[0].startswith(
        "not recording /image: no message definition for sensor_msgs/msg/Image: package sensor_msgs is not installed")
    assert result["outcome"].skipped.keys() == {"/image"} and result["outcome"].subscribed == {
        "/chatter": "std_msgs/msg/String", "/stream": "std_msgs/msg/String"}
    assert sorted(t.metadata.name for t in summary.topics) == ["/chatter", "/stream"]
    kept = [m.data for _, c, _, m in read(tmp_path / "bag" / "bag_0.mcap")[2] if c.topic == "/chatter"]
    assert kept == [f"kept {i}" for i in range(5)]


def test_the_default_topics_are_the_nodes_topics():
    """Every default topic with a relative name is one the package's nodes publish or read (a renamed topic in a
    node must be renamed in graph.RECORD_TOPICS too); the absolute ones are real_arm's launch defaults or tf's."""
    from molmomotion_ros.graph import RECORD_TOPICS, record_topics

    sources = "".join(p.read_text() for p in (ROOT / "molmomotion_ros" / "nodes").glob("*.py"))
    missing = [t for t in RECORD_TOPICS if not t.startswith("/") and f'"{t}"' not in sources]
    assert not missing, f"not a topic of any node: {missing}"
    assert {"/tf", "/tf_static", "/diagnostics", "/camera/camera/color/image_raw"} <= set(record_topics())
    assert "/robot1/forecast/hypotheses" in record_topics("robot1") and "/tf" in record_topics("robot1")


@pytest.mark.parametrize("name", ["9lives", "a b", "/x//y", "/~x"])
def test_bad_topic_names_are_refused(name, tmp_path):
    from molmomotion_ros.cli.common import UsageError
    from molmomotion_ros.cli.record import topic_names

    with pytest.raises(UsageError, match="not a valid ROS 2 topic name"):
        topic_names([name], "/")
    assert topic_names(["chatter", "/tf", "chatter"], "/ns") == ["/ns/chatter", "/tf"]


def test_a_full_disk_ends_the_recording_with_one_line_and_keeps_what_was_written(ros_env, tmp_path):
    """The recorder's files may not grow past 2.5 MB (RLIMIT_FSIZE: writes then fail as on a full disk, EFBIG):
    the recorder stops by itself with one line naming the file and the cause, exit status 2, and the bag holds
    every message of its complete chunks, intact."""
    import resource

    from molmomotion_ros.bags import BagReader

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (2_500_000, 2_500_000))  # Python ignores SIGXFSZ: write() fails

    bag = tmp_path / "bag"
    err = tmp_path / "recorder.err"
    recorder = subprocess.Popen([sys.executable, "-m", "molmomotion_ros.cli", "record", str(bag),
                                 "/camera/color/image_raw", "--compression", "none", "--discovery-interval", "0.2"],
                                env=ros_env,
                                stdout=open(tmp_path / "recorder.out", "w"), stderr=open(err, "w"),  # noqa: SIM115
                                start_new_session=True, cwd=ROOT, preexec_fn=limit_file_size)
    talker = start([str(TALKER), "--stream", "2000", "--stream-hz", "200", "--width", "64", "--height", "48"],
                   ros_env, tmp_path / "talker.log")
    try:
        status = recorder.wait(120)
    finally:
        stop(recorder)
        stop(talker)
    lines = [line for line in err.read_text().splitlines() if "error" in line]
    assert status == 2, err.read_text()
    assert len(lines) == 1 and str(bag) in lines[0] and "File too large" in lines[0], err.read_text()
    with BagReader(bag) as reader:
        messages = list(reader.messages())
    assert len(messages) >= 200  # two whole 1 MB chunks of 9 kB images fit under the limit
    for message in messages:
        assert message.data.endswith(image_bytes_tail(message))


def image_bytes_tail(message) -> bytes:
    """The last bytes of the image the talker sent with this stamp (its payload is image_bytes(stamp))."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image

    image = deserialize_message(message.data, Image)
    return bytes(image_bytes(image.header.stamp.sec, 64, 48)[-32:])
