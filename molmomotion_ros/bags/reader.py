"""Reading rosbag2 bags with MCAP storage, without ROS: what ``molmomotion play`` publishes and ``molmomotion
recover`` rewrites.

A bag is a folder with ``metadata.yaml`` and the files it lists (rosbag2's layout, any metadata version: Jazzy's 9
and older ones with integer QoS policies), a folder of ``.mcap`` files without metadata.yaml (a recording killed
before it wrote one), or a single ``.mcap`` file. rosbag2's compression modes are read too: ``message`` (each
payload a zstd frame) and ``file`` (``.mcap.zstd`` files, decompressed into a temporary folder first).

Every file is read with the ``mcap`` library. A file with a usable summary section (statistics, channels, the chunk
index) is read through that index, in log-time order, as any MCAP reader does. A file without one (the recorder was
killed, so the summary was never written; or written without chunks) is read from its start, record by record,
up to the first record that cannot be read: every complete chunk is kept (its CRC checked when it has one), the
chunk cut short is not. Its messages come in log-time order within each chunk and across chunks as far as the
chunks' start times allow (a recorder writes them in receive order, so that is all of them in practice).

Messages come out as stored: serialized CDR bytes, never decoded (a ``message``-compressed payload is decompressed).
Topics, types and the offered QoS profiles come from metadata.yaml when there is one, else from the MCAP channels
and schemas; message counts always from the files.
"""

from __future__ import annotations

import heapq
import re
import struct
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import yaml
import zstandard
from mcap.exceptions import EndOfFile
from mcap.reader import make_reader
from mcap.records import Channel, Chunk, Message, Metadata, Schema
from mcap.stream_reader import StreamReader, breakup_chunk

from .definitions import MessageDefinition
from .errors import BagReadError
from .qos import QosProfile, parse_profiles

MAGIC = b"\x89MCAP0\r\n"
METADATA_FILE = "metadata.yaml"
_TYPE = re.compile(r"^([A-Za-z0-9_]+)/(?:msg/)?([A-Za-z0-9_]+)$")


class BagMessage(NamedTuple):
    """One stored message: its topic (the bag's name), serialized payload, receive time and publish time (ns)."""

    topic: str
    data: bytes
    log_time: int
    publish_time: int


@dataclass
class BagTopic:
    """A topic of the bag as rosbag2's metadata describes it, with what the bag's files hold of it."""

    name: str
    type: str  # pkg/msg/Type ("" when the bag names none)
    serialization_format: str = "cdr"
    offered_qos_profiles: list[QosProfile] = field(default_factory=list)
    type_description_hash: str = ""
    message_count: int = 0  # in the readable part of the files
    schema: MessageDefinition | None = None  # the full definition stored in the bag, if it has one


@dataclass
class BagFile:
    """One storage file and how it was read."""

    name: str  # as the bag names it
    path: Path  # the file read (a ``file``-compressed bag: its decompressed copy)
    indexed: bool = False  # read through its summary section
    truncated: bool = False  # ends before its summary: everything up to the last complete chunk is read
    problem: str = ""  # why it was read without an index (empty when indexed)
    chunks: int = 0  # complete chunks (files read without an index)
    message_count: int = 0
    start_ns: int | None = None
    end_ns: int | None = None
    compression: str = ""  # of its chunks ("zstd", "lz4", "" for none)


def message_type(name: str) -> str:
    """``pkg/msg/Type`` for ``pkg/msg/Type`` or ``pkg/Type``; anything else as it is."""
    match = _TYPE.match(name or "")
    return f"{match.group(1)}/msg/{match.group(2)}" if match else (name or "")


def _natural(name: str) -> list:
    """``run_10.mcap`` after ``run_9.mcap``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


class BagReader:
    """Opens a bag (checks every file, reads the index or scans what a truncated file holds) and yields its messages.

    Raises :class:`~.errors.BagReadError` naming the path and the cause when the bag cannot be read: a missing path,
    a folder without a bag, a file that is not MCAP, storage other than MCAP, a metadata.yaml that is not rosbag2's.
    Problems it reads around (a truncated file, an unreadable QoS record) are in :attr:`warnings`.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.where = f"cannot read the bag {str(self.path)!r}"
        self.metadata: dict | None = None
        self.files: list[BagFile] = []
        self.topics: dict[str, BagTopic] = {}
        self.ros_distro: str | None = None
        self.compression_mode = ""  # rosbag2's: "", "MESSAGE" or "FILE"
        self.warnings: list[str] = []
        self._temporary: tempfile.TemporaryDirectory | None = None
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    # --- what the bag holds ---------------------------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        """The bag folder (a lone file's own folder)."""
        return self.path if self.path.is_dir() else self.path.parent

    @property
    def message_count(self) -> int:
        return sum(f.message_count for f in self.files)

    @property
    def start_ns(self) -> int | None:
        """The earliest receive time, None for a bag without messages."""
        starts = [f.start_ns for f in self.files if f.start_ns is not None]
        return min(starts) if starts else None

    @property
    def end_ns(self) -> int | None:
        ends = [f.end_ns for f in self.files if f.end_ns is not None]
        return max(ends) if ends else None

    @property
    def duration_ns(self) -> int:
        return (self.end_ns - self.start_ns) if self.start_ns is not None else 0

    @property
    def truncated_files(self) -> list[BagFile]:
        return [f for f in self.files if f.truncated]

    def close(self) -> None:
        """Remove the decompressed copies of a ``file``-compressed bag."""
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- messages -------------------------------------------------------------------------------------------------
    def messages(self, topics: Iterable[str] | None = None, start_ns: int | None = None) -> Iterator[BagMessage]:
        """Every message of ``topics`` (all when None) received at or after ``start_ns``, in log-time order across
        the files (ties in file order)."""
        topics = None if topics is None else frozenset(topics)
        streams = [self.file_messages(f, topics, start_ns) for f in self.files]
        return heapq.merge(*streams, key=lambda m: m.log_time)

    def file_messages(self, file: BagFile, topics: Iterable[str] | None = None,
                      start_ns: int | None = None) -> Iterator[BagMessage]:
        """One file's messages in log-time order (through its index, or scanned up to its last complete chunk)."""
        topics = None if topics is None else frozenset(topics)
        if file.message_count == 0 or (topics is not None and not topics):
            return
        decompress = zstandard.ZstdDecompressor() if self.compression_mode == "MESSAGE" else None
        try:
            with open(file.path, "rb") as stream:
                if file.indexed:
                    reader = make_reader(stream)
                    items = ((c, m) for _, c, m in reader.iter_messages(topics=topics, starting_at=start_ns,
                                                                       log_time_order=True))
                else:
                    items = self._scan(file, stream)
                for channel, message in items:
                    if topics is not None and channel.topic not in topics:
                        continue
                    if start_ns is not None and message.log_time < start_ns:
                        continue
                    data = message.data
                    if decompress is not None:
                        data = self._decompress(decompress, file, data)
                    yield BagMessage(channel.topic, data, message.log_time, message.publish_time)
        except OSError as err:
            raise BagReadError(f"{self.where}: reading {file.path} failed: {err.strerror or type(err).__name__}") \
                from None
        except BagReadError:
            raise
        except Exception as err:  # noqa: BLE001 (the mcap reader raises several kinds on a damaged indexed file)
            raise BagReadError(f"{self.where}: {file.path} is damaged: {type(err).__name__}: {err}") from None

    def _decompress(self, decompressor, file: BagFile, data: bytes) -> bytes:
        try:
            return decompressor.decompressobj().decompress(data)
        except zstandard.ZstdError as err:
            raise BagReadError(f"{self.where}: a message in {file.path} is not a zstd frame ({err}), though "
                               "metadata.yaml says compression_mode MESSAGE") from None

    # --- opening --------------------------------------------------------------------------------------------------
    def _open(self) -> None:
        path = self.path
        if not path.exists():
            raise BagReadError(f"{self.where}: no such file or folder")
        if path.is_file() and path.name == METADATA_FILE:
            self.path = path = path.parent
        if path.is_dir():
            names = self._folder_files(path)
        elif path.is_file():
            names = [path.name]
        else:
            raise BagReadError(f"{self.where}: not a file or a folder")
        for name in names:
            self.files.append(self._locate(name))
        for file in self.files:
            self._inspect(file)
        for file in self.truncated_files:
            self.warnings.append(f"{file.path} is truncated ({file.problem}): read up to its last complete chunk, "
                                 f"{file.message_count} messages in {file.chunks} chunks")

    def _folder_files(self, folder: Path) -> list[str]:
        metadata = folder / METADATA_FILE
        if metadata.is_file():
            return self._read_metadata(metadata)
        try:
            names = sorted((p.name for p in folder.iterdir() if p.suffix == ".mcap" and p.is_file()), key=_natural)
        except OSError as err:
            raise BagReadError(f"{self.where}: {err.strerror or type(err).__name__}") from None
        if not names:
            raise BagReadError(f"{self.where}: not a bag: no {METADATA_FILE} and no .mcap file in the folder")
        return names

    def _read_metadata(self, path: Path) -> list[str]:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise BagReadError(f"{self.where}: cannot read {path}: {err.strerror or type(err).__name__}") from None
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise BagReadError(f"{self.where}: {path} is not YAML ({' '.join(str(err).split())})") from None
        info = data.get("rosbag2_bagfile_information") if isinstance(data, dict) else None
        if not isinstance(info, dict):
            raise BagReadError(f"{self.where}: {path} is not rosbag2 metadata (no rosbag2_bagfile_information)")
        self.metadata = info
        storage = info.get("storage_identifier") or "mcap"
        if storage != "mcap":
            raise BagReadError(f"{self.where}: its storage is {storage!r}; only MCAP bags are read (`ros2 bag convert` "
                               "converts one)")
        mode = str(info.get("compression_mode") or "").upper()
        mode = "" if mode == "NONE" else mode
        compression = str(info.get("compression_format") or "")
        if mode not in ("", "FILE", "MESSAGE"):
            raise BagReadError(f"{self.where}: unknown compression_mode {mode!r} in {path}")
        if mode and compression != "zstd":
            raise BagReadError(f"{self.where}: compressed with {compression!r}; only zstd is read")
        self.compression_mode = mode
        self.ros_distro = info.get("ros_distro") or None
        names = info.get("relative_file_paths") or [f.get("path") for f in info.get("files") or []
                                                     if isinstance(f, dict)]
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise BagReadError(f"{self.where}: {path} lists no storage files")
        for entry in info.get("topics_with_message_count") or []:
            meta = entry.get("topic_metadata") if isinstance(entry, dict) else None
            if not isinstance(meta, dict) or not meta.get("name"):
                continue
            name = str(meta["name"])
            self.topics[name] = BagTopic(name, message_type(str(meta.get("type") or "")),
                                         str(meta.get("serialization_format") or "cdr"),
                                         self._profiles(name, meta.get("offered_qos_profiles"), path),
                                         str(meta.get("type_description_hash") or ""))
        return names

    def _profiles(self, topic: str, value, source) -> list[QosProfile]:
        try:
            return parse_profiles(value)
        except ValueError as err:
            self.warnings.append(f"{topic}: the offered QoS profiles in {source} cannot be read ({err}); played "
                                 "with the default profile")
            return []

    def _locate(self, name: str) -> BagFile:
        if self.path.is_file():
            return BagFile(name, self.path)
        for candidate in (self.path / name, self.path / Path(name).name):  # Foxy listed "<folder>/<file>"
            if candidate.is_file():
                break
        else:
            raise BagReadError(f"{self.where}: {METADATA_FILE} lists {name}, which is missing")
        file = BagFile(name, candidate)
        if self.compression_mode == "FILE":
            file.path = self._decompressed(candidate)
        return file

    def _decompressed(self, path: Path) -> Path:
        """A ``file``-compressed bag's file, decompressed into a temporary folder (a cut-off stream keeps its
        decompressible part, which is then read as a truncated file)."""
        if self._temporary is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="molmomotion-bag-")
        target = Path(self._temporary.name) / (path.name[:-len(".zstd")] if path.name.endswith(".zstd") else path.name)
        try:
            with open(path, "rb") as source, open(target, "wb") as out:
                zstandard.ZstdDecompressor().copy_stream(source, out)
        except zstandard.ZstdError as err:
            self.warnings.append(f"{path}: its zstd stream ends early ({err}); reading what was decompressed")
        except OSError as err:
            raise BagReadError(f"{self.where}: cannot decompress {path}: {err.strerror or type(err).__name__}") \
                from None
        return target

    # --- one file -------------------------------------------------------------------------------------------------
    def _inspect(self, file: BagFile) -> None:
        try:
            with open(file.path, "rb") as stream:
                head = stream.read(len(MAGIC))
                if head != MAGIC:
                    if not MAGIC.startswith(head):
                        what = "it is" if file.path == self.path else f"{file.path} is"
                        raise BagReadError(f"{self.where}: {what} not an MCAP file (it does not start with the MCAP "
                                           "magic bytes)")
                    file.truncated = True
                    file.problem = "it ends before the MCAP header"
                    return
                stream.seek(0)
                summary = _usable_summary(stream)
                if summary is not None:
                    self._inspect_indexed(file, stream, summary)
                else:
                    stream.seek(0)
                    for channel, message in self._scan(file, stream, inspect=True):
                        self._count(file, channel, message.log_time)
        except OSError as err:
            raise BagReadError(f"{self.where}: cannot read {file.path}: {err.strerror or type(err).__name__}") \
                from None

    def _inspect_indexed(self, file: BagFile, stream, summary) -> None:
        file.indexed = True
        stats = summary.statistics
        for channel in summary.channels.values():
            self._channel(channel, summary.schemas.get(channel.schema_id))
            count = stats.channel_message_counts.get(channel.id, 0)
            self.topics[channel.topic].message_count += count
        file.message_count = stats.message_count
        if stats.message_count:
            file.start_ns, file.end_ns = stats.message_start_time, stats.message_end_time
        file.compression = next((c.compression for c in summary.chunk_indexes), "")
        if self.ros_distro is None:
            try:
                stream.seek(0)
                for record in make_reader(stream).iter_metadata():
                    self._rosbag2_record(record)
            except Exception:  # noqa: BLE001, S110 (the distro is a nicety; a damaged metadata record is not fatal)
                pass

    def _count(self, file: BagFile, channel: Channel, log_time: int) -> None:
        file.message_count += 1
        self.topics[channel.topic].message_count += 1
        file.start_ns = log_time if file.start_ns is None else min(file.start_ns, log_time)
        file.end_ns = log_time if file.end_ns is None else max(file.end_ns, log_time)

    def _channel(self, channel: Channel, schema: Schema | None) -> None:
        """Merge one file's channel into the topics (metadata.yaml's description wins where it has one)."""
        type_name = message_type(schema.name) if schema is not None else ""
        topic = self.topics.get(channel.topic)
        if topic is None:
            metadata = channel.metadata or {}
            topic = self.topics[channel.topic] = BagTopic(
                channel.topic, type_name, channel.message_encoding or "cdr",
                self._profiles(channel.topic, metadata.get("offered_qos_profiles"), "the MCAP channel"),
                metadata.get("topic_type_hash", ""))
        elif not topic.type:
            topic.type = type_name
        elif type_name and type_name != topic.type:
            self.warnings.append(f"{channel.topic}: a file stores it as {type_name}, the bag says {topic.type}")
        if topic.schema is None and schema is not None and schema.encoding and schema.data:
            topic.schema = MessageDefinition(topic.type, schema.encoding, schema.data.decode("utf-8", "replace"))

    def _rosbag2_record(self, record: Metadata) -> None:
        """The ros_distro of rosbag2's ``rosbag2`` metadata record (the bag metadata as YAML, in every file)."""
        if self.ros_distro is None and record.name == "rosbag2":
            try:
                distro = yaml.safe_load(record.metadata.get("serialized_metadata", "")).get("ros_distro")
            except (yaml.YAMLError, AttributeError):
                return
            self.ros_distro = distro if isinstance(distro, str) and distro else None

    def _scan(self, file: BagFile, stream, inspect: bool = False) -> Iterator[tuple[Channel, Message]]:
        """A file without a usable index, record by record from its start: (channel, message) of every complete
        chunk (and of messages outside chunks), in log-time order as far as the chunks' start times allow; stops at
        the first record that cannot be read. With ``inspect``, registers the channels and notes where and why the
        readable part ends."""
        schemas: dict[int, Schema] = {}
        channels: dict[int, Channel] = {}
        records = StreamReader(stream, emit_chunks=True).records
        pending: list[tuple[int, int, Channel, Message]] = []  # a heap: (log time, order, channel, message)
        order = chunks = 0
        unknown: set[int] = set()
        while True:
            try:
                record = next(records)
                if isinstance(record, Chunk):
                    group, group_start = breakup_chunk(record, validate_crc=True), record.message_start_time
                else:
                    group, group_start = [record], getattr(record, "log_time", None)
            except StopIteration:
                break
            except Exception as err:  # noqa: BLE001 (whatever the damage, the readable part ends at this record)
                if inspect:
                    file.truncated = True
                    file.problem = (f"it ends inside a record after {chunks} complete chunks"
                                    if isinstance(err, (EndOfFile, struct.error))
                                    else f"unreadable after {chunks} complete chunks: {type(err).__name__}: {err}")
                break
            if isinstance(record, Chunk):
                chunks += 1
                if inspect:
                    file.compression = file.compression or record.compression
            if group_start is not None:
                while pending and pending[0][0] < group_start:
                    _, _, channel, message = heapq.heappop(pending)
                    yield channel, message
            for item in group:
                if isinstance(item, Schema):
                    schemas[item.id] = item
                elif isinstance(item, Channel):
                    channels[item.id] = item
                    if inspect:
                        self._channel(item, schemas.get(item.schema_id))
                elif isinstance(item, Message):
                    channel = channels.get(item.channel_id)
                    if channel is None:
                        if inspect and item.channel_id not in unknown:
                            self.warnings.append(f"{file.path}: messages on channel {item.channel_id}, which no "
                                                 "channel record describes, are skipped")
                        unknown.add(item.channel_id)
                        continue
                    heapq.heappush(pending, (item.log_time, order, channel, item))
                    order += 1
                elif isinstance(item, Metadata) and inspect:
                    self._rosbag2_record(item)
        if inspect:
            file.chunks = chunks
            if not file.truncated:
                file.problem = "it has no usable summary section (index)"
        while pending:
            _, _, channel, message = heapq.heappop(pending)
            yield channel, message


def _usable_summary(stream):
    """The file's summary when it indexes every message (statistics, every channel and schema, one index entry per
    chunk, chunks at all when there are messages); None otherwise (then the file is read from its start)."""
    try:
        summary = make_reader(stream).get_summary()
    except Exception:  # noqa: BLE001 (a truncated file's tail is anything; it only means there is no summary)
        return None
    if summary is None or summary.statistics is None:
        return None
    stats = summary.statistics
    if stats.message_count and not summary.chunk_indexes:
        return None
    if stats.chunk_count != len(summary.chunk_indexes):
        return None
    if any(channel_id not in summary.channels for channel_id in stats.channel_message_counts):
        return None
    if any(c.schema_id and c.schema_id not in summary.schemas for c in summary.channels.values()):
        return None
    return summary
