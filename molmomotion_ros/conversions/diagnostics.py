"""A one-status ``diagnostic_msgs/DiagnosticArray``: how nodes report a stage's health on /diagnostics."""

from __future__ import annotations

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from .errors import ConversionError

LEVELS = {"OK": DiagnosticStatus.OK, "WARN": DiagnosticStatus.WARN, "ERROR": DiagnosticStatus.ERROR,
          "STALE": DiagnosticStatus.STALE}
MAX_MESSAGE_CHARS = 300  # a status line, not a dump (a 10 kB instruction must not be echoed whole)


def diagnostic_array(node_name: str, stage: str, level: str, message: str, stamp: Time,
                     values: dict | None = None, hardware_id: str = "") -> DiagnosticArray:
    """``DiagnosticArray`` with one status named ``"<node>: <topic or stage>"``.

    ``level`` is OK | WARN | ERROR | STALE; ``values`` become string key/values (in insertion order).
    """
    if level not in LEVELS:
        raise ConversionError(f"diagnostic level must be one of {', '.join(LEVELS)}, got {level!r}")
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 3] + "..."
    status = DiagnosticStatus(level=LEVELS[level], name=f"{node_name}: {stage}", message=message,
                              hardware_id=hardware_id,
                              values=[KeyValue(key=str(k), value=str(v)) for k, v in (values or {}).items()])
    msg = DiagnosticArray(status=[status])
    msg.header.stamp = stamp
    return msg
