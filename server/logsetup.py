"""The daemon's log: text or JSON lines, on stderr or appended to a file.

Both formats stamp each line with an ISO 8601 time carrying its UTC offset
(``2025-01-31T14:02:03.123456+01:00``), so lines from hosts in different
zones sort and compare. A JSON line is one object: ``ts``, ``level``,
``logger``, ``msg``, the exception if any, and every field passed with
``extra=`` on the logging call.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from typing import Any

# The attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def timestamp(record: logging.LogRecord) -> str:
    """The record's time in the local zone, ISO 8601 with microseconds and offset."""
    return datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="microseconds")


class TextFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger>: <message>``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return timestamp(record)


class JsonFormatter(logging.Formatter):
    """One JSON object a line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry and not key.startswith("_"):
                entry[key] = value
        return json.dumps(entry, default=str, ensure_ascii=False)


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def setup_logging(level: str, log_format: str = "text", log_file: str = "") -> None:
    """Send pycrid's log (at ``level``) and libraries' warnings where the configuration says.

    Raises OSError when ``log_file`` cannot be opened for appending.
    """
    handler: logging.Handler = (
        logging.FileHandler(log_file, encoding="utf-8")
        if log_file
        else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    # Libraries stay at WARNING; the level is about pycrid's own lines.
    logging.getLogger("pycrid").setLevel(getattr(logging, level.upper()))
