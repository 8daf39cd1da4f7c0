"""The audit trail: one row in ``state.db`` per state-changing request, naming the key that sent it.

It answers "who promoted version 7 of ``fair``?" and "who started run 12 of ``price``?" long after
the logs rotated: each row names the model the request acted on and the version, run or file it
acted on (version and run numbers count per model, so a number alone names nothing).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingest.state.sqlite import Tables

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    ts       TEXT NOT NULL,
    key_name TEXT,
    role     TEXT,
    method   TEXT NOT NULL,
    path     TEXT NOT NULL,
    endpoint TEXT,
    status   INTEGER NOT NULL,
    version  TEXT,
    run_id   INTEGER,
    model    TEXT,
    file_id  INTEGER
);
CREATE INDEX IF NOT EXISTS audit_key ON audit(key_name);
"""
# Columns a state.db made by an older release lacks (its rows name no model: NULL).
_ADDED = {"audit": {"model": "TEXT", "file_id": "INTEGER"}}
# The columns ``dropscore audit`` shows, in the order ``AuditEntry.table_row`` fills them.
TABLE_HEADER = ["time", "key", "role", "request", "status", "model", "object"]


def now() -> str:
    """Stamp records as ``lifecycle.registry.now`` does, without loading scikit-learn for keys."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class AuditEntry:
    """One state-changing request: who (key name and role), what, and how it ended."""

    key_name: str | None  # None while no key exists and the API is open
    role: str | None
    method: str
    path: str
    endpoint: str | None
    status: int
    version: str | None = None  # the model version a promote named
    run_id: int | None = None  # the run a train started
    model: str | None = None  # the model acted on (None: a row from before models were named)
    file_id: int | None = None  # the drop a retry put back
    ts: str = ""
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape of ``GET /audit`` and ``dropscore audit --json``."""
        return asdict(self)

    @property
    def subject(self) -> str:
        """Name what the request acted on: ``version 3``, ``run 12``, ``file 7`` (or nothing)."""
        named = [("version", self.version), ("run", self.run_id), ("file", self.file_id)]
        return ", ".join(f"{word} {value}" for word, value in named if value is not None)

    def table_row(self) -> list[str]:
        """Return the row ``dropscore audit`` prints, under ``TABLE_HEADER``."""
        return [
            self.ts[:19],
            self.key_name or "(no key)",
            self.role or "",
            f"{self.method} {self.path}",
            str(self.status),
            self.model or "",
            self.subject,
        ]


class AuditLog:
    """The ``audit`` table; a connection per call keeps it safe across threads and forks."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self._db = Tables(db_path, _SCHEMA, _ADDED).connect

    def record(self, entry: AuditEntry) -> int:
        """Append an entry, stamped now, and return its id."""
        with self._db() as conn:
            cur = conn.execute(
                "INSERT INTO audit (ts, key_name, role, method, path, endpoint, status, version,"
                " run_id, model, file_id) VALUES (:ts, :key_name, :role, :method, :path,"
                " :endpoint, :status, :version, :run_id, :model, :file_id)",
                {**entry.to_dict(), "ts": now()},
            )
            return int(cur.lastrowid or 0)

    def list(
        self, limit: int = 50, offset: int = 0, key_name: str | None = None
    ) -> list[AuditEntry]:
        """Return entries newest first, optionally those of one key."""
        where, args = ("WHERE key_name=?", [key_name]) if key_name else ("", [])
        with self._db() as conn:
            rows = conn.execute(
                f"SELECT * FROM audit {where} ORDER BY id DESC LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
        return [AuditEntry(**dict(r)) for r in rows]
