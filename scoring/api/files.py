"""The file ledger over HTTP."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ingest.ledger import STATES
from scoring.api.context import services
from scoring.api.openapi import (
    ANY_OBJECT,
    INTEGER,
    STRING,
    array,
    json_response,
    nullable,
    obj,
    operation,
    query_param,
)
from scoring.api.params import int_arg
from scoring.errors import NotFound, ValidationFailed

bp = Blueprint("files", __name__)

FILE = obj(
    id=INTEGER,
    original_name=STRING,
    kind=STRING,
    state=STRING,
    size_bytes=nullable(INTEGER),
    sha256=nullable(STRING),
    rows=nullable(INTEGER),
    columns=nullable(INTEGER),
    format=nullable(STRING),
    column_map=nullable(ANY_OBJECT),
    error=nullable(ANY_OBJECT),
    model_version=nullable(STRING),
    received_at=STRING,
    finished_at=nullable(STRING),
)
STATE = {"type": "string", "enum": list(STATES)}


@bp.get("/files")
@operation(
    "The file ledger, newest first",
    query=[
        query_param("status", STATE, "only files in this ledger state"),
        query_param("state", STATE, "the same as status"),
        query_param("limit", {**INTEGER, "minimum": 1, "maximum": 1000}, "page size"),
        query_param("offset", {**INTEGER, "minimum": 0, "maximum": 10**9}, "files to skip"),
    ],
    responses={200: json_response(obj(files=array(FILE), limit=INTEGER, offset=INTEGER))},
    errors=(422,),
)
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


@bp.get("/files/<id:file_id>")
@operation("One file of the ledger", responses={200: json_response(FILE)})
def show_file(file_id: int) -> Response:
    """Show one ledger row: where the drop is and why it ended there."""
    record = services().ledger.get(file_id)
    if record is None:
        raise NotFound(f"file {file_id} is not in the ledger")
    return jsonify(record.to_dict())
