"""``molmomotion play`` and ``molmomotion recover`` against a real graph, on an isolated domain.

Playback: a bag written with the bag writer (payloads serialized by rclpy) is played by the CLI in its own process
and received by another (play_probe.py): every payload arrives byte for byte and in order, under its remapped name; a
transient-local topic reaches a subscriber created mid-playback; a best-effort topic is offered best effort (a
reliable request hears nothing); --rate shortens the timing; /clock carries the bag's time, never going back; a
topic of a type not installed here is skipped with a warning, one recorded with another definition of its type (type
hash) is played with one. Recovery: the recorder (``molmomotion record``) is killed with SIGKILL while a talker
streams images; ``molmomotion recover`` makes a bag that the ``mcap`` library's indexed reader opens and that holds
every message of every complete chunk, which are the talker's first messages, each intact. Bad input: one line naming
the bag and the cause, exit status 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mcap.reader import make_reader
from mcap.records import Message
from mcap.stream_reader import StreamReader
from mcap_ros2.decoder import DecoderFactory
from record_talker import image_bytes
from rosutil import stop, wait_until

ROOT = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("play_probe.py")
TALKER = Path(__file__).with_name("record_talker.py")
S = 1_000_000_000
T0 = 1_700_000_000 * S


def cli(*args: str, env: dict | None = None, timeout_s: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "molmomotion_ros.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout_s, cwd=ROOT)


def start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], env=env, stdout=open(log, "w"),  # noqa: SIM115
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)


def write_bag(folder: Path) -> dict[str, list[bytes]]:
    """/latched (2, transient local, at the start), /chatter (30, every 0.1 s), /image (6, every 0.5 s), /sensor (5,
    best effort), /weird (a type nobody has); the payloads per topic."""
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from molmomotion_ros.bags import BagWriter, DefinitionSource, MessageDefinition, QosProfile, TopicMetadata

    definitions = DefinitionSource()
    reliable = QosProfile(history="keep_last", depth=10, reliability="reliable", durability="volatile")
    latched = QosProfile(history="keep_last", depth=1, reliability="reliable", durability="transient_local")
    sensor = QosProfile(history="keep_last", depth=5, reliability="best_effort", durability="volatile")
    bag = BagWriter(folder)
    for name, type_name, qos in (("/latched", "std_msgs/msg/String", latched),
                                 ("/chatter", "std_msgs/msg/String", reliable),
                                 ("/image", "sensor_msgs/msg/Image", reliable),
                                 ("/sensor", "std_msgs/msg/String", sensor)):
        # /sensor claims a String of another definition (type hash): played all the same, with a warning.
        hash_ = "RIHS01_" + "00" * 32 if name == "/sensor" else ""
        bag.add_topic(TopicMetadata(name, type_name, [qos], hash_), definitions.get(type_name))
    bag.add_topic(TopicMetadata("/weird", "nonexistent_msgs/msg/Thing"),
                  MessageDefinition("nonexistent_msgs/msg/Thing", "ros2msg", "int32 x\n"))
    messages: list[tuple[str, int, bytes]] = [("/latched", T0 + i, serialize_message(String(data=f"map {i}")))
                                              for i in range(2)]
    messages += [("/chatter", T0 + i * S // 10, serialize_message(String(data=f"chatter {i}"))) for i in range(30)]
    for i in range(6):
        image = Image(height=2, width=3, encoding="mono8", step=3, data=bytes(range(i, i + 6)))
        image.header.stamp.sec = i
        messages.append(("/image", T0 + i * S // 2 + 1, serialize_message(image)))
    messages += [("/sensor", T0 + i * S // 4 + 2, serialize_message(String(data=f"sensor {i}"))) for i in range(5)]
    messages.append(("/weird", T0 + 3, b"\x00\x01\x00\x00\x07\x00\x00\x00"))
    for topic, t, data in sorted(messages, key=lambda m: m[1]):
        bag.write(topic, data, t)
    bag.close()
    payloads: dict[str, list[bytes]] = {}
    for topic, _, data in messages:
        payloads.setdefault(topic, []).append(data)
    return payloads


def same(received: list[bytes], sent: list[bytes]) -> bool:
    """The same payloads in the same order: byte for byte, up to the zero padding to 4 bytes that the middleware
    adds to a serialized payload on the wire."""
    return len(received) == len(sent) and all(
        r[:len(s)] == s and len(r) - len(s) < 4 and not any(r[len(s):]) for r, s in zip(received, sent, strict=True))


def test_play_a_bag_into_the_graph(ros_env, tmp_path):
    payloads = write_bag(tmp_path / "bag")
    out = tmp_path / "probe.json"
    probe = start([str(PROBE), str(out), "--chatter", "30", "--images", "6", "--latched", "2", "--late-after", "5",
                   "--timeout", "90"], ros_env, tmp_path / "probe.log")
    try:
        wait_until(lambda: "ready" in (tmp_path / "probe.log").read_text(), 60, what="the probe")
        # --delay: time for the player's publishers and the probe to discover each other on a loaded machine
        # (volatile topics reach matched subscribers only); the probe writes what it heard by its own timeout, so
        # a shortfall shows as counts in the assertions below.
        played = cli("play", str(tmp_path / "bag"), "--rate", "2", "--clock", "50", "--delay", "5",
                     "--remap", "/image:=/camera/image", env=ros_env)
        assert played.returncode == 0, played.stdout + played.stderr
        probe.wait(100)
    finally:
        stop(probe)
    result = json.loads(out.read_text())
    received = {k: [bytes.fromhex(h) for h, _ in v] for k, v in result["received"].items()}

    # Every payload, byte for byte, in order; /image under its remapped name.
    assert same(received["chatter"], payloads["/chatter"])
    assert same(received["image"], payloads["/image"])
    # QoS as recorded: the latched messages reach a subscriber made after five chatter messages had arrived (they
    # were published before the first); the best-effort topic is heard by a best-effort request only.
    assert result["late"]["after"] >= 5 and same(received["latched"], payloads["/latched"])
    assert min(t for _, t in result["received"]["latched"]) > result["late"]["at"]
    assert 1 <= len(received["sensor"]) <= 5 and received["sensor_reliable"] == []
    # The timing: 2.9 s of chatter played at rate 2, 1.45 s (loosely: faster than recorded, not all at once).
    times = [t for _, t in result["received"]["chatter"]]
    assert 0.4 < times[-1] - times[0] < 2.6, times[-1] - times[0]
    # /clock: the bag's time, never going back, within the played span.
    clock = result["clock"]
    assert len(clock) >= 5 and clock == sorted(clock), clock
    assert T0 <= clock[0] and clock[-1] <= T0 + 3 * S
    # What the command said.
    assert "not playing /weird: no Python message module for nonexistent_msgs/msg/Thing" in played.stderr
    assert "/sensor: the bag's std_msgs/msg/String differs from the installed one" in played.stderr
    assert "/image as /camera/image: sensor_msgs/msg/Image (reliable, volatile)" in played.stdout
    assert "/latched: std_msgs/msg/String (reliable, transient_local)" in played.stdout
    lines = played.stdout.splitlines()
    assert any(line.split() == ["/chatter", "std_msgs/msg/String", "reliable,", "volatile", "30", "30"]
               for line in lines), played.stdout
    assert any(line.startswith("played 2.9 s of the bag in") and "/clock:" in line for line in lines), played.stdout
    assert "Traceback" not in played.stderr


def complete_chunk_messages(path: Path) -> list[Message]:
    """The messages an MCAP reader gets from a file before its first unreadable record (the ``mcap`` library's
    stream reader yields a chunk's records only once the whole chunk is read)."""
    messages = []
    with open(path, "rb") as f:
        try:
            for record in StreamReader(f).records:
                if isinstance(record, Message):
                    messages.append(record)
        except Exception:  # noqa: BLE001, S110 (where the file was cut)
            pass
    return messages


def test_a_killed_recording_is_recovered(ros_env, tmp_path):
    bag = tmp_path / "killed"
    recorder = subprocess.Popen([sys.executable, "-m", "molmomotion_ros.cli", "record", str(bag),
                                 "/camera/color/image_raw", "--compression", "none", "--max-bag-size", "0.05",
                                 "--discovery-interval", "0.2"], env=ros_env, stdout=subprocess.DEVNULL,
                                stderr=open(tmp_path / "recorder.err", "w"), start_new_session=True,  # noqa: SIM115
                                cwd=ROOT)
    talker = start([str(TALKER), "--stream", "400", "--stream-hz", "200", "--width", "32", "--height", "24"],
                   ros_env, tmp_path / "talker.log")
    try:
        def sent() -> int:
            assert recorder.poll() is None, (tmp_path / "recorder.err").read_text()
            counts = [int(line.split()[1]) for line in (tmp_path / "talker.log").read_text().splitlines()
                      if line.startswith("sent ")]
            return counts[-1] if counts else 0

        wait_until(lambda: sent() >= 150, 60, what="the talker to stream")
        os.killpg(recorder.pid, signal.SIGKILL)  # mid-run: no summary, no metadata.yaml
        recorder.wait(10)
    finally:
        stop(recorder)
        stop(talker)
    files = sorted(bag.glob("*.mcap"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    assert not (bag / "metadata.yaml").exists() and len(files) >= 2
    expected = [m for f in files for m in complete_chunk_messages(f)]
    before = {p.name: p.read_bytes() for p in files}

    recovered = cli("recover", str(bag), env=ros_env)
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert "is truncated" in recovered.stderr and "Traceback" not in recovered.stderr
    assert {p.name: p.read_bytes() for p in files} == before  # the original untouched
    out = tmp_path / "killed_recovered"
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    decoded = []
    for name in meta["relative_file_paths"]:
        with open(out / name, "rb") as f:
            reader = make_reader(f, decoder_factories=[DecoderFactory()])
            assert reader.get_summary().chunk_indexes
            decoded += [(m, d) for _, _, m, d in reader.iter_decoded_messages()]
    # Every message of every complete chunk, and they are the talker's first messages, each intact.
    assert [(m.log_time, m.data) for m, _ in decoded] == [(m.log_time, m.data) for m in expected]
    assert len(decoded) >= 20 and meta["message_count"] == len(decoded)
    assert [d.header.stamp.sec for _, d in decoded] == list(range(len(decoded)))
    assert all(d.data == image_bytes(i, 32, 24) for i, (_, d) in enumerate(decoded))
    assert f"recovered {len(decoded)} messages on 1 topics" in recovered.stdout


@pytest.mark.parametrize("args, message", [
    (["--topics", "/chatter", "/nope"], "cannot play '{bag}': the bag has no topic /nope (its topics: /chatter, "
                                        "/image, /latched, /sensor, /weird)"),
    (["--start-offset", "10"], "--start-offset 10 s is past the end of '{bag}' (2.9 s long)"),
    (["--remap", "/chatter"], "--remap '/chatter': expected FROM:=TO"),
    (["--topics", "/weird"], "cannot play '{bag}': none of its topics can be played (/weird: no Python message "
                             "module for nonexistent_msgs/msg/Thing"),
])
def test_bad_playback_requests_are_one_line_and_exit_status_2(ros_env, tmp_path, args, message):
    write_bag(tmp_path / "bag")
    result = cli("play", str(tmp_path / "bag"), *args, env=ros_env)
    lines = [line for line in result.stderr.splitlines() if line.startswith("molmomotion: error:")]
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(lines) == 1 and lines[0].startswith("molmomotion: error: " + message.format(bag=tmp_path / "bag")), \
        result.stderr
    assert "Traceback" not in result.stderr


def test_a_bag_is_published_only_once_its_options_are_checked(tmp_path):
    """A missing bag and a non-MCAP file are refused before rclpy loads (nothing joins the graph)."""
    (tmp_path / "notes.mcap").write_text("not a bag\n")
    started = time.monotonic()
    for target, cause in ((tmp_path / "absent", "no such file or folder"),
                          (tmp_path / "notes.mcap", "it is not an MCAP file")):
        for command in ("play", "recover"):
            result = cli(command, str(target))
            assert result.returncode == 2 and result.stderr.splitlines() == [
                f"molmomotion: error: cannot read the bag '{target}': {cause}" +
                (" (it does not start with the MCAP magic bytes)" if "MCAP" in cause else "")], result.stderr
    assert not (tmp_path / "absent_recovered").exists() and not (tmp_path / "notes_recovered").exists()
    assert time.monotonic() - started < 60
