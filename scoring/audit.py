"""The audit trail: one row in ``state.db`` per state-changing request, naming the key that sent it.

It answers "who promoted version 7 of ``fair``?" and "who started run 12 of ``price``?" long after
the logs rotated: each row names the model the request acted on and the version, run or file it
acted on (version and run numbers count per model, so a number alone names nothing).
"""

from __future__ import annotations

import builtins
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Index, Integer, MetaData, Table, Text, select

from ingest.state.db import Migration, StateDB, add_column, create_tables

STORE = "audit"  # this store's name in schema_versions

META = MetaData()
AUDIT = Table(
    "audit",
    META,
    Column("id", Integer, primary_key=True, nullable=True),  # the rowid, declared as SQLite does
    Column("ts", Text, nullable=False),
    Column("key_name", Text),
    Column("role", Text),
    Column("method", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("endpoint", Text),
    Column("status", Integer, nullable=False),
    Column("version", Text),
    Column("run_id", Integer),
    Column("model", Text),
    Column("file_id", Integer),
    sqlite_autoincrement=True,  # an id is never reused, as every release made the table
)
Index("audit_key", AUDIT.c.key_name)

# Rows of a state.db made before models were named keep NULL in the columns added since.
STEPS = [
    Migration(1, "the audit table", create_tables(META, "audit")),
    Migration(2, "the model acted on", add_column("audit", "model", "TEXT")),
    Migration(3, "the file a retry put back", add_column("audit", "file_id", "INTEGER")),
]
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
    """The ``audit`` table: an ``AuditTrail`` in a state database."""

    def __init__(self, db: StateDB) -> None:
        self.db = db

    def _ready(self) -> StateDB:
        self.db.migrate(STORE, STEPS)  # once per process and database
        return self.db

    def record(self, entry: AuditEntry) -> int:
        """Append an entry, stamped now, and return its id."""
        fields = {k: v for k, v in entry.to_dict().items() if k != "id"}
        with self._ready().write() as conn:
            added: int = conn.execute(
                AUDIT.insert().values(**{**fields, "ts": now()}).returning(AUDIT.c.id)
            ).scalar_one()
        return added

    def list(
        self, limit: int = 50, offset: int = 0, key_name: str | None = None
    ) -> builtins.list[AuditEntry]:
        """Return entries newest first, optionally those of one key."""
        query = select(AUDIT).order_by(AUDIT.c.id.desc()).limit(limit).offset(offset)
        if key_name:
            query = query.where(AUDIT.c.key_name == key_name)
        with self._ready().read() as conn:
            rows = conn.execute(query).all()
        return [AuditEntry(**row._mapping) for row in rows]
