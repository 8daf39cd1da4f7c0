"""MLflow's scoring protocol, so ``mlflow``'s clients score against dropscore unchanged.

``POST /invocations`` takes ``dataframe_split``, ``dataframe_records``, ``instances`` or
``inputs`` (JSON) or a ``text/csv`` body and answers ``{"predictions": [...]}``; ``GET /ping``
and ``GET /version`` answer as ``mlflow models serve`` does. Errors are MLflow's
``{"error_code", "message"}`` (built in ``scoring.api.errors``), without its stack traces.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from flask import Blueprint, Response, request

from scoring.api.context import services
from scoring.api.jsonio import json_response, request_json
from scoring.errors import UnsupportedMediaType
from scoring.inference.core import predict_many
from scoring.inference.payloads import csv_rows, mlflow_rows

bp = Blueprint("mlflow", __name__)

CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_CSV = "text/csv"


@bp.post("/invocations")
def invocations() -> Response:
    s = services()
    model = s.champion.current()
    limit = s.settings.server.max_rows_per_request
    mimetype = request.mimetype or CONTENT_TYPE_JSON
    if mimetype == CONTENT_TYPE_CSV:
        X = csv_rows(request.get_data(cache=False), model.schema, limit)
    elif mimetype == CONTENT_TYPE_JSON or mimetype.endswith("+json"):
        X = mlflow_rows(request_json(), model.schema, limit)
    else:
        raise UnsupportedMediaType(
            f"send Content-Type {CONTENT_TYPE_JSON} or {CONTENT_TYPE_CSV}, not {mimetype[:60]}"
        )
    out = predict_many(model, X)
    s.monitoring.rows_scored.labels("invocations").inc(len(out.values))
    return json_response({"predictions": out.values})


@bp.get("/ping")
def ping() -> Response:
    """Answer 200 once a model is loaded (MLflow's readiness probe), else 503."""
    if services().champion.peek() is None:
        return json_response({"status": "no model is loaded yet"}, status=503)
    return Response("\n", status=200, mimetype=CONTENT_TYPE_JSON)


@bp.get("/version")
def server_version() -> Response:
    """Answer the server's version as plain text, as ``mlflow models serve`` does."""
    try:
        text = version("dropscore")
    except PackageNotFoundError:  # running from a source tree that was never installed
        text = "unknown"
    return Response(text, mimetype="text/plain")
