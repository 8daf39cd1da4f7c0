"""What the audit row of a state-changing request names: the model and the object acted on.

The version a promote named, the run a retrain started, the file a retry put back, and the
model each belongs to (version and run numbers count per model, so a number alone names
nothing). Path parameters name most of them; a view whose object is born in the request (the
dashboard's retrain: a run, answered with a redirect) says so with ``note``.
"""

from __future__ import annotations

from typing import Any

from flask import Response, g, request

from scoring.api.context import MODEL_KEY, services
from scoring.audit import AuditEntry

# What a view noted about the object it acted on, for the request's audit row.
NOTE_KEY = "audit_note"


def note(**fields: Any) -> None:
    """Name the object a state-changing request acted on (``run_id=…``) for its audit row."""
    g.setdefault(NOTE_KEY, {}).update(fields)


def entry_for(response: Response, key_name: str | None, role: str | None) -> AuditEntry:
    """Build the audit row of the request in hand: who, what, on which model and object."""
    found: dict[str, Any] = {k: v for k, v in (request.view_args or {}).items() if v is not None}
    body = response.get_json(silent=True) if response.is_json and not response.is_streamed else None
    if isinstance(body, dict) and _whole(body.get("run_id")) is not None:
        found.setdefault("run_id", body["run_id"])  # POST /train answers with the run it queued
    found.update(g.get(NOTE_KEY, {}))
    version = found.get("version")
    return AuditEntry(
        key_name=key_name,
        role=role,
        method=request.method,
        path=request.path,
        endpoint=request.endpoint,
        status=response.status_code,
        version=None if version is None else str(version),
        run_id=_whole(found.get("run_id")),
        model=g.get(MODEL_KEY) or services().root.name,
        file_id=_whole(found.get("file_id")),
    )


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
