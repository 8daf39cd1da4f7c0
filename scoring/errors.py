"""Errors that carry their HTTP status and a stable code, and the one JSON body they become.

The scoring core raises these without knowing about Flask; the API's single handler turns them
(and every werkzeug ``HTTPException``) into ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

from typing import Any


class DropscoreError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.details)


class BadRequest(DropscoreError):
    status, code = 400, "bad_request"


class Unauthorized(DropscoreError):
    status, code = 401, "unauthorized"


class Forbidden(DropscoreError):
    """A valid key whose role is too low for the endpoint; the message names the role needed."""

    status, code = 403, "forbidden"


class NotFound(DropscoreError):
    status, code = 404, "not_found"


class Conflict(DropscoreError):
    status, code = 409, "conflict"


class PayloadTooLarge(DropscoreError):
    status, code = 413, "too_large"


class UnsupportedMediaType(DropscoreError):
    status, code = 415, "unsupported_media_type"


class ValidationFailed(DropscoreError):
    status, code = 422, "invalid_input"


class NoModel(DropscoreError):
    status, code = 503, "no_model"


class InsufficientStorage(DropscoreError):
    """An upload the server's disk cannot hold now; it may fit later or on another replica."""

    status, code = 507, "insufficient_storage"


class ModelFileError(DropscoreError):
    """A model file that is missing, corrupt, or holds types we do not trust."""

    status, code = 500, "model_file"


def error_body(code: str, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    """Build the one error shape every endpoint returns."""
    return {"error": {"code": code, "message": message, "details": details or []}}
