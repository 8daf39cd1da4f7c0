"""Structured logs: one JSON object a line, with the fields a call passed in ``extra``.

The one formatter for every process (``dropscore``'s commands and ``python -m ingest``), kept in
the bottom layer so ingest can use it without importing scoring. Fields: ``ts`` (UTC, ISO 8601,
milliseconds), ``level`` (lower case), ``logger``, ``event`` (the message), then the extras, then
``exception`` when there is one.

Fields that hold for a whole stretch of work (the model a drop, a run or a request is about, the
run a retrain is) are bound once where that work starts (``bound``) and reach every record logged
inside it, down to the readers and the lake, through ``BoundFields`` on the handler: a call site
cannot forget them, and two models' events are told apart by a field, not by guesswork.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Concatenate, ParamSpec, TypeVar

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}

# The fields bound around the work in hand. A context variable, not a global: each thread (and
# each request) sees only what its own callers bound, and the binding ends with their block.
_BOUND: ContextVar[Mapping[str, Any]] = ContextVar(
    "dropscore_log_fields", default=MappingProxyType({})
)

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add fields to every record logged inside the block, in this thread, by any logger."""
    token = _BOUND.set({**_BOUND.get(), **fields})
    try:
        yield
    finally:
        _BOUND.reset(token)


def bound_fields() -> Mapping[str, Any]:
    """Return the fields bound around the code running now."""
    return _BOUND.get()


def bound_to(
    fields: Callable[[S], Mapping[str, Any]],
) -> Callable[[Callable[Concatenate[S, P], R]], Callable[Concatenate[S, P], R]]:
    """Bind the fields the first argument names (its model) around each call of a function."""

    def wrap(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
        @functools.wraps(method)
        def call(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
            with bound(**fields(self)):
                return method(self, *args, **kwargs)

        return call

    return wrap


class BoundFields(logging.Filter):
    """Stamp each record with the bound fields; a field the call passed itself wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the bound fields the record does not carry; never drop a record."""
        for key, value in _BOUND.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


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
