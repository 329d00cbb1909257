"""Logging for mailq's own processes: one line per event, the event's fields as key=value,
secrets redacted (mailq.redaction)."""

from __future__ import annotations

import logging
import sys

from mailq.redaction import redact

_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = " ".join(
            f"{key}={value}"
            for key, value in record.__dict__.items()
            if key not in _STANDARD and not key.startswith("_")
        )
        # Whatever a message quotes (a URL with its password, a driver's error), never secrets.
        return redact(f"{line} {extras}" if extras else line)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        KeyValueFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("mailq").setLevel(level.upper())
    logging.getLogger("service").setLevel(level.upper())
