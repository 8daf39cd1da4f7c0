"""``GET /audit``: who changed what, newest first (admin keys only)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ingest.state.db import StateDB
from scoring.api.context import services
from scoring.api.openapi import (
    ANY_OBJECT,
    INTEGER,
    STRING,
    array,
    obj,
    operation,
    query_param,
    response_object,
)
from scoring.api.params import int_arg
from scoring.audit import AuditLog

bp = Blueprint("audit", __name__)


@bp.get("/audit")
@operation(
    "State-changing requests and the keys that sent them, newest first",
    query=[
        query_param("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size"),
        query_param("offset", {"type": "integer", "minimum": 0}, "entries to skip"),
        query_param("key", STRING, "only this key's entries"),
    ],
    responses={200: response_object(obj(audit=array(ANY_OBJECT), limit=INTEGER, offset=INTEGER))},
    errors=(422,),
)
def list_audit() -> Response:
    """List state-changing requests and the keys that sent them; ``?key=NAME`` for one key."""
    limit = int_arg("limit", 50, 1, 1000)
    offset = int_arg("offset", 0, 0, 10**9)
    key_name = request.args.get("key") or None
    entries = AuditLog(StateDB.at(services().settings.shared_db_path)).list(limit, offset, key_name)
    return jsonify({"audit": [e.to_dict() for e in entries], "limit": limit, "offset": offset})
