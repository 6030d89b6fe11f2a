"""What every ``molmomotion`` command shares: exit statuses, the one-line usage error, argument types, output checks.

Light on purpose (argparse, yaml): every command module imports it while ``--help`` is built.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import NoReturn

import yaml

from molmomotion_ros.argtypes import non_negative_float, non_negative_int, positive_float, positive_int  # noqa: F401

PROG = "molmomotion"
USAGE_ERROR = 2  # bad input, like argparse
RUNTIME_ERROR = 1  # the installation lacks something


class UsageError(Exception):
    """A bad input the user can fix; reported as one line with exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors under the program's own name (subcommands included)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


# --- argument types ----------------------------------------------------------------------------
def name_list(text: str, what: str = "names") -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated {what}")
    return names


def family_list(text: str) -> list[str]:
    return name_list(text, "family names")


def key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as YAML (``3`` → 3, ``[a, b]`` → a list); unparsable YAML stays a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError:
        return key, value


# --- shared by the command handlers ------------------------------------------------------------
def quiet_model_loading() -> None:
    """No Hugging Face progress bars while the frozen sentence encoder loads (read when transformers is imported)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def check_writable(folder: Path, what: str) -> None:
    """Create ``folder`` and a temporary file in it, or raise UsageError."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"cannot write to {what} {str(folder)!r}: it is a file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise UsageError(f"cannot write to {what} {str(folder)!r}: {reason}") from None


def table_lines(header: tuple[str, ...], rows: list[tuple[str, ...]], total: tuple[str, ...],
                left_columns: int) -> list[str]:
    """A plain-text table: ``header``, ``rows`` and a ``total`` row in columns as wide as the header and rows need;
    the first ``left_columns`` are left-aligned (names), the others right-aligned (numbers)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(row) -> str:
        cells = zip(row, widths, strict=True)
        return "  ".join(c.ljust(w) if i < left_columns else c.rjust(w) for i, (c, w) in enumerate(cells)).rstrip()

    return [line(header), *[line(r) for r in rows], line(total)]
