"""The ``files`` table's reads and stored paths, through the state database's one policy.

``ingest.state.ledger.Ledger`` adds the guarded state transitions on top; everything here only
reads, so the API, the dashboard and the CLI list and show drops through the same queries. The
table itself and its migrations are ``ingest.state.ledger_schema``'s.
"""

from __future__ import annotations

import builtins
import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Select, bindparam, func, or_, select

from ingest.base.names import undecodable
from ingest.state.db import StateDB
from ingest.state.ledger_schema import FILES, MIGRATIONS, STORE
from ingest.state.locks import AdvisoryLocks, Lock, Locks
from ingest.state.records import (
    LIVE_STATES,
    NORMALIZED,
    RECEIVED,
    SCORED,
    STATES,
    FileRecord,
    IllegalTransition,
    iso_ago,
)

# The statements of the per-drop path, built once: SQLAlchemy then reuses each one's cache key
# and compiled form, and only the bound values change. ``_ROWS`` is every column, in the
# record's terms (``FileRecord.from_row``).
_ROWS = select(FILES)
_BY_ID = _ROWS.where(FILES.c.id == bindparam("b_id"))
_BY_PROCESSING_PATH = _ROWS.where(FILES.c.processing_path == bindparam("b_path"))
_LIVE_BY_SHA = _ROWS.where(
    FILES.c.kind == bindparam("b_kind"),
    FILES.c.sha256 == bindparam("b_sha256"),
    FILES.c.state.in_(LIVE_STATES),
).order_by(FILES.c.id)
_FIRST_LIVE = _LIVE_BY_SHA.limit(1)
_FIRST_LIVE_BEFORE = _LIVE_BY_SHA.where(FILES.c.id < bindparam("b_before")).limit(1)
_FIRST_LIVE_CONTENT = (
    _ROWS.where(
        FILES.c.kind == bindparam("b_kind"),
        FILES.c.content_sha256 == bindparam("b_content"),
        FILES.c.id != bindparam("b_excluding"),
        FILES.c.state.in_(LIVE_STATES),
    )
    .order_by(FILES.c.id)
    .limit(1)
)


def presence_name(holder: str) -> str:
    """Name the advisory lock a replica holds for its life, after its claim id."""
    return f"replica:{holder}"


class LedgerTable:
    """The ``files`` table of a state database: safe to share across threads and processes."""

    def __init__(self, db: StateDB, data_dir: Path | None = None) -> None:
        self.db = db
        folder = data_dir if data_dir is not None else db.path and db.path.parent
        if folder is None:
            raise ValueError("a ledger on a database server needs its data folder named")
        self.data_dir = Path(folder)
        # Who claims the drops this ledger receives: this machine's data folder. On a database
        # replicas share, start-up recovery finishes only its own (``unfinished``).
        self.holder = f"{socket.gethostname()}:{self.data_dir.resolve()}"

    # -- connections -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        """Yield a connection for reads, the schema brought up to date first (once)."""
        self.db.migrate(STORE, MIGRATIONS)
        with self.db.read() as conn:
            yield conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """Yield a connection holding the write lock up front, committed at the end."""
        self.db.migrate(STORE, MIGRATIONS)
        with self.db.write() as conn:
            yield conn

    def initialize(self) -> None:
        """Create the table now, so a bad database path fails at start-up, not on a drop."""
        self.db.migrate(STORE, MIGRATIONS)

    def shared_locks(self) -> Locks | None:
        """Give the locks of every machine sharing this database: a PostgreSQL server's advisory
        locks; None on SQLite, whose processes share one machine and lock files there."""
        return AdvisoryLocks(self.db) if self.db.dialect == "postgresql" else None

    def hold_presence(self) -> Lock | None:
        """Take this replica's presence lock, named after its claim id, to hold for its life.

        On a database replicas share, start-up recovery elsewhere judges whether the replica
        that claimed a ``received`` drop is alive by this lock (``unfinished``), not by the
        time since the row changed: a take may wait long for the lake lock. None on SQLite (one
        machine: claims' ``flock`` tell), or when another process of this data folder holds it
        (its drops are this folder's, kept alive by that process).
        """
        if self.db.dialect != "postgresql":
            return None
        return AdvisoryLocks(self.db).try_acquire(presence_name(self.holder), holder=self.holder)

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
            return _one(conn, _BY_ID, b_id=file_id)

    def _require(self, conn: Connection, file_id: int) -> FileRecord:
        """Fetch a row inside a transaction, raising when it is missing."""
        record = _one(conn, _BY_ID, b_id=file_id)
        if record is None:
            raise IllegalTransition(f"no file with id {file_id} in the ledger")
        return record

    def list(
        self,
        state: str | None = None,
        kind: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> builtins.list[FileRecord]:
        """Return drops newest first, optionally filtered, a page at a time."""
        query = _ROWS
        if state is not None:
            query = query.where(FILES.c.state == state)
        if kind is not None:
            query = query.where(FILES.c.kind == kind)
        query = query.order_by(FILES.c.id.desc()).limit(limit).offset(offset)
        with self._read() as conn:
            return _all(conn, query)

    def counts_by_state(self) -> dict[str, int]:
        """Return how many drops are in each state, every state present, for metrics."""
        query = select(FILES.c.state, func.count(FILES.c.id).label("n")).group_by(FILES.c.state)
        with self._read() as conn:
            rows = conn.execute(query).mappings().all()
        counts = dict.fromkeys(STATES, 0)
        counts.update({row["state"]: row["n"] for row in rows})
        return counts

    def last_ingest(self) -> FileRecord | None:
        """Return the drop whose ingest finished last, for ``/health``."""
        query = (
            _ROWS.where(FILES.c.finished_at.is_not(None))
            .order_by(FILES.c.finished_at.desc(), FILES.c.id.desc())
            .limit(1)
        )
        with self._read() as conn:
            return _one(conn, query)

    def find_by_sha(self, kind: str, sha256: str) -> FileRecord | None:
        """Return the first drop of this content that is, or is becoming, a lake file."""
        with self._read() as conn:
            return first_live(conn, kind, sha256)

    def received_by(self, kind: str, sha256: str, holder: str) -> builtins.list[FileRecord]:
        """Return the ``received`` drops of these bytes one replica claimed, oldest first."""
        query = _ROWS.where(
            FILES.c.kind == kind,
            FILES.c.sha256 == sha256,
            FILES.c.state == RECEIVED,
            FILES.c.claimed_by == holder,
        ).order_by(FILES.c.id)
        with self._read() as conn:
            return _all(conn, query)

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
            return _one(conn, _BY_PROCESSING_PATH, b_path=stored)

    def unfinished(self, *, expired_after: float) -> builtins.list[FileRecord]:
        """Return the ``received`` drops start-up recovery may finish here, oldest first.

        On SQLite (one machine) every one. On a database replicas share, a drop another machine
        claimed is its to finish, its file on that machine's disk: only this data folder's
        drops are returned, and another's only once its replica is gone (no session holds its
        presence lock, ``hold_presence``) and the row is untouched for ``expired_after``
        seconds. A row nobody signed (written by an earlier release) has no presence to ask:
        it waits out ``expired_after`` too.
        """
        query = _ROWS.where(FILES.c.state == RECEIVED).order_by(FILES.c.id)
        if self.db.dialect == "sqlite":
            with self._read() as conn:
                return _all(conn, query)
        query = query.where(
            or_(FILES.c.claimed_by == self.holder, FILES.c.updated_at < iso_ago(expired_after))
        )
        with self._read() as conn:
            holders: builtins.list[str | None] = list(
                conn.execute(
                    query.with_only_columns(FILES.c.claimed_by).order_by(None).distinct()
                ).scalars()
            )
            others = [h for h in holders if h is not None and h != self.holder]
        locks = AdvisoryLocks(self.db)
        alive = [h for h in others if locks.holder(presence_name(h)) is not None]
        if alive:
            query = query.where(or_(FILES.c.claimed_by.is_(None), FILES.c.claimed_by.not_in(alive)))
        with self._read() as conn:
            return _all(conn, query)

    def pending_score(self, limit: int | None = None) -> builtins.list[FileRecord]:
        """Return normalized score drops with no output yet, oldest first, for the sweep."""
        query = (
            _ROWS.where(
                FILES.c.kind == "score",
                FILES.c.state == NORMALIZED,
                FILES.c.output_path.is_(None),
            )
            .order_by(FILES.c.id)
            .limit(limit)
        )
        with self._read() as conn:
            return _all(conn, query)

    def has_normalized(self, kind: str) -> bool:
        """Tell whether any drop of this kind ever reached the lake."""
        query = (
            select(FILES.c.id)
            .where(FILES.c.kind == kind, FILES.c.state.in_((NORMALIZED, SCORED)))
            .limit(1)
        )
        with self._read() as conn:
            return conn.execute(query).first() is not None


def _one(conn: Connection, query: Select[Any], **values: Any) -> FileRecord | None:
    """Run a query for at most one row of ``files`` and return it as a record."""
    row = conn.execute(query, values).mappings().first()
    return FileRecord.from_row(row) if row is not None else None


def _all(conn: Connection, query: Select[Any]) -> builtins.list[FileRecord]:
    """Run a query for rows of ``files`` and return them as records, in its order."""
    return [FileRecord.from_row(row) for row in conn.execute(query).mappings()]


def first_live(
    conn: Connection, kind: str, sha256: str, before: int | None = None
) -> FileRecord | None:
    """Return the earliest live drop of this content, the one a duplicate points at."""
    if before is None:
        return _one(conn, _FIRST_LIVE, b_kind=kind, b_sha256=sha256)
    return _one(conn, _FIRST_LIVE_BEFORE, b_kind=kind, b_sha256=sha256, b_before=before)


def first_live_content(
    conn: Connection, kind: str, content_sha256: str, excluding: int | None = None
) -> FileRecord | None:
    """Return the earliest live drop with this normalized content, the one a duplicate names.

    Only a committed drop (normalized or scored) has a content hash, so the match is the drop
    that committed this content first, whatever the ids' order.
    """
    return _one(
        conn,
        _FIRST_LIVE_CONTENT,
        b_kind=kind,
        b_content=content_sha256,
        b_excluding=-1 if excluding is None else excluding,
    )
