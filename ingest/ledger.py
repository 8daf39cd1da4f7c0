"""The file ledger: one SQLite row per drop, so every file's fate survives crashes and restarts.

The ledger lives in the product's shared ``state.db`` and owns only the ``files`` table. Every
call opens its own connection (WAL, a long busy timeout), so threads and processes can share one
database file without sharing a connection. State changes are single guarded ``UPDATE``
statements: a transition from a state it does not allow changes nothing and raises
``IllegalTransition``, which is how two writers racing on one row stay correct.

Paths are stored relative to the data folder (the folder holding ``state.db``) in POSIX form,
so ``GET /files`` never shows a server's absolute layout; ``Ledger.resolve`` turns them back.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ingest.sqlite import connect, transaction

RECEIVED = "received"
NORMALIZED = "normalized"
SCORED = "scored"
QUARANTINED = "quarantined"
DUPLICATE = "duplicate"
STATES = (RECEIVED, NORMALIZED, SCORED, QUARANTINED, DUPLICATE)
TERMINAL_STATES = (NORMALIZED, SCORED, QUARANTINED, DUPLICATE)  # normalized: for train drops
LIVE_STATES = (RECEIVED, NORMALIZED, SCORED)  # content that is, or is becoming, a lake file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    original_name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('train', 'score')),
    size_bytes INTEGER,
    sha256 TEXT,
    state TEXT NOT NULL
        CHECK (state IN ('received', 'normalized', 'scored', 'quarantined', 'duplicate')),
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


class IllegalTransition(ValueError):
    """A state change the ledger's state machine does not allow, or a row that does not exist."""


def utc_now() -> str:
    """Return the current time as ISO-8601 UTC with a fixed width, so strings sort as times."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _iso_ago(seconds: float) -> str:
    """Return the ISO time ``seconds`` ago in the same fixed-width form as ``utc_now``."""
    return (datetime.now(UTC) - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class FileRecord:
    """One drop as the ledger knows it; ``to_dict`` is its ``GET /files`` body."""

    id: int
    original_name: str
    kind: str
    size_bytes: int | None
    sha256: str | None
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

    @property
    def file_id(self) -> int:
        """Return the ledger id under the name the API and logs use."""
        return self.id

    @property
    def terminal(self) -> bool:
        """Tell whether ingest is done with this drop (a normalized drop may still be scored)."""
        return self.state in TERMINAL_STATES

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict, so API and CLI show the same fields."""
        return asdict(self)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> FileRecord:
        """Build a record from a ``files`` row, decoding the JSON columns."""
        values = {f.name: row[f.name] for f in fields(cls)}
        for key in ("column_map", "error"):
            if values[key] is not None:
                values[key] = json.loads(values[key])
        return cls(**values)


class Ledger:
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
            return _first_live(conn, kind, sha256)

    def find_by_processing_path(self, path: Path | str) -> FileRecord | None:
        """Return the drop that claimed this file in ``processing/``, if it got that far."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT * FROM files WHERE processing_path = ?", (self.relative(path),)
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

    def receive(
        self,
        *,
        original_name: str,
        kind: str,
        size_bytes: int | None,
        sha256: str | None,
        processing_path: Path | str | None,
        rejected: dict[str, Any] | None = None,
        archive_name: str | None = None,
    ) -> FileRecord:
        """Record a claimed drop and decide duplicates in the same transaction.

        The row is ``received``; or ``duplicate`` (with ``duplicate_of`` and its archive path)
        when a live drop of the same kind already has this content; or ``quarantined`` at once
        when ``rejected`` carries an error found before the content was read (a file too large).
        Deciding in one ``BEGIN IMMEDIATE`` makes dedupe race-free across processes.
        """
        now = utc_now()
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO files (original_name, kind, size_bytes, sha256, state, "
                "processing_path, received_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    original_name,
                    kind,
                    size_bytes,
                    sha256,
                    RECEIVED,
                    self.relative(processing_path),
                    now,
                    now,
                ),
            )
            file_id = int(cur.lastrowid or 0)
            stored = archive_name or original_name
            if rejected is not None:
                conn.execute(
                    "UPDATE files SET state = ?, error = ?, quarantine_path = ?, "
                    "finished_at = ? WHERE id = ?",
                    (
                        QUARANTINED,
                        json.dumps(rejected),
                        f"quarantine/{file_id}__{stored}",
                        now,
                        file_id,
                    ),
                )
            elif sha256 is not None:
                earlier = _first_live(conn, kind, sha256, before=file_id)
                if earlier is not None:
                    conn.execute(
                        "UPDATE files SET state = ?, duplicate_of = ?, archive_path = ?, "
                        "finished_at = ? WHERE id = ?",
                        (DUPLICATE, earlier.id, f"archive/{file_id}__{stored}", now, file_id),
                    )
            return self._require(conn, file_id)

    def start_attempt(self, file_id: int) -> int:
        """Count one more processing attempt and return the count, before any work is done."""
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE files SET attempts = attempts + 1, updated_at = ? "
                "WHERE id = ? AND state = 'received'",
                (utc_now(), file_id),
            )
            if cur.rowcount == 0:
                _refuse(conn, file_id, "start an attempt on")
            return int(
                conn.execute("SELECT attempts FROM files WHERE id = ?", (file_id,)).fetchone()[0]
            )

    def rehash(self, file_id: int, *, size_bytes: int, sha256: str) -> FileRecord:
        """Record the new content of a received drop that changed while it was being read.

        Dedupe is decided again in the same transaction, as ``receive`` does: the drop becomes
        a ``duplicate`` when an earlier live drop of its kind already has the new content.
        """
        now = utc_now()
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE files SET size_bytes = ?, sha256 = ?, updated_at = ? "
                "WHERE id = ? AND state = 'received'",
                (size_bytes, sha256, now, file_id),
            )
            if cur.rowcount == 0:
                _refuse(conn, file_id, "record new content for")
            record = self._require(conn, file_id)
            earlier = _first_live(conn, record.kind, sha256, before=file_id)
            if earlier is not None:
                conn.execute(
                    "UPDATE files SET state = ?, duplicate_of = ?, archive_path = ?, "
                    "finished_at = ? WHERE id = ?",
                    (
                        DUPLICATE,
                        earlier.id,
                        f"archive/{file_id}__{record.original_name}",
                        now,
                        file_id,
                    ),
                )
            return self._require(conn, file_id)

    def mark_normalized(
        self,
        file_id: int,
        *,
        rows: int,
        columns: int,
        format: str | None,
        encoding: str | None,
        delimiter: str | None,
        column_map: dict[str, str],
        lake_path: Path | str,
        archive_path: Path | str,
    ) -> FileRecord:
        """Record that the drop is in the lake: the commit point of a successful ingest."""
        now = utc_now()
        return self._transition(
            file_id,
            (RECEIVED,),
            NORMALIZED,
            rows=rows,
            columns=columns,
            format=format,
            encoding=encoding,
            delimiter=delimiter,
            column_map=json.dumps(column_map),
            lake_path=self.relative(lake_path),
            archive_path=self.relative(archive_path),
            error=None,
            finished_at=now,
        )

    def mark_quarantined(
        self, file_id: int, *, error: dict[str, Any], quarantine_path: Path | str
    ) -> FileRecord:
        """Record that the drop was rejected and where its original and error record go."""
        return self._transition(
            file_id,
            (RECEIVED,),
            QUARANTINED,
            error=json.dumps(error),
            quarantine_path=self.relative(quarantine_path),
            finished_at=utc_now(),
        )

    def mark_score_refused(
        self, file_id: int, *, error: dict[str, Any], quarantine_path: Path | str
    ) -> FileRecord:
        """Quarantine a normalized drop the model cannot use (missing target or features).

        Only an unscored drop can be rejected; its ``archive_path`` stays as history of
        where the original was, and the intake moves it to ``quarantine_path``.
        """
        now = utc_now()
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE files SET state = 'quarantined', error = ?, quarantine_path = ?, "
                "scoring_claimed_at = NULL, finished_at = ?, updated_at = ? "
                "WHERE id = ? AND state = 'normalized' AND output_path IS NULL",
                (json.dumps(error), self.relative(quarantine_path), now, now, file_id),
            )
            if cur.rowcount == 0:
                _refuse(conn, file_id, "reject after normalizing")
            return self._require(conn, file_id)

    def mark_duplicate(
        self, file_id: int, *, duplicate_of: int, archive_path: Path | str
    ) -> FileRecord:
        """Record that the content was already taken, so nothing new enters the lake."""
        return self._transition(
            file_id,
            (RECEIVED,),
            DUPLICATE,
            duplicate_of=duplicate_of,
            archive_path=self.relative(archive_path),
            finished_at=utc_now(),
        )

    def mark_scored(
        self,
        file_id: int,
        output_path: Path | str,
        model_version: str,
        rows_scored: int,
        rows_failed: int,
    ) -> FileRecord:
        """Record the scorer's output; refused unless the drop is a normalized score drop."""
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE files SET state = 'scored', output_path = ?, model_version = ?, "
                "rows_scored = ?, rows_failed = ?, scored_at = ?, updated_at = ?, "
                "scoring_claimed_at = NULL "
                "WHERE id = ? AND state = 'normalized' AND kind = 'score'",
                (
                    self.relative(output_path),
                    str(model_version),
                    rows_scored,
                    rows_failed,
                    utc_now(),
                    utc_now(),
                    file_id,
                ),
            )
            if cur.rowcount == 0:
                _refuse(conn, file_id, "mark as scored")
            return self._require(conn, file_id)

    def claim_for_scoring(self, file_id: int, *, stale_after: float = 900.0) -> bool:
        """Claim a drop for scoring; exactly one caller across processes wins.

        A claim older than ``stale_after`` seconds is taken to belong to a scorer that crashed,
        and can be taken again. ``mark_scored`` or ``release_scoring_claim`` ends a claim.
        """
        now = utc_now()
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE files SET scoring_claimed_at = ?, scoring_claims = scoring_claims + 1, "
                "updated_at = ? WHERE id = ? AND kind = 'score' AND state = 'normalized' "
                "AND output_path IS NULL "
                "AND (scoring_claimed_at IS NULL OR scoring_claimed_at < ?)",
                (now, now, file_id, _iso_ago(stale_after)),
            )
            return cur.rowcount == 1

    def release_scoring_claim(self, file_id: int) -> None:
        """Give a claim back after a failed scoring run, so the next sweep retries at once."""
        with self._write() as conn:
            conn.execute(
                "UPDATE files SET scoring_claimed_at = NULL, updated_at = ? "
                "WHERE id = ? AND state = 'normalized'",
                (utc_now(), file_id),
            )

    def _transition(
        self, file_id: int, allowed_from: tuple[str, ...], to: str, **values: Any
    ) -> FileRecord:
        """Apply a guarded state change: nothing changes unless the row is in ``allowed_from``."""
        values["state"] = to
        values["updated_at"] = utc_now()
        assignments = ", ".join(f"{key} = ?" for key in values)
        marks = ", ".join("?" for _ in allowed_from)
        with self._write() as conn:
            cur = conn.execute(
                f"UPDATE files SET {assignments} WHERE id = ? AND state IN ({marks})",
                (*values.values(), file_id, *allowed_from),
            )
            if cur.rowcount == 0:
                _refuse(conn, file_id, f"move to {to}")
            return self._require(conn, file_id)


def _filters(**conditions: str | None) -> tuple[str, tuple[str, ...]]:
    """Build a WHERE clause from the non-empty conditions."""
    used = {k: v for k, v in conditions.items() if v is not None}
    if not used:
        return "", ()
    return "WHERE " + " AND ".join(f"{k} = ?" for k in used), tuple(used.values())


def _first_live(
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


def _refuse(conn: sqlite3.Connection, file_id: int, action: str) -> None:
    """Raise the reason a guarded update changed nothing."""
    row = conn.execute("SELECT state, kind FROM files WHERE id = ?", (file_id,)).fetchone()
    if row is None:
        raise IllegalTransition(f"no file with id {file_id} in the ledger")
    raise IllegalTransition(
        f"cannot {action} file {file_id}: it is a {row['kind']} drop in state '{row['state']}'"
    )
