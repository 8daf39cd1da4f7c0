"""The one JSON log line: fixed field names, extras kept, strict JSON even for odd values."""

from __future__ import annotations

import json
import logging
import math
import sys
from datetime import datetime

from ingest.base.logs import JsonFormatter


def _record(**extra: object) -> logging.LogRecord:
    logger = logging.getLogger("dropscore.test")
    return logger.makeRecord(
        "dropscore.test", logging.WARNING, "f.py", 1, "took %s", ("x",), None, extra=extra
    )


def test_fields_are_ts_level_logger_event_then_extras() -> None:
    line = JsonFormatter().format(_record(file="a.csv", rows=3))
    body = json.loads(line)
    assert list(body) == ["ts", "level", "logger", "event", "file", "rows"]
    assert body["level"] == "warning" and body["logger"] == "dropscore.test"
    assert body["event"] == "took x" and body["file"] == "a.csv" and body["rows"] == 3
    assert datetime.fromisoformat(body["ts"]).utcoffset() is not None


def test_exceptions_and_unserializable_extras_stay_one_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record(path=object(), ratio=math.pi)
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    body = json.loads(line)
    assert "ValueError: boom" in body["exception"] and body["ratio"] == math.pi
