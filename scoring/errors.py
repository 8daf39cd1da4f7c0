"""Errors that carry their HTTP status and a stable code, and the one JSON body they become.

The scoring core raises these without knowing about Flask; the API's single handler turns them
(and every werkzeug ``HTTPException``) into ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

from typing import Any


class DropscoreError(Exception):
    """An error a client caused or must know about; carries its HTTP status and code."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def body(self) -> dict[str, Any]:
        """Return the JSON error body every error path answers with."""
        return error_body(self.code, self.message, self.details)


class BadRequest(DropscoreError):
    """The request cannot be read (bad JSON, a bad parameter)."""

    status, code = 400, "bad_request"


class Unauthorized(DropscoreError):
    """No API key, or one that does not work."""

    status, code = 401, "unauthorized"


class Forbidden(DropscoreError):
    """A valid key whose role is too low for the endpoint; the message names the role needed."""

    status, code = 403, "forbidden"


class NotFound(DropscoreError):
    """The named resource does not exist."""

    status, code = 404, "not_found"


class Conflict(DropscoreError):
    """The request clashes with the current state (e.g. a retrain already running)."""

    status, code = 409, "conflict"


class PayloadTooLarge(DropscoreError):
    """The body or file is bigger than the server accepts."""

    status, code = 413, "too_large"


class UnsupportedMediaType(DropscoreError):
    """The body's content type is not one this endpoint reads."""

    status, code = 415, "unsupported_media_type"


class ValidationFailed(DropscoreError):
    """The request was read but its content is wrong; details say where."""

    status, code = 422, "invalid_input"


class NoModel(DropscoreError):
    """No champion is loaded yet, so nothing can be scored."""

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
