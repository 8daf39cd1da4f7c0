"""The file ledger over HTTP."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from ingest.ledger import STATES
from scoring.api.context import services
from scoring.api.params import page_args
from scoring.errors import NotFound

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

