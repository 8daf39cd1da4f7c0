"""The one guarded JSON parser for every JSON endpoint: hostile bodies become a 400, never a 500.

``json.loads`` alone accepts ``NaN``/``Infinity`` (not JSON), builds integers of any length (a
400-digit one overflows later, deep in numpy), and raises ``RecursionError`` on deep nesting.
"""

from __future__ import annotations

import json
from typing import Any

from scoring.errors import BadRequest

MAX_INT_DIGITS = 300  # float() of a longer integer overflows; no feature value is that long


def parse_json(data: bytes) -> Any:
    """Parse a request body as strict JSON, naming what is wrong without echoing it."""
    if not data:
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        return json.loads(data, parse_int=_parse_int, parse_constant=_refuse_constant)
    except _Refused as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("the request body is not valid JSON: nested too deeply") from None
    except UnicodeDecodeError:
        raise BadRequest("the request body is not valid JSON: it is not UTF-8 text") from None
    except ValueError as exc:  # json.JSONDecodeError, and int() refusing a huge literal
        raise BadRequest(f"the request body is not valid JSON: {_position(exc)}") from None


class _Refused(ValueError):
    pass


def _parse_int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS + 1:
        raise _Refused(f"an integer longer than {MAX_INT_DIGITS} digits")
    return int(text)


def _refuse_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON value; send null for a missing value")


def _position(exc: ValueError) -> str:
    """Say where parsing stopped: the decoder's message names a position, not the content."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return "a value cannot be read"
