"""Log set-up for dropscore's commands: JSON lines for services, plain lines for people.

Services (``serve``, ``worker``, ``api``) log every event as JSON (``ingest.base.logs``) for log
shippers. Commands a person runs print their answer on standard output; their logs go to
standard error as short readable lines, warnings and errors only unless ``--verbose``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ingest.base.logs import BoundFields, JsonFormatter, bound, bound_fields, extras


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


def child_setup() -> dict[str, Any]:
    """Describe how this process logs and the fields bound here, for a child it starts (the
    trainer) to log the same way, naming the same model and run."""
    root = logging.getLogger()
    human = any(isinstance(h.formatter, HumanFormatter) for h in root.handlers)
    level = logging.getLevelName(root.getEffectiveLevel())
    return {"level": level, "human": human, "fields": dict(bound_fields())}


@contextmanager
def logging_as(setup: dict[str, Any]) -> Iterator[None]:
    """Log as the parent described in ``child_setup``, its fields bound for the block."""
    configure_logging(setup.get("level", "WARNING"), human=bool(setup.get("human")))
    with bound(**setup.get("fields", {})):
        yield
