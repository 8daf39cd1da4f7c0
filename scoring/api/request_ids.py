"""The client's id for a request (``X-Request-Id``), which the dataplane's observers receive.

Taken only when it is short printable ASCII, so a log or a prediction record that carries it
can never be flooded or broken by a hostile header; otherwise the request gets a generated one.
A scoring request's id is echoed in the answer's ``X-Request-Id`` header, so a client that sent
none learns the id its prediction was logged under (and a label can name it later).
"""

from __future__ import annotations

import uuid

from flask import Flask, Response, g, has_request_context, request

HEADER = "X-Request-Id"
MAX_LENGTH = 128
_KEY = "request_id"  # flask.g: the id a scoring view used, echoed in the answer


def request_id(given: str | None = None) -> str:
    """Return the id a protocol's body gave, else the ``X-Request-Id`` header's, else a new one."""
    raw = given if given is not None else request.headers.get(HEADER)
    if raw is None or not 0 < len(raw) <= MAX_LENGTH or not (raw.isascii() and raw.isprintable()):
        raw = uuid.uuid4().hex
    g.setdefault(_KEY, raw)
    return raw


def register_request_ids(app: Flask) -> None:
    """Echo a scoring request's id in its answer's ``X-Request-Id`` header."""

    @app.after_request
    def _echo(response: Response) -> Response:
        found = g.get(_KEY) if has_request_context() else None
        if found is not None:
            response.headers[HEADER] = found
        return response
