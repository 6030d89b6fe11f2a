"""A rosbag2 bag with MCAP storage, written without ROS: ``DIR/metadata.yaml`` + ``DIR/DIR_0.mcap`` (``_1``, ``_2``...
when split), readable as it is by ``ros2 bag info/play`` (Jazzy), Foxglove and the ``mcap`` CLI.

The MCAP files come from the ``mcap`` library's writer (profile ``ros2``, chunked, zstd or uncompressed chunks):
one schema per message type (the full definition, :mod:`.definitions`) and one channel per topic (message
encoding ``cdr``, metadata ``offered_qos_profiles`` and ``topic_type_hash`` as rosbag2's MCAP plugin writes them),
in every file of a split bag. Messages are stored as received: serialized CDR, never decoded. Each file also
holds rosbag2's ``rosbag2`` metadata record (the bag's metadata as YAML), written when the file opens and again
before it closes, which ``ros2 bag`` reads from a lone MCAP file.

metadata.yaml follows rosbag2_storage's format version 9 and the split rules of its SequentialWriter: a file ends
when its size has reached ``max_bag_size`` or the next message comes more than ``max_bag_duration`` after the
file's first. ``starting_time`` is the earliest receive time and ``duration`` the span to the latest (of the bag,
and of each file); a bag or file without messages keeps the start time ``INT64_MAX``, as rosbag2 leaves it.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from mcap.writer import LIBRARY_IDENTIFIER, CompressionType, Writer

from .definitions import MessageDefinition
from .errors import BagError, BagFolderError, BagWriteError
from .qos import QosProfile, profiles_yaml

METADATA_VERSION = 9  # rosbag2_storage's BagMetadata version of ROS 2 Jazzy
METADATA_FILE = "metadata.yaml"
STORAGE_ID = "mcap"
SERIALIZATION_FORMAT = "cdr"
NO_TIME = 2**63 - 1  # rosbag2's starting time before the first message (nanoseconds::max)
DEFAULT_CHUNK_BYTES = 1024 * 1024
MIN_SPLIT_BYTES = 1024  # rosbag2's MCAP plugin refuses a smaller max_bagfile_size
COMPRESSIONS = {"zstd": CompressionType.ZSTD, "none": CompressionType.NONE}
LIBRARY = f"molmomotion_ros record; {LIBRARY_IDENTIFIER}"


@dataclass
class TopicMetadata:
    """One recorded topic, as metadata.yaml's ``topic_metadata`` describes it."""

    name: str
    type: str  # pkg/msg/Type
    offered_qos_profiles: list[QosProfile] = field(default_factory=list)
    type_description_hash: str = ""  # RIHS01_<sha256 hex> when the graph reported one
    serialization_format: str = SERIALIZATION_FORMAT

    def to_yaml_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "serialization_format": self.serialization_format,
                "offered_qos_profiles": [p.to_yaml_dict() for p in self.offered_qos_profiles],
                "type_description_hash": self.type_description_hash}


@dataclass
class FileInfo:
    path: str  # relative to the bag folder
    starting_time_ns: int = NO_TIME
    duration_ns: int = 0
    message_count: int = 0
    size_bytes: int = 0  # on disk, once closed
    end_ns: int = 0  # the latest receive time


@dataclass
class TopicCount:
    metadata: TopicMetadata
    message_count: int = 0
    payload_bytes: int = 0


@dataclass(frozen=True)
class BagSummary:
    """What a closed bag holds."""

    folder: Path
    files: tuple[FileInfo, ...]
    topics: tuple[TopicCount, ...]
    message_count: int
    starting_time_ns: int
    duration_ns: int

    @property
    def size_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)


class _IndentedDumper(yaml.SafeDumper):
    """Block lists indented under their key, as yaml-cpp (rosbag2) writes metadata.yaml."""

    def increase_indent(self, flow: bool = False, indentless: bool = False):
        return super().increase_indent(flow, False)


def dump_yaml(data) -> str:
    return yaml.dump(data, Dumper=_IndentedDumper, sort_keys=False, default_flow_style=False, allow_unicode=True)


def prepare_bag_folder(folder: Path, action: str = "record to") -> Path:
    """Create ``folder`` for a new bag, or raise BagFolderError (``cannot <action> '<folder>': ...``): a bag is never
    written into a file, a folder that already holds something (an older bag would be mixed with this one), or a
    folder it cannot write to."""
    folder = Path(folder)
    where = f"cannot {action} {str(folder)!r}"
    if folder.exists() and not folder.is_dir():
        raise BagFolderError(f"{where}: it is a file")
    if folder.is_dir():
        try:
            entries = sorted(p.name for p in folder.iterdir())
        except OSError as err:
            raise BagFolderError(f"{where}: {err.strerror or type(err).__name__}") from None
        if entries:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            never = "a recording never overwrites" if action == "record to" else "nothing is overwritten"
            raise BagFolderError(f"{where}: the folder is not empty ({shown}); {never}, name a new folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise BagFolderError(f"{where}: {err.strerror or type(err).__name__}") from None
    if not folder.resolve().name:
        raise BagFolderError(f"{where}: the bag's files are named after its folder, which has no name")
    return folder


def check_definition(topic: TopicMetadata, definition: MessageDefinition) -> None:
    """BagError unless ``definition`` is of the topic's type."""
    if definition.type_name != topic.type:
        raise BagError(f"the definition of {definition.type_name} was given for {topic.name} of type {topic.type}")


class BagWriter:
    """Writes one bag (single-threaded: :class:`~.recording.QueuedWriter` feeds it from callbacks).

    ``add_topic`` before the topic's first ``write``; ``close`` finishes the open file and writes metadata.yaml
    (also after a failed write: what reached the disk stays readable).
    """

    def __init__(self, folder: Path, compression: str = "zstd", max_bag_size_bytes: int = 0,
                 max_bag_duration_s: float = 0.0, chunk_bytes: int | None = None, ros_distro: str | None = None,
                 library: str = LIBRARY, folder_action: str = "record to"):
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}, not {compression!r}")
        if max_bag_size_bytes and max_bag_size_bytes < MIN_SPLIT_BYTES:
            raise ValueError(f"max_bag_size_bytes must be 0 (no split) or at least {MIN_SPLIT_BYTES}")
        if max_bag_duration_s < 0:
            raise ValueError("max_bag_duration_s must be 0 (no split) or positive")
        self.folder = prepare_bag_folder(folder, folder_action)
        self.library = library
        self.compression = compression
        self.max_bag_size_bytes = int(max_bag_size_bytes)
        self.max_bag_duration_ns = int(round(max_bag_duration_s * 1e9))
        if chunk_bytes is None:
            # The size split sees a file grow chunk by chunk: at most a quarter of the limit over it.
            chunk_bytes = DEFAULT_CHUNK_BYTES if not self.max_bag_size_bytes else \
                max(MIN_SPLIT_BYTES, min(DEFAULT_CHUNK_BYTES, self.max_bag_size_bytes // 4))
        self.chunk_bytes = chunk_bytes
        self.ros_distro = ros_distro if ros_distro is not None else os.environ.get("ROS_DISTRO") or "jazzy"
        self._base = self.folder.resolve().name
        self._topics: dict[str, TopicCount] = {}
        self._definitions: dict[str, MessageDefinition] = {}
        self._files: list[FileInfo] = []
        self._stream = self._mcap = None
        self._schema_ids: dict[str, int] = {}
        self._channel_ids: dict[str, int] = {}
        self.starting_time_ns = NO_TIME
        self.duration_ns = 0
        self._end_ns = 0
        self.message_count = 0
        self._closed_bytes = 0
        self._summary: BagSummary | None = None
        self._open_file()

    # --- topics and messages --------------------------------------------------------------------------------------
    @property
    def topics(self) -> dict[str, TopicCount]:
        return self._topics

    def add_topic(self, topic: TopicMetadata, definition: MessageDefinition) -> bool:
        """Register a topic (a schema for its type unless the file has one, a channel); False if already there."""
        self._check_open()
        if topic.name in self._topics:
            return False
        check_definition(topic, definition)
        self._definitions.setdefault(topic.type, definition)
        self._topics[topic.name] = TopicCount(topic)
        self._guard(lambda: self._register(topic))
        return True

    def write(self, topic: str, data: bytes, log_time_ns: int, publish_time_ns: int | None = None) -> None:
        """Append one serialized message received at ``log_time_ns`` (ns since the epoch)."""
        self._check_open()
        count = self._topics.get(topic)
        if count is None:
            raise BagError(f"topic {topic} was not added before its first message")
        log_time_ns = int(log_time_ns)
        if self.message_count == 0:
            self.starting_time_ns = log_time_ns
        if self._should_split(log_time_ns):
            self._guard(self._split)
            self._files[-1].starting_time_ns = log_time_ns
        current = self._files[-1]
        self.starting_time_ns = min(self.starting_time_ns, log_time_ns)
        current.starting_time_ns = min(current.starting_time_ns, log_time_ns)
        # The span from the earliest to the latest receive time (messages of different topics reach the writer a
        # little out of order; rosbag2's running maximum would then come out short).
        self._end_ns = max(self._end_ns, log_time_ns)
        current.end_ns = max(current.end_ns, log_time_ns)
        self.duration_ns = self._end_ns - self.starting_time_ns
        current.duration_ns = current.end_ns - current.starting_time_ns
        publish = log_time_ns if publish_time_ns is None else int(publish_time_ns)
        self._guard(lambda: self._mcap.add_message(self._channel_ids[topic], log_time=log_time_ns, data=data,
                                                   publish_time=publish, sequence=0))
        current.message_count += 1
        count.message_count += 1
        count.payload_bytes += len(data)
        self.message_count += 1

    def split(self) -> bool:
        """End the open file and go on in the next one (a recovered bag keeps its source's file boundaries); False,
        and nothing done, while the open file has no message."""
        self._check_open()
        if self._files[-1].message_count == 0:
            return False
        self._guard(self._split)
        return True

    @property
    def bytes_written(self) -> int:
        """Bytes on disk so far (the open chunk not yet counted)."""
        stream = self._stream  # read from a progress thread while the writer's thread may swap files
        try:
            current = stream.tell() if stream is not None and not stream.closed else 0
        except (OSError, ValueError):
            current = 0
        return self._closed_bytes + current

    @property
    def summary(self) -> BagSummary | None:
        """The closed bag's summary (None while open), also after ``close`` raised."""
        return self._summary

    def close(self) -> BagSummary:
        """Finish the open file and write metadata.yaml; the bag's summary. Idempotent. A write error is raised after
        both were attempted (the summary is then still in :attr:`summary`)."""
        if self._summary is not None:
            return self._summary
        error = None
        try:
            self._finish_file()
        except BagWriteError as err:
            error = err
        self._summary = BagSummary(self.folder, tuple(self._files), tuple(self._topics.values()),
                                   self.message_count, self.starting_time_ns, self.duration_ns)
        path = self.folder / METADATA_FILE
        partial = self.folder / f".{METADATA_FILE}.partial"  # replaced in one step: never a half-written metadata.yaml
        try:
            partial.write_text(dump_yaml({"rosbag2_bagfile_information": self.metadata()}), encoding="utf-8")
            os.replace(partial, path)
        except OSError as err:
            error = error or BagWriteError(f"writing {path} failed: {err.strerror or type(err).__name__}")
        if error is not None:
            raise error
        return self._summary

    # --- metadata -------------------------------------------------------------------------------------------------
    def metadata(self) -> dict:
        """rosbag2's BagMetadata (version 9) as a dict in its key order: metadata.yaml's content under
        ``rosbag2_bagfile_information``, and the MCAP ``rosbag2`` record's ``serialized_metadata``."""
        return {
            "version": METADATA_VERSION,
            "storage_identifier": STORAGE_ID,
            "duration": {"nanoseconds": self.duration_ns},
            "starting_time": {"nanoseconds_since_epoch": self.starting_time_ns},
            "message_count": self.message_count,
            "topics_with_message_count": [{"topic_metadata": t.metadata.to_yaml_dict(),
                                           "message_count": t.message_count} for t in self._topics.values()],
            "compression_format": "",  # the MCAP chunks are compressed inside the files (rosbag2 writes "" too)
            "compression_mode": "",
            "relative_file_paths": [f.path for f in self._files],
            "files": [{"path": f.path, "starting_time": {"nanoseconds_since_epoch": f.starting_time_ns},
                       "duration": {"nanoseconds": f.duration_ns}, "message_count": f.message_count}
                      for f in self._files],
            "custom_data": None,
            "ros_distro": self.ros_distro,
        }

    # --- files ----------------------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._summary is not None or self._mcap is None:
            raise BagError(f"the bag {self.folder} is closed")

    def _guard(self, action) -> None:
        """Run a file operation; an OSError becomes BagWriteError naming the file."""
        try:
            action()
        except OSError as err:
            path = self.folder / self._files[-1].path if self._files else self.folder
            raise BagWriteError(f"writing {path} failed: {err.strerror or type(err).__name__}") from err

    def _should_split(self, log_time_ns: int) -> bool:
        current = self._files[-1]
        if current.message_count == 0:
            return False
        if self.max_bag_size_bytes and self._stream.tell() >= self.max_bag_size_bytes:
            return True
        return bool(self.max_bag_duration_ns) and log_time_ns - current.starting_time_ns > self.max_bag_duration_ns

    def _split(self) -> None:
        self._finish_file()
        self._open_file()

    def _open_file(self) -> None:
        info = FileInfo(f"{self._base}_{len(self._files)}.mcap")
        path = self.folder / info.path
        try:
            self._stream = open(path, "xb")  # noqa: SIM115 (closed in _finish_file)
        except OSError as err:
            raise BagWriteError(f"cannot create {path}: {err.strerror or type(err).__name__}") from None
        self._files.append(info)
        self._mcap = Writer(self._stream, chunk_size=self.chunk_bytes, compression=COMPRESSIONS[self.compression])
        self._schema_ids, self._channel_ids = {}, {}

        def start() -> None:
            self._mcap.start(profile="ros2", library=self.library)
            self._write_metadata_record()
            for count in self._topics.values():
                self._register(count.metadata)

        self._guard(start)

    def _register(self, topic: TopicMetadata) -> None:
        if topic.type not in self._schema_ids:
            definition = self._definitions[topic.type]
            self._schema_ids[topic.type] = self._mcap.register_schema(
                name=topic.type, encoding=definition.encoding, data=definition.text.encode("utf-8"))
        self._channel_ids[topic.name] = self._mcap.register_channel(
            topic=topic.name, message_encoding=topic.serialization_format, schema_id=self._schema_ids[topic.type],
            metadata={"offered_qos_profiles": profiles_yaml(topic.offered_qos_profiles),
                      "topic_type_hash": topic.type_description_hash})

    def _write_metadata_record(self) -> None:
        self._mcap.add_metadata("rosbag2", {"serialized_metadata": dump_yaml(self.metadata())})

    def _finish_file(self) -> None:
        """Write the open file's summary and close it (closing also when the summary cannot be written)."""
        if self._stream is None:
            return
        stream, info = self._stream, self._files[-1]
        try:
            self._guard(self._write_metadata_record)
            self._guard(self._mcap.finish)
            self._guard(stream.flush)
        finally:
            self._stream = self._mcap = None
            try:
                stream.close()
            except OSError:
                pass
            try:
                info.size_bytes = (self.folder / info.path).stat().st_size
            except OSError:
                info.size_bytes = 0
            self._closed_bytes += info.size_bytes
