"""The file ledger over HTTP."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify, send_file

from ingest.ledger import QUARANTINED, STATES
from scoring.api.context import services
from scoring.api.params import page_args
from scoring.errors import Conflict, NotFound

bp = Blueprint("files", __name__)


@bp.get("/files")
def list_files() -> Response:
    """List ledger records, optionally of one state (``?status=`` or ``?state=``)."""
    page = page_args(STATES, "ledger", 100, "status", "state")
    records = services().ledger.list(state=page.state, limit=page.limit, offset=page.offset)
    return jsonify(
        {"files": [r.to_dict() for r in records], "limit": page.limit, "offset": page.offset}
    )


@bp.get("/files/<int:file_id>")
def show_file(file_id: int) -> Response:
    record = services().ledger.get(file_id)
    if record is None:
        raise NotFound(f"file {file_id} is not in the ledger")
    return jsonify(record.to_dict())


# -- retry and downloads (the dashboard's Files page calls the same functions) -----------------


def requeue(ledger: Any, file_id: int) -> str:
    """Copy a quarantined original back into its inbox under a fresh name; return that name.

    The copy is a new drop with a new ledger row: dedupe only counts live drops (received,
    normalized, scored), so content that was quarantined is never refused as its own duplicate.
    The copy is written under a dotted name (which the watcher ignores) and renamed into place.
    """
    record = _record(ledger, file_id)
    if record.state != QUARANTINED:
        raise Conflict(f"file {file_id} is {record.state}; only quarantined files can be retried")
    original = _stored(ledger, record.quarantine_path, file_id, "quarantined original")
    inbox = ledger.data_dir / "inbox" / record.kind
    inbox.mkdir(parents=True, exist_ok=True)
    name = f"retry{file_id}-{secrets.token_hex(3)}__{Path(record.original_name).name}"
    tmp = inbox / f".{name}.tmp"
    shutil.copyfile(original, tmp)
    os.replace(tmp, inbox / name)
    return name


def stored_file(ledger: Any, file_id: int, which: str) -> Path:
    """Return the original (archived or quarantined) or scored output of a drop, from the ledger."""
    record = _record(ledger, file_id)
    if which == "output":
        return _stored(ledger, record.output_path, file_id, "scored output")
    stored = record.quarantine_path if record.state == QUARANTINED else record.archive_path
    return _stored(ledger, stored, file_id, "original")


@bp.post("/files/<int:file_id>/retry")
def retry_file(file_id: int) -> tuple[Response, int]:
    """Re-queue a quarantined drop; the new drop shows up in the ledger once ingested."""
    name = requeue(services().ledger, file_id)
    return jsonify({"file_id": file_id, "queued_as": name}), 202


@bp.get("/files/<int:file_id>/original")
def download_original(file_id: int) -> Response:
    path = stored_file(services().ledger, file_id, "original")
    return send_file(path, as_attachment=True, download_name=_name(path), max_age=0)


@bp.get("/files/<int:file_id>/output")
def download_output(file_id: int) -> Response:
    path = stored_file(services().ledger, file_id, "output")
    return send_file(path, as_attachment=True, download_name=_name(path), max_age=0)


def _record(ledger: Any, file_id: int) -> Any:
    record = ledger.get(file_id)
    if record is None:
        raise NotFound(f"file {file_id} is not in the ledger")
    return record


def _stored(ledger: Any, stored: str | None, file_id: int, what: str) -> Path:
    """Resolve a ledger path, refusing anything outside the data folder or no longer there."""
    path = ledger.resolve(stored)
    root = ledger.data_dir.resolve()
    if path is None or not path.resolve().is_relative_to(root) or not path.is_file():
        raise NotFound(f"file {file_id} has no {what} on disk")
    return path


def _name(path: Path) -> str:
    """Offer the stored name without the ledger's ``<id>__`` prefix."""
    return path.name.split("__", 1)[-1]
