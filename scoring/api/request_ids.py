"""The client's id for a request (``X-Request-Id``), which the dataplane's observers receive.

Taken only when it is short printable ASCII, so a log or a prediction record that carries it
can never be flooded or broken by a hostile header; otherwise the request has no id.
"""

from __future__ import annotations

from flask import request

HEADER = "X-Request-Id"
MAX_LENGTH = 128


def request_id(given: str | None = None) -> str | None:
    """Return the id a protocol's body gave, else the ``X-Request-Id`` header's, else None."""
    raw = given if given is not None else request.headers.get(HEADER)
    if raw is None or not 0 < len(raw) <= MAX_LENGTH or not (raw.isascii() and raw.isprintable()):
        return None
    return raw
