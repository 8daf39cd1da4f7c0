"""JSON in and out for every endpoint: the guarded body parser, and strict JSON answers.

Strict means no ``NaN``/``Infinity`` ever leaves the server (DESIGN.md guarantee 9): the Flask
JSON provider and ``json_response`` both refuse them, so a non-finite value is a bug that
surfaces as a logged 500, never as a body a strict client cannot read.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response, request
from flask.json.provider import DefaultJSONProvider

from scoring.inference.body import parse_json


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's provider with ``allow_nan=False``, for ``jsonify`` and ``app.json``."""

    sort_keys = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        """Serialize like Flask does, refusing NaN and Infinity."""
        kwargs.setdefault("allow_nan", False)
        return super().dumps(obj, **kwargs)


def request_json() -> Any:
    """Parse the body as JSON whatever the content type says: curl -d sends form encoding."""
    return parse_json(request.get_data(cache=False))


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Answer strict JSON, faster than ``jsonify`` on the single-row path."""
    text = json.dumps(body, allow_nan=False)
    return Response(text, status=status, mimetype="application/json", headers=headers)
