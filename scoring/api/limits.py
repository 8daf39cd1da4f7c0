"""Request body limits per endpoint: small for JSON, large (and bounded by free disk) for uploads.

``/score-file`` spools its upload to disk and scores it in bounded memory, so its cap is
``[server] max_upload_mb`` and the free space of the folder it spools to; every other body is
read into memory and capped by ``[server] max_json_mb``. A body announced too large is refused
before a byte of it is read, with a 413 (or 507) naming the setting; a body without
Content-Length is cut off at the same limit by werkzeug while it is read.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from flask import Flask, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from scoring.api.errors import json_error
from scoring.errors import InsufficientStorage, PayloadTooLarge
from scoring.settings import Settings

MB = 1024 * 1024
# Endpoints whose body is a file streamed to disk; every other endpoint reads JSON into memory.
UPLOAD_ENDPOINTS = frozenset({"score.score_file"})
# Disk an upload needs besides itself: the scored output is about as large as the input.
DISK_FACTOR = 2


def spool_dir(settings: Settings) -> Path:
    """Return where uploads are spooled: the data folder, on disk (``/tmp`` may be memory)."""
    return settings.data_dir


def body_limit(settings: Settings, endpoint: str | None) -> tuple[str, float]:
    """Return the setting that caps this endpoint's body and its value in MB."""
    if endpoint in UPLOAD_ENDPOINTS:
        return "max_upload_mb", settings.server.max_upload_mb
    return "max_json_mb", settings.server.max_json_mb


def too_large(name: str, limit_mb: float, size: int | None = None) -> PayloadTooLarge:
    """Build the 413 that names the limit, so a client knows what to change or ask for."""
    sent = f"the request body ({_mb(size)} MB)" if size is not None else "the request body"
    return PayloadTooLarge(
        f"{sent} is over [server] {name} = {limit_mb:g} MB",
        [{"setting": f"server.{name}", "limit_mb": limit_mb}],
    )


def check_disk(folder: Path, size: int) -> None:
    """Raise 507 when the folder's disk cannot hold an upload of ``size`` bytes and its output."""
    free = shutil.disk_usage(folder).free
    if size * DISK_FACTOR > free:
        raise InsufficientStorage(
            f"the upload ({_mb(size)} MB) and its scored output need about"
            f" {_mb(size * DISK_FACTOR)} MB; the server has {_mb(free)} MB free",
            [{"needed_mb": round(size * DISK_FACTOR / MB, 1), "free_mb": round(free / MB, 1)}],
        )


def register_body_limits(app: Flask, settings: Settings) -> None:
    """Cap every request's body by its endpoint's limit before the view reads it."""

    @app.before_request
    def _limit() -> None:
        name, limit_mb = body_limit(settings, request.endpoint)
        limit = int(limit_mb * MB)
        request.max_content_length = limit  # werkzeug cuts off a body without Content-Length
        size = request.content_length
        if size is not None and size > limit:
            raise too_large(name, limit_mb, size)
        if size and request.endpoint in UPLOAD_ENDPOINTS:
            check_disk(spool_dir(settings), size)

    @app.errorhandler(RequestEntityTooLarge)
    def _cut_off(_exc: RequestEntityTooLarge) -> Response:
        """A body without Content-Length ran over its limit while it was read."""
        error = too_large(*body_limit(settings, request.endpoint))
        return json_error(error.status, error.code, error.message, error.details)


def _mb(size: int) -> str:
    return f"{size / MB:,.1f}" if size >= MB / 10 else f"{size / MB:.4f}"
