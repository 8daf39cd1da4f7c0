"""Turn every error into JSON; no traceback or HTML page reaches a client.

One handler per kind of exception, one body builder: the body's shape follows the protocol the
request spoke (picked by blueprint, or by path for URLs no route matched). dropscore's own
endpoints answer ``{"error": {"code", "message", "details"}}``; MLflow's scoring protocol
``{"error_code", "message"}``; the Open Inference Protocol and KServe ``{"error": "..."}``.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, json, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ingest.base.errors import disk_full
from scoring.errors import DropscoreError, InsufficientStorage, error_body

log = logging.getLogger("dropscore.api")

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    503: "unavailable",
}
# MLflow's error codes (mlflow/protos/databricks.proto) for the statuses we answer.
MLFLOW_CODES = {
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    500: "INTERNAL_ERROR",
    503: "TEMPORARILY_UNAVAILABLE",
}
# Blueprint → the protocol whose error body it answers (KServe v1 shares OIP's).
PROTOCOLS = {"mlflow": "mlflow", "oip": "oip", "kserve": "oip"}


def json_error(status: int, code: str, message: str, details: list | None = None) -> Response:
    """Answer an error in the shape of the protocol this request spoke."""
    protocol = _protocol()
    if protocol == "mlflow":
        body: dict = {"error_code": MLFLOW_CODES.get(status, "BAD_REQUEST"), "message": message}
    elif protocol == "oip":
        body = {"error": message}
    else:
        body = error_body(code, message, details)
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _protocol() -> str:
    """The protocol a request spoke: its route's, or its path's when no route matched."""
    if not request:
        return "dropscore"
    if request.blueprint in PROTOCOLS:
        return PROTOCOLS[request.blueprint]
    if request.url_rule is None:
        path = request.path
        if path == "/invocations" or (
            path.startswith("/models/") and path.endswith(("/invocations", "/ping"))
        ):  # MLflow's paths, plain or under a model name that matched no route
            return "mlflow"
        if path == "/v2" or path.startswith(("/v2/", "/v1/")):
            return "oip"
    return "dropscore"


def register_error_handlers(app: Flask) -> None:
    """Send every error, ours or werkzeug's or unexpected, through one body builder."""

    @app.errorhandler(DropscoreError)
    def _ours(exc: DropscoreError) -> Response:
        if exc.status == 500:
            log.error("request failed", extra={"code": exc.code, "error": exc.message})
        return json_error(exc.status, exc.code, exc.message, exc.details)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        response = json_error(status, HTTP_CODES.get(status, "http_error"), exc.description or "")
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        if disk_full(exc):  # anywhere a request writes (its scored output, say): a 507, not a 500
            log.error("disk full", extra={"error": str(exc), "path": request.path})
            full = InsufficientStorage(
                "the server's disk is full, so the answer could not be written; retry later,"
                " or send it to another replica"
            )
            return json_error(full.status, full.code, full.message)
        log.exception("unhandled error")
        return json_error(500, "internal_error", "the server failed; the error was logged")
