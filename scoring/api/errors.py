"""Turn every error into JSON; no traceback or HTML page reaches a client.

One handler per kind of exception, one body builder: the body's shape follows the protocol the
request spoke (picked by blueprint, or by path for URLs no route matched). dropscore's own
endpoints answer ``{"error": {"code", "message", "details"}}``; each other protocol answers the
shape its declaration gives (``scoring.api.adapters``).
"""

from __future__ import annotations

import logging

from flask import Flask, Response, json, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ingest.base.errors import disk_full
from scoring.api.adapters import PROTOCOLS
from scoring.api.protocol import Protocol, protocol_of_blueprint
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


def json_error(status: int, code: str, message: str, details: list | None = None) -> Response:
    """Answer an error in the shape of the protocol this request spoke."""
    protocol = _protocol()
    if protocol is None:
        body = error_body(code, message, details)
    else:
        body = protocol.error_body(status, code, message, details)
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _protocol() -> Protocol | None:
    """The protocol a request spoke: its route's, or its path's when no route matched; None
    for dropscore's own."""
    if not request:
        return None
    found = protocol_of_blueprint(PROTOCOLS, request.blueprint)
    if found is None and request.url_rule is None:
        found = next((p for p in PROTOCOLS if p.owns_path(request.path)), None)
    return found


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
