"""MLflow's scoring protocol, so ``mlflow``'s clients score against dropscore unchanged.

``POST /invocations`` takes ``dataframe_split``, ``dataframe_records``, ``instances`` or
``inputs`` (JSON) or a ``text/csv`` body and answers ``{"predictions": [...]}``; ``GET /ping``
and ``GET /version`` answer as ``mlflow models serve`` does. Errors are MLflow's
``{"error_code", "message"}`` (built in ``scoring.api.errors``), without its stack traces.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from scoring.api.context import services
from scoring.api.jsonio import json_response
from scoring.inference.core import predict_many, server_version
from scoring.inference.payloads import CONTENT_TYPE_JSON, invocation_rows

bp = Blueprint("mlflow", __name__)


@bp.post("/invocations")
def invocations() -> Response:
    """Score a JSON or CSV body as ``mlflow models serve`` does, with our validation."""
    s = services()
    model = s.champion.current()
    data = request.get_data(cache=False)
    limit = s.settings.server.max_rows_per_request
    out = predict_many(model, invocation_rows(data, request.mimetype, model.schema, limit))
    s.monitoring.rows_scored.labels("invocations").inc(len(out.values))
    return json_response({"predictions": out.values})


@bp.get("/ping")
def ping() -> Response:
    """Answer 200 once a model is loaded (MLflow's readiness probe), else 503."""
    if services().champion.peek() is None:
        return json_response({"status": "no model is loaded yet"}, status=503)
    return Response("\n", status=200, mimetype=CONTENT_TYPE_JSON)


@bp.get("/version")
def version() -> Response:
    """Answer the server's version as plain text, as ``mlflow models serve`` does."""
    return Response(server_version(), mimetype="text/plain")
