"""``GET /audit``: who changed what, newest first (admin keys only)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from scoring.api.context import services
from scoring.api.params import int_arg
from scoring.audit import AuditLog

bp = Blueprint("audit", __name__)


@bp.get("/audit")
def list_audit() -> Response:
    """List state-changing requests and the keys that sent them; ``?key=NAME`` for one key."""
    limit = int_arg("limit", 50, 1, 1000)
    offset = int_arg("offset", 0, 0, 10**9)
    key_name = request.args.get("key") or None
    entries = AuditLog(services().settings.db_path).list(limit, offset, key_name)
    return jsonify({"audit": [e.to_dict() for e in entries], "limit": limit, "offset": offset})
