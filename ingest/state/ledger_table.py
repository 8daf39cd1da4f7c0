"""The ``files`` table of ``state.db``: its schema, connections, stored paths and queries.

``ingest.state.ledger.Ledger`` adds the guarded state transitions on top; everything here only
reads, so the API, the dashboard and the CLI list and show drops through the same queries.
"""

from __future__ import annotations

import builtins
import contextlib
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingest.base.names import undecodable
from ingest.state.records import (
    BY_BYTES,
    STATES,
    FileRecord,
    IllegalTransition,
)
from ingest.state.sqlite import add_column, connect, transaction

# The states a row may hold, declared from ``ingest.state.records.STATES`` (the one list of them).
_STATES_CHECK = "CHECK (state IN (" + ", ".join(f"'{state}'" for state in STATES) + "))"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    original_name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('train', 'score')),
    size_bytes INTEGER,
    sha256 TEXT,
    state TEXT NOT NULL
        {_STATES_CHECK},
    rows INTEGER,
    columns INTEGER,
    format TEXT,
    encoding TEXT,
    delimiter TEXT,
    column_map TEXT,
    error TEXT,
    lake_path TEXT,
    archive_path TEXT,
    quarantine_path TEXT,
    duplicate_of INTEGER REFERENCES files (id),
    attempts INTEGER NOT NULL DEFAULT 0,
    processing_path TEXT UNIQUE,
    output_path TEXT,
    model_version TEXT,
    rows_scored INTEGER,
    rows_failed INTEGER,
    scoring_claimed_at TEXT,
    scoring_claims INTEGER NOT NULL DEFAULT 0,
    received_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT,
    scored_at TEXT
);
CREATE INDEX IF NOT EXISTS files_kind_sha ON files (kind, sha256);
CREATE INDEX IF NOT EXISTS files_state ON files (state, kind);
CREATE INDEX IF NOT EXISTS files_finished ON files (finished_at);
"""

# Columns added since the first release (``add_column`` gives an older state.db them too).
_ADDED = {
    "content_sha256": "TEXT",
    "duplicate_by": "TEXT CHECK (duplicate_by IN ('bytes', 'content'))",
    "retried_as": "INTEGER REFERENCES files (id)",
    "queued_as": "TEXT",
}
_ADDED_INDEX = "CREATE INDEX IF NOT EXISTS files_kind_content ON files (kind, content_sha256)"
# Every duplicate before content hashes was one by bytes; say so, once, in an older state.db.
_BACKFILL = (
    f"UPDATE files SET duplicate_by = '{BY_BYTES}' "
    "WHERE state = 'duplicate' AND duplicate_by IS NULL"
)
# The state CHECK of a state.db made before a state was added; SQLite cannot alter a CHECK.
_STATE_CHECK = re.compile(r"CHECK\s*\(\s*state\s+IN\s*\([^)]*\)\s*\)", re.IGNORECASE)
_TABLE_NAME = re.compile(r"^CREATE\s+TABLE\s+[\"'`\[]?files[\"'`\]]?", re.IGNORECASE)


class LedgerTable:
    """The ``files`` table of ``state.db``: safe to share across threads and processes."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)
        self.data_dir = self.db_path.parent
        self._schema_lock = threading.Lock()
        self._schema_ready = False

    # -- connections -----------------------------------------------------------------------

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        """Create the table once per Ledger, lazily, so constructing one does no I/O."""
        if self._schema_ready:
            return
        with self._schema_lock:
            if self._schema_ready:
                return
            conn.executescript(_SCHEMA)
            for column, decl in _ADDED.items():
                add_column(conn, "files", column, decl)
            conn.execute(_ADDED_INDEX)
            conn.execute(_BACKFILL)
            widen_states(conn)
            self._schema_ready = True

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """Yield a connection for reads, closed afterwards."""
        conn = connect(self.db_path)  # our own: connections must not cross threads or forks
        try:
            self._ensure_schema(conn)
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """Yield a connection inside ``BEGIN IMMEDIATE``: the write lock is taken up front."""
        conn = connect(self.db_path)
        try:
            self._ensure_schema(conn)
            with transaction(conn):
                yield conn
        finally:
            conn.close()

    def initialize(self) -> None:
        """Create the table now, so a bad database path fails at start-up, not on a drop."""
        with self._read():
            pass

    # -- paths -----------------------------------------------------------------------------

    def relative(self, path: Path | str | None) -> str | None:
        """Store a path relative to the data folder when it lies inside it."""
        if path is None:
            return None
        p = Path(path)
        if p.is_absolute():
            with contextlib.suppress(ValueError):
                return p.relative_to(self.data_dir).as_posix()
            with contextlib.suppress(ValueError, OSError):
                return p.resolve().relative_to(self.data_dir.resolve()).as_posix()
            return str(p)
        return p.as_posix()

    def resolve(self, stored: str | None) -> Path | None:
        """Turn a stored path back into one the filesystem understands."""
        if stored is None:
            return None
        p = Path(stored)
        return p if p.is_absolute() else self.data_dir / p

    # -- reads -----------------------------------------------------------------------------

    def get(self, file_id: int) -> FileRecord | None:
        """Return one drop, or None when no such id exists."""
        with self._read() as conn:
            row = conn.execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()
        return FileRecord.from_row(row) if row else None

    def _require(self, conn: sqlite3.Connection, file_id: int) -> FileRecord:
        """Fetch a row inside a transaction, raising when it is missing."""
        row = conn.execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()
        if row is None:
            raise IllegalTransition(f"no file with id {file_id} in the ledger")
        return FileRecord.from_row(row)

    def list(
        self,
        state: str | None = None,
        kind: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> list[FileRecord]:
        """Return drops newest first, optionally filtered, a page at a time."""
        where, args = _filters(state=state, kind=kind)
        sql = f"SELECT * FROM files {where} ORDER BY id DESC LIMIT ? OFFSET ?"
        with self._read() as conn:
            rows = conn.execute(sql, (*args, -1 if limit is None else limit, offset)).fetchall()
        return [FileRecord.from_row(r) for r in rows]

    def counts_by_state(self) -> dict[str, int]:
        """Return how many drops are in each state, every state present, for metrics."""
        with self._read() as conn:
            rows = conn.execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall()
        counts = dict.fromkeys(STATES, 0)
        counts.update({state: n for state, n in rows})
        return counts

    def last_ingest(self) -> FileRecord | None:
        """Return the drop whose ingest finished last, for ``/health``."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT * FROM files WHERE finished_at IS NOT NULL "
                "ORDER BY finished_at DESC, id DESC LIMIT 1"
            ).fetchone()
        return FileRecord.from_row(row) if row else None

    def find_by_sha(self, kind: str, sha256: str) -> FileRecord | None:
        """Return the first drop of this content that is, or is becoming, a lake file."""
        with self._read() as conn:
            return first_live(conn, kind, sha256)

    def find_by_content(
        self, kind: str, content_sha256: str, excluding: int | None = None
    ) -> FileRecord | None:
        """Return the first live drop whose normalized table has this content hash."""
        with self._read() as conn:
            return first_live_content(conn, kind, content_sha256, excluding)

    def find_by_processing_path(self, path: Path | str) -> FileRecord | None:
        """Return the drop that claimed this file in ``processing/``, if it got that far.

        A path holding bytes that are not text (a claim an older release named after the raw
        drop) was never stored, so it has no drop: it is not looked up.
        """
        stored = self.relative(path)
        if stored is None or undecodable(stored):
            return None
        with self._read() as conn:
            row = conn.execute(
                "SELECT * FROM files WHERE processing_path = ?", (stored,)
            ).fetchone()
        return FileRecord.from_row(row) if row else None

    def pending_score(self, limit: int | None = None) -> builtins.list[FileRecord]:
        """Return normalized score drops with no output yet, oldest first, for the sweep."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT * FROM files WHERE kind = 'score' AND state = 'normalized' "
                "AND output_path IS NULL ORDER BY id LIMIT ?",
                (-1 if limit is None else limit,),
            ).fetchall()
        return [FileRecord.from_row(r) for r in rows]

    def has_normalized(self, kind: str) -> bool:
        """Tell whether any drop of this kind ever reached the lake."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT 1 FROM files WHERE kind = ? AND state IN ('normalized', 'scored') LIMIT 1",
                (kind,),
            ).fetchone()
        return row is not None

    # -- writes ----------------------------------------------------------------------------


def _filters(**conditions: str | None) -> tuple[str, tuple[str, ...]]:
    """Build a WHERE clause from the non-empty conditions."""
    used = {k: v for k, v in conditions.items() if v is not None}
    if not used:
        return "", ()
    return "WHERE " + " AND ".join(f"{k} = ?" for k in used), tuple(used.values())


def first_live(
    conn: sqlite3.Connection, kind: str, sha256: str, before: int | None = None
) -> FileRecord | None:
    """Return the earliest live drop of this content, the one a duplicate points at."""
    sql = (
        "SELECT * FROM files WHERE kind = ? AND sha256 = ? "
        "AND state IN ('received', 'normalized', 'scored')"
    )
    args: tuple[Any, ...] = (kind, sha256)
    if before is not None:
        sql += " AND id < ?"
        args = (*args, before)
    row = conn.execute(sql + " ORDER BY id LIMIT 1", args).fetchone()
    return FileRecord.from_row(row) if row else None


def first_live_content(
    conn: sqlite3.Connection, kind: str, content_sha256: str, excluding: int | None = None
) -> FileRecord | None:
    """Return the earliest live drop with this normalized content, the one a duplicate names.

    Only a committed drop (normalized or scored) has a content hash, so the match is the drop
    that committed this content first, whatever the ids' order.
    """
    row = conn.execute(
        "SELECT * FROM files WHERE kind = ? AND content_sha256 = ? AND id != ? "
        "AND state IN ('received', 'normalized', 'scored') ORDER BY id LIMIT 1",
        (kind, content_sha256, -1 if excluding is None else excluding),
    ).fetchone()
    return FileRecord.from_row(row) if row else None


def widen_states(conn: sqlite3.Connection) -> None:
    """Give an older ``files`` table the state CHECK of this release, rows and ids kept.

    SQLite cannot change a CHECK in place, so the table is copied into one declared the same
    but for that CHECK (SQLite's documented rebuild: foreign keys off, one transaction, the
    AUTOINCREMENT counter carried over). A second process that gets there first wins; this one
    then finds the CHECK current and changes nothing.
    """
    wanted = _STATES_CHECK
    if wanted in _table_sql(conn):
        return
    conn.execute("PRAGMA foreign_keys=OFF")  # not inside a transaction: SQLite ignores it there
    try:
        with transaction(conn):
            sql = _table_sql(conn)
            if wanted in sql:
                return
            seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'files'").fetchone()
            widened = _STATE_CHECK.sub(wanted, sql, count=1)
            conn.execute(_TABLE_NAME.sub("CREATE TABLE files_widened", widened, count=1))
            conn.execute("INSERT INTO files_widened SELECT * FROM files")
            conn.execute("DROP TABLE files")
            conn.execute("ALTER TABLE files_widened RENAME TO files")
            if seq is not None:
                conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'files'", (seq[0],))
            for statement in _SCHEMA.split(";"):
                if "CREATE INDEX" in statement:
                    conn.execute(statement)
            conn.execute(_ADDED_INDEX)
    finally:
        conn.execute("PRAGMA foreign_keys=ON")


def _table_sql(conn: sqlite3.Connection) -> str:
    """Return the ``CREATE TABLE`` statement SQLite keeps for ``files``."""
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'files'")
    return str(row.fetchone()[0])
