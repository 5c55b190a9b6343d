"""The log's formats: zoned ISO 8601 times in text and JSON, extra fields in JSON."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime

from pycrid.server.logsetup import JsonFormatter, TextFormatter, setup_logging

ZONED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d$")


def record(msg: str = "container %s started", *args: object, **extra: object) -> logging.LogRecord:
    made = logging.makeLogRecord(
        {"name": "pycrid.docker", "levelno": logging.INFO, "levelname": "INFO", "msg": msg}
    )
    made.args = args or ("abc",)
    made.__dict__.update(extra)
    return made


def test_a_json_line_has_time_level_logger_message_and_extra_fields() -> None:
    line = JsonFormatter().format(record(container_id="abc", exit_code=0))
    entry = json.loads(line)
    assert entry["msg"] == "container abc started"
    assert entry["level"] == "info"
    assert entry["logger"] == "pycrid.docker"
    assert entry["container_id"] == "abc"
    assert entry["exit_code"] == 0
    assert ZONED.match(entry["ts"]), entry["ts"]
    assert datetime.fromisoformat(entry["ts"]).utcoffset() is not None
    assert "\n" not in line


def test_a_json_line_carries_the_exception() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        import sys

        failed = record(exc_info=sys.exc_info())
    entry = json.loads(JsonFormatter().format(failed))
    assert "ValueError: bad" in entry["exc"]


def test_a_text_line_starts_with_a_zoned_time() -> None:
    line = TextFormatter().format(record())
    stamp, level, logger, *_ = line.split(" ")
    assert ZONED.match(stamp), stamp
    assert (level, logger) == ("INFO", "pycrid.docker:")
    assert line.endswith("container abc started")


def test_the_log_file_is_appended_to(tmp_path) -> None:
    path = tmp_path / "pycrid.log"
    path.write_text("earlier\n")
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("pycrid").level)
    try:
        setup_logging("info", "json", str(path))
        logging.getLogger("pycrid.test").info("hello", extra={"pod": "p1"})
        logging.getLogger("pycrid.test").debug("not at info")
        for handler in root.handlers:
            handler.flush()
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        logging.getLogger("pycrid").setLevel(saved[2])
    lines = path.read_text().splitlines()
    assert lines[0] == "earlier"
    assert [json.loads(line)["msg"] for line in lines[1:]] == ["hello"]
    assert json.loads(lines[1])["pod"] == "p1"
