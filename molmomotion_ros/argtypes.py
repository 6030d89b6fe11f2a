"""argparse types shared by the command line (``cli/``) and the core modules that add their own options
(``execution.add_arguments``): one definition, importable from either layer."""

from __future__ import annotations

import argparse
import math


def _number(convert, accept, what: str):
    """An argparse type: ``convert(text)`` (int or float), refused with "expected <what>" unless ``accept``."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text if convert is float else value}")
        return value

    return parse


positive_int = _number(int, lambda v: v > 0, "a positive integer")
non_negative_int = _number(int, lambda v: v >= 0, "a non-negative integer")
positive_float = _number(float, lambda v: math.isfinite(v) and v > 0, "a positive number")
non_negative_float = _number(float, lambda v: math.isfinite(v) and v >= 0, "a non-negative number")
