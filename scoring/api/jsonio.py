"""JSON in and out for every endpoint: the guarded body parser, and strict JSON answers.

Strict means no ``NaN``/``Infinity`` ever leaves the server (DESIGN.md guarantee 9): the Flask
JSON provider writes them as null, and ``json_response`` (the scoring answers, whose
non-finite predictions the core already refused) refuses them outright.
"""

from __future__ import annotations

import json
import math
from typing import Any

from flask import Response, request
from flask.json.provider import DefaultJSONProvider

from scoring.inference.body import parse_json


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's provider for ``jsonify``, answering strict JSON: a non-finite float is null.

    Model cards hold NaN where a metric is undefined (R² of one row, ROC AUC of a hold-out
    missing a class); those are reported as null rather than as ``NaN``, which is not JSON.
    """

    sort_keys = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        """Serialize like Flask does; replace NaN and Infinity with null when there are any."""
        kwargs.setdefault("allow_nan", False)
        try:
            return super().dumps(obj, **kwargs)
        except ValueError:
            return super().dumps(_finite(obj), **kwargs)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def request_json() -> Any:
    """Parse the body as JSON whatever the content type says: curl -d sends form encoding."""
    return parse_json(request.get_data(cache=False))


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Answer strict JSON, faster than ``jsonify`` on the single-row path."""
    text = json.dumps(body, allow_nan=False)
    return Response(text, status=status, mimetype="application/json", headers=headers)
