"""Log set-up for dropscore's commands: JSON lines for services, plain lines for people.

Services (``serve``, ``worker``, ``api``) log every event as JSON (``ingest.logs``) for log
shippers. Commands a person runs print their answer on standard output; their logs go to
standard error as short readable lines, warnings and errors only unless ``--verbose``.
"""

from __future__ import annotations

import logging
import sys

from ingest.logs import BoundFields, JsonFormatter, extras


class HumanFormatter(logging.Formatter):
    """Format a record as ``level: event (key=value, …)``, one line a person reads at a glance."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the level, the message and the extras a call passed, without a timestamp."""
        fields = ", ".join(f"{k}={v}" for k, v in extras(record).items())
        line = f"{record.levelname.lower()}: {record.getMessage()}"
        if fields:
            line += f" ({fields})"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str = "INFO", human: bool = False) -> None:
    """Send dropscore's logs to standard error, never standard output (a command's answer)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(HumanFormatter() if human else JsonFormatter())
    handler.addFilter(BoundFields())  # the model (and run) the work in hand is about
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("waitress.queue").setLevel("ERROR")
    logging.getLogger("watchdog").setLevel("WARNING")
