"""The audit trail: one row in ``state.db`` per state-changing request, naming the key that sent it.

It answers "who promoted version 7?" and "who started run 12?" long after the logs rotated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingest.sqlite import Tables

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
    run_id   INTEGER
);
CREATE INDEX IF NOT EXISTS audit_key ON audit(key_name);
"""


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
    ts: str = ""
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape of ``GET /audit`` and ``dropscore audit --json``."""
        return asdict(self)


class AuditLog:
    """The ``audit`` table; a connection per call keeps it safe across threads and forks."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self._db = Tables(db_path, _SCHEMA).connect

    def record(self, entry: AuditEntry) -> int:
        """Append an entry, stamped now, and return its id."""
        with self._db() as conn:
            cur = conn.execute(
                "INSERT INTO audit (ts, key_name, role, method, path, endpoint, status, version,"
                " run_id) VALUES (:ts, :key_name, :role, :method, :path, :endpoint, :status,"
                " :version, :run_id)",
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
