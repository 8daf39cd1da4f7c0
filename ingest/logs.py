"""Structured logs: one JSON object a line, with the fields a call passed in ``extra``.

The one formatter for every process (``dropscore``'s commands and ``python -m ingest``), kept in
the bottom layer so ingest can use it without importing scoring. Fields: ``ts`` (UTC, ISO 8601,
milliseconds), ``level`` (lower case), ``logger``, ``event`` (the message), then the extras, then
``exception`` when there is one.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON line, so log shippers and tests read fields, not prose."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record's standard fields and its extras as one line of JSON."""
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        out.update(extras(record))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """Return the fields a call passed in ``extra``, for every formatter to render alike."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
