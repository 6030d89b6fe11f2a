"""The bags package's typed errors: a bad bag folder (the user's to fix), a type without a definition (that topic is
skipped), a failed write (the recording stops, what was written is finished), a bag that cannot be read (missing,
not MCAP, a topic it does not have: the user's to fix)."""

from __future__ import annotations


class BagError(Exception):
    """Base of the bags package's errors."""


class BagFolderError(BagError):
    """The bag folder cannot hold a new bag: not empty, a file, or not writable (the message names it and why)."""


class DefinitionNotFoundError(BagError):
    """No installed definition for a message type: its topic cannot be recorded with a schema."""

    def __init__(self, type_name: str, reason: str):
        super().__init__(f"no message definition for {type_name}: {reason}")
        self.type_name = type_name
        self.reason = reason


class BagWriteError(BagError):
    """Writing a bag file failed (disk full, file removed); the files are finished as far as they go."""


class BagReadError(BagError):
    """A bag cannot be read or played as asked: the path is missing, not an MCAP bag, or lacks a named topic (the
    message names the file and the cause)."""
