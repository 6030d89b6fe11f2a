"""``molmomotion recover``: a truncated bag rewritten as a complete one, without ROS.

A recorder killed mid-run (SIGKILL, a power cut) leaves its last MCAP file without a summary section and without
metadata.yaml: ``ros2 bag info`` and most readers refuse it, though every chunk written before the kill is intact.
Recovery reads every file as :class:`~.reader.BagReader` does (through the index where there is one, else up to the
last complete chunk) and writes the messages, as stored, into a new bag with :class:`~.writer.BagWriter`: summary,
chunk and message indexes, statistics and metadata.yaml regenerated; one output file per source file, so a split
bag stays split where it was. The schemas are the bag's own (no installed definitions needed; a topic whose schema
was lost takes the installed one), the QoS records and type hashes are carried over. The source is never written to:
the recovered bag goes to a new folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .definitions import DefinitionSource
from .errors import BagError, BagWriteError, DefinitionNotFoundError
from .reader import BagFile, BagReader
from .writer import BagSummary, BagWriter, TopicMetadata

LIBRARY = "molmomotion_ros recover"


@dataclass
class RecoveryReport:
    source: BagReader
    summary: BagSummary
    skipped: dict[str, str] = field(default_factory=dict)  # topic → why it is not in the recovered bag

    @property
    def truncated(self) -> list[BagFile]:
        return self.source.truncated_files


def default_output(path: Path) -> Path:
    """``run1`` → ``run1_recovered``; ``x.mcap`` → ``x_recovered`` (a bag folder), beside the source."""
    path = Path(path)
    if path.name == "metadata.yaml":
        path = path.parent
    path = path.resolve() if not path.name else path
    name = path.name if path.is_dir() else path.stem
    return path.parent / f"{name}_recovered"


def recover(reader: BagReader, out: Path, definitions: DefinitionSource | None = None) -> RecoveryReport:
    """Write everything ``reader`` can read into the new bag folder ``out``. BagFolderError for an ``out`` that
    cannot hold it (not empty, a file); BagWriteError when writing fails (the new bag is finished as far as it got;
    the source is untouched either way)."""
    compressions = {f.compression for f in reader.files if f.message_count}
    writer = BagWriter(out, compression="none" if compressions == {""} else "zstd", ros_distro=reader.ros_distro,
                       library=LIBRARY, folder_action="write the recovered bag to")
    skipped: dict[str, str] = {}
    kept = []
    for topic in reader.topics.values():
        if not topic.type:
            skipped[topic.name] = "the bag names no message type for it"
            continue
        definition = topic.schema
        if definition is None:
            try:
                definition = (definitions or DefinitionSource()).get(topic.type)
            except DefinitionNotFoundError as err:
                skipped[topic.name] = f"the bag holds no schema for it and {err}"
                continue
        writer.add_topic(TopicMetadata(topic.name, topic.type, list(topic.offered_qos_profiles),
                                       topic.type_description_hash, topic.serialization_format), definition)
        kept.append(topic.name)
    error: BagError | None = None
    try:
        for index, file in enumerate(reader.files):
            if index:
                writer.split()
            for message in reader.file_messages(file, kept):
                writer.write(message.topic, message.data, message.log_time, message.publish_time)
    except BagError as err:
        error = err
    try:
        summary = writer.close()
    except BagWriteError as err:
        error = error or err
        summary = writer.summary
    if error is not None:
        raise error
    return RecoveryReport(reader, summary, skipped)
