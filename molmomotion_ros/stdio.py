"""Silencing C-level writes to stdout (PyBullet prints "argv[0]=" when a client connects)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys


@contextlib.contextmanager
def native_stdout_silenced():
    """Send file descriptor 1 to /dev/null for the duration of the block, flushing C stdio on the way out."""
    sys.stdout.flush()
    saved_fd = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            try:
                yield
            finally:
                _flush_c_stdio()
                os.dup2(saved_fd, 1)
    finally:
        os.close(saved_fd)


def _flush_c_stdio() -> None:
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library handle on this platform
        pass
