"""Log set-up for dropscore's commands: the one JSON formatter (``ingest.logs``) on stderr."""

from __future__ import annotations

import logging
import sys

from ingest.logs import JsonFormatter


def configure_logging(level: str = "INFO") -> None:
    """Send every dropscore log line, as JSON, to standard error."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("waitress.queue").setLevel("ERROR")
    logging.getLogger("watchdog").setLevel("WARNING")
