"""Turn every error into the one JSON shape; no traceback or HTML page reaches a client."""

from __future__ import annotations

import logging

from flask import Flask, Response, json
from werkzeug.exceptions import HTTPException

from scoring.errors import DropscoreError, error_body

log = logging.getLogger("dropscore.api")

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    503: "unavailable",
}


def json_error(status: int, code: str, message: str, details: list | None = None) -> Response:
    body = json.dumps(error_body(code, message, details))
    return Response(body, status=status, mimetype="application/json")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DropscoreError)
    def _ours(exc: DropscoreError) -> Response:
        if exc.status == 500:
            log.error("request failed", extra={"code": exc.code, "error": exc.message})
        return json_error(exc.status, exc.code, exc.message, exc.details)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        response = json_error(status, HTTP_CODES.get(status, "http_error"), exc.description or "")
        if status == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return json_error(500, "internal_error", "the server failed; the error was logged")
