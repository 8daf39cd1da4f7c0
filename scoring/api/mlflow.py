"""MLflow's scoring protocol, so ``mlflow``'s clients score against dropscore unchanged.

``POST /invocations`` takes ``dataframe_split``, ``dataframe_records``, ``instances`` or
``inputs`` (JSON), a ``text/csv`` or an ``application/vnd.apache.parquet`` body and answers
``{"predictions": [...]}``; ``GET /ping`` and ``GET /version`` answer as ``mlflow models serve``
does. Each model answers at ``/models/<name>/invocations`` (and ``/ping``); the plain paths
serve the default model, and their errors name it and where the others are. Errors are MLflow's
``{"error_code", "message"}`` (built in ``scoring.api.errors``), without its stack traces.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from scoring.api import openapi as oa
from scoring.api.context import services
from scoring.api.jsonio import json_response
from scoring.api.protocol import Protocol
from scoring.api.request_ids import request_id
from scoring.api.versioning import VERSION_QUERY, requested_version
from scoring.errors import BadRequest, ValidationFailed
from scoring.inference.core import server_version
from scoring.inference.payloads import CONTENT_TYPE_JSON, MB, invocation_rows

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
        "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
    },
}
ERRORS = oa.protocol_errors(oa.MLFLOW_ERROR, (400, 401, 403, 404, 413, 415, 422, 503))
# MLflow's error codes (mlflow/protos/databricks.proto) for the statuses we answer.
MLFLOW_CODES = {
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    500: "INTERNAL_ERROR",
    503: "TEMPORARILY_UNAVAILABLE",
}


def error_body(status: int, code: str, message: str, details: list | None) -> dict:
    """MLflow's error body, ``{"error_code", "message"}``, without its stack traces."""
    return {"error_code": MLFLOW_CODES.get(status, "BAD_REQUEST"), "message": message}


@bp.post("/invocations")
@bp.post("/models/<model:model>/invocations")
@oa.operation(
    "MLflow scoring protocol: score rows as `mlflow models serve` does; /invocations answers"
    " for the default model, /models/<name>/invocations for that one",
    body=INVOCATION_BODY,
    query=[VERSION_QUERY],
    responses={200: oa.response_object(oa.obj(predictions=oa.array({}))), **ERRORS},
)
def invocations() -> Response:
    """Score a JSON, CSV or Parquet body as ``mlflow models serve`` does, with our validation."""
    s = services()
    m = s.model()  # the request's model, looked up once
    model = s.dataplane.model(m.versions, requested_version())
    data = request.get_data(cache=False)
    limit = m.settings.server.max_rows_per_request
    max_bytes = int(m.settings.server.max_json_mb * MB)
    try:
        X = invocation_rows(data, request.mimetype, model.schema, limit, max_bytes)
        out = s.dataplane.predict(m.name, model, X, "invocations", request_id())
    except (BadRequest, ValidationFailed) as exc:
        raise type(exc)(_answered_by(m.name, model.version, exc.message), exc.details) from None
    return json_response({"predictions": out.values})


def _answered_by(name: str, version: str, message: str) -> str:
    """Say which model refused the rows, and where the others are when the URL named none.

    ``/invocations`` serves the default model only, so a client sending another model's columns
    there learns which model answered and the URL that serves the one it meant.
    """
    text = f"model {name!r} (version {version}): {message}"
    others = [n for n in services().models if n != name]
    if others and not request.path.startswith("/models/"):
        where = ", ".join(f"{n!r}, at /models/{n}/invocations" for n in others)
        text += f"; this server also serves {where}"
    return text


@bp.get("/ping")
# Any segment, not only a well-formed name: a probe is open, so a name that matched no route
# would be a 401 (auth guards unmatched paths); here it is the 404 naming the models.
@bp.get("/models/<model>/ping")
@oa.operation(
    "MLflow's readiness probe: 200 once a model is loaded (open, like /health)",
    responses={
        200: {"description": "A model is loaded", "content": {"application/json": {}}},
        503: oa.response_object(oa.obj(status=oa.STRING), "No model is loaded yet"),
        **oa.protocol_errors(oa.MLFLOW_ERROR, (404,)),
    },
)
def ping() -> Response:
    """Answer 200 once the model (the default, or the one the path names) is loaded, else 503."""
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


PROTOCOL = Protocol(
    blueprint=bp,
    error_body=error_body,
    roles={"invocations": "predict", "version": "predict"},
    open=frozenset({"ping"}),  # MLflow's readiness probe, open like /health
    paths=("/invocations",),
    model_paths=("/invocations", "/ping"),  # under a model name that matched no route too
    default_model=True,  # the plain /invocations answers for the default model
)
