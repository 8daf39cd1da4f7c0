"""The file ledger over HTTP."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ingest.ledger import STATES
from scoring.api.context import services
from scoring.api.params import int_arg
from scoring.errors import NotFound, ValidationFailed

bp = Blueprint("files", __name__)


@bp.get("/files")
def list_files() -> Response:
    state = request.args.get("status") or request.args.get("state")
    if state and state not in STATES:
        raise ValidationFailed(
            f"status {state!r} is not a ledger state; expected one of {', '.join(STATES)}",
            [{"field": "status", "problem": "unknown state"}],
        )
    limit = int_arg("limit", 100, 1, 1000)
    offset = int_arg("offset", 0, 0, 10**9)
    records = services().ledger.list(state=state, limit=limit, offset=offset)
    return jsonify({"files": [r.to_dict() for r in records], "limit": limit, "offset": offset})


@bp.get("/files/<int:file_id>")
def show_file(file_id: int) -> Response:
    record = services().ledger.get(file_id)
    if record is None:
        raise NotFound(f"file {file_id} is not in the ledger")
    return jsonify(record.to_dict())

