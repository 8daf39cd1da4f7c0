"""What the ledger knows of one drop: its states, its record, and the ledger's clock.

Kept apart from the ``Ledger`` (the ``files`` table and its guarded transitions) so code that only
reads records — the API, the dashboard, the CLI — names them without the table's machinery.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the type only: listing states must not load SQLAlchemy (every command does)
    from sqlalchemy import RowMapping

RECEIVED = "received"
NORMALIZED = "normalized"
SCORED = "scored"
QUARANTINED = "quarantined"
DUPLICATE = "duplicate"
RETRIED = "retried"  # a quarantined drop taken again: ``retried_as`` names the new drop
STATES = (RECEIVED, NORMALIZED, SCORED, QUARANTINED, DUPLICATE, RETRIED)
TERMINAL_STATES = (NORMALIZED, SCORED, QUARANTINED, DUPLICATE, RETRIED)  # normalized: train drops
LIVE_STATES = (RECEIVED, NORMALIZED, SCORED)  # content that is, or is becoming, a lake file
BY_BYTES = "bytes"  # a duplicate whose file's sha256 matched a live drop's
BY_CONTENT = "content"  # a duplicate whose normalized table matched a live drop's
SAME_AS = {BY_BYTES: "same bytes", BY_CONTENT: "same content"}  # how people read duplicate_by


class IllegalTransition(ValueError):
    """A state change the ledger's state machine does not allow, or a row that does not exist."""


def utc_now() -> str:
    """Return the current time as ISO-8601 UTC with a fixed width, so strings sort as times."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_ago(seconds: float) -> str:
    """Return the ISO time ``seconds`` ago in the same fixed-width form as ``utc_now``."""
    return (datetime.now(UTC) - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class FileRecord:
    """One drop as the ledger knows it; ``to_dict`` is its ``GET /files`` body."""

    id: int
    original_name: str  # the dropped name in its stored form (``ingest.base.names.escape``)
    kind: str
    size_bytes: int | None
    sha256: str | None
    content_sha256: str | None  # the normalized table's hash (ingest/lake/content.py)
    state: str
    rows: int | None
    columns: int | None
    format: str | None
    encoding: str | None
    delimiter: str | None
    column_map: dict[str, str] | None
    error: dict[str, Any] | None
    lake_path: str | None
    archive_path: str | None
    quarantine_path: str | None
    duplicate_of: int | None
    duplicate_by: str | None  # "bytes" or "content": how the drop matched ``duplicate_of``
    retried_as: int | None  # the drop a retry made of this one, once the watcher took its copy
    queued_as: str | None  # the name its retry's copy waits under in the inbox
    attempts: int
    processing_path: str | None
    output_path: str | None
    model_version: str | None
    rows_scored: int | None
    rows_failed: int | None
    scoring_claimed_at: str | None
    scoring_claims: int
    received_at: str
    updated_at: str
    finished_at: str | None
    scored_at: str | None
    drift: str | None = None  # a scored drop's drift verdict: drifted, stable or not_compared

    @property
    def file_id(self) -> int:
        """Return the ledger id under the name the API and logs use."""
        return self.id

    @property
    def terminal(self) -> bool:
        """Tell whether ingest is done with this drop (a normalized drop may still be scored)."""
        return self.state in TERMINAL_STATES

    @property
    def details(self) -> str:
        """Say in a few words what the state alone does not: why, a duplicate of what, as what.

        The CLI's and the dashboard's one wording: ``duplicate of 12 (same bytes)``, ``retried
        as 15``, a quarantined drop's error message.
        """
        if self.state == DUPLICATE:
            same = SAME_AS.get(self.duplicate_by or BY_BYTES, "same content")
            return f"duplicate of {self.duplicate_of} ({same})"
        if self.state == RETRIED:
            if self.retried_as is not None:
                return f"retried as {self.retried_as}"
            return f"retried: its copy waits in the inbox as {self.queued_as}"
        if self.error:
            return str(self.error.get("message") or "no reason was recorded")
        return ""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict, so API and CLI show the same fields."""
        return asdict(self)

    @classmethod
    def from_row(cls, row: RowMapping) -> FileRecord:
        """Build a record from a ``files`` row (any backend's), decoding the JSON columns."""
        values = {f.name: row[f.name] for f in fields(cls)}
        for key in ("column_map", "error"):
            if values[key] is not None:
                values[key] = json.loads(values[key])
        return cls(**values)
