"""MLflow's scoring protocol, so ``mlflow``'s clients score against dropscore unchanged.

``POST /invocations`` takes ``dataframe_split``, ``dataframe_records``, ``instances`` or
``inputs`` (JSON) or a ``text/csv`` body and answers ``{"predictions": [...]}``; ``GET /ping``
and ``GET /version`` answer as ``mlflow models serve`` does. Errors are MLflow's
``{"error_code", "message"}`` (built in ``scoring.api.errors``), without its stack traces.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from scoring.api import openapi as oa
from scoring.api.context import services
from scoring.api.jsonio import json_response
from scoring.inference.core import predict_many, server_version
from scoring.inference.payloads import CONTENT_TYPE_JSON, invocation_rows

bp = Blueprint("mlflow", __name__)

_ROWS = oa.array({"description": "a row: a list by position, or an object by name"})
INVOCATION_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "anyOf": [
                    oa.obj(
                        dataframe_split=oa.obj(
                            optional=["index"],
                            columns=oa.array(oa.STRING),
                            data=_ROWS,
                            index=oa.array({}),
                        )
                    ),
                    oa.obj(dataframe_records=_ROWS),
                    oa.obj(instances=_ROWS),
                    oa.obj(inputs={"description": "rows, or an object of columns"}),
                ]
            },
            "examples": {
                "dataframe_split": {
                    "value": {"dataframe_split": {"columns": ["bmi"], "data": [[0.06]]}}
                }
            },
        },
        "text/csv": {"schema": oa.STRING},
    },
}
ERRORS = oa.protocol_errors(oa.MLFLOW_ERROR, (400, 401, 403, 413, 415, 422, 503))


@bp.post("/invocations")
@oa.operation(
    "MLflow scoring protocol: score rows as `mlflow models serve` does",
    body=INVOCATION_BODY,
    responses={200: oa.json_response(oa.obj(predictions=oa.array({}))), **ERRORS},
)
def invocations() -> Response:
    """Score a JSON or CSV body as ``mlflow models serve`` does, with our validation."""
    s = services()
    m = s.model()  # the request's model, looked up once
    model = m.champion.current()
    data = request.get_data(cache=False)
    limit = m.settings.server.max_rows_per_request
    out = predict_many(model, invocation_rows(data, request.mimetype, model.schema, limit))
    s.monitoring.rows_scored.labels("invocations", m.name).inc(len(out.values))
    return json_response({"predictions": out.values})


@bp.get("/ping")
@oa.operation(
    "MLflow's readiness probe: 200 once a model is loaded (open, like /health)",
    responses={
        200: {"description": "A model is loaded", "content": {"application/json": {}}},
        503: oa.json_response(oa.obj(status=oa.STRING), "No model is loaded yet"),
    },
)
def ping() -> Response:
    """Answer 200 once a model is loaded (MLflow's readiness probe), else 503."""
    if services().champion.peek() is None:
        return json_response({"status": "no model is loaded yet"}, status=503)
    return Response("\n", status=200, mimetype=CONTENT_TYPE_JSON)


@bp.get("/version")
@oa.operation(
    "The server's version, as plain text (MLflow's /version)",
    responses={
        200: {"description": "OK", "content": {"text/plain": {"schema": oa.STRING}}},
        **oa.protocol_errors(oa.MLFLOW_ERROR, (401, 403)),
    },
)
def version() -> Response:
    """Answer the server's version as plain text, as ``mlflow models serve`` does."""
    return Response(server_version(), mimetype="text/plain")
