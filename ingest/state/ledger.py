"""The file ledger: one row per drop, so every file's fate survives crashes and restarts.

The ledger lives in the product's shared state database (``state.db`` by default) and owns only
the ``files`` table (``ingest.state.ledger_schema``). It reaches it through a ``StateDB``: a
pooled connection checked out per transaction, so threads and processes share one database
without sharing a connection, and every write transaction takes the write lock up front. State
changes are single guarded ``UPDATE`` statements that return the row they changed: a
transition from a state it does not allow changes nothing and raises ``IllegalTransition``,
which is how two writers racing on one row stay correct. Everything is SQLAlchemy Core, so
another backend runs the same code.

Paths are stored relative to the data folder (the folder holding ``state.db``) in POSIX form,
so ``GET /files`` never shows a server's absolute layout; ``Ledger.resolve`` turns them back.
Names are stored in the escaped text form of ``ingest.base.names`` (any bytes, one readable line),
and bytes that are not text in an error's message are escaped too, so no row holds what
SQLite, JSON or a terminal would refuse.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy import Connection, Update, bindparam, case, insert, or_, select, update

from ingest.base.names import as_text, escape, filed
from ingest.state.ledger_schema import FILES
from ingest.state.ledger_table import LedgerTable, first_live, first_live_content
from ingest.state.records import (
    BY_BYTES,
    BY_CONTENT,
    DUPLICATE,
    LIVE_STATES,
    NORMALIZED,
    QUARANTINED,
    RECEIVED,
    RETRIED,
    SCORED,
    STATES,
    TERMINAL_STATES,
    FileRecord,
    IllegalTransition,
    iso_ago,
    utc_now,
)

# The record and its states are ingest.state.records'; they are named here too, where callers look.
__all__ = [
    "BY_BYTES",
    "BY_CONTENT",
    "DUPLICATE",
    "LIVE_STATES",
    "NORMALIZED",
    "QUARANTINED",
    "RECEIVED",
    "RETRIED",
    "SCORED",
    "STATES",
    "TERMINAL_STATES",
    "FileRecord",
    "IllegalTransition",
    "Ledger",
    "utc_now",
]

# Every statement of a transition, built once: SQLAlchemy reuses each one's cache key and compiled
# form, and only the bound values change. An update sets the columns named by the keys of the
# values it is run with; its ``b_`` parameters fill its guards (``b_id`` the row).
_THIS_ROW = FILES.c.id == bindparam("b_id")
_UPDATE_BY_ID = update(FILES).where(_THIS_ROW).returning(*FILES.c)
_SET_BY_ID = update(FILES).where(_THIS_ROW)
_GUARDED = _UPDATE_BY_ID.where(FILES.c.state.in_(bindparam("b_from", expanding=True)))
_DEFER = _UPDATE_BY_ID.where(FILES.c.state == RECEIVED).values(
    attempts=case((FILES.c.attempts > 0, FILES.c.attempts - 1), else_=0)  # MAX(a, 0), portably
)
_START_ATTEMPT = (
    update(FILES)
    .where(_THIS_ROW, FILES.c.state == RECEIVED)
    .values(attempts=FILES.c.attempts + 1)
    .returning(FILES.c.attempts)
)
_UNSCORED = _UPDATE_BY_ID.where(FILES.c.state == NORMALIZED, FILES.c.output_path.is_(None))
_NORMALIZED_SCORE = _UPDATE_BY_ID.where(FILES.c.state == NORMALIZED, FILES.c.kind == "score")
_LOST_RETRY = _UPDATE_BY_ID.where(
    FILES.c.state == RETRIED,
    FILES.c.retried_as.is_(None),
    FILES.c.queued_as == bindparam("b_lost"),
)
_CLAIM = (
    update(FILES)
    .where(
        _THIS_ROW,
        FILES.c.kind == "score",
        FILES.c.state == NORMALIZED,
        FILES.c.output_path.is_(None),
        or_(
            FILES.c.scoring_claimed_at.is_(None),
            FILES.c.scoring_claimed_at < bindparam("b_stale"),
        ),
    )
    .values(scoring_claims=FILES.c.scoring_claims + 1)
)
_RELEASE = _SET_BY_ID.where(FILES.c.state == NORMALIZED)
_RETRY_OF = (
    select(FILES.c.id, FILES.c.original_name)
    .where(
        FILES.c.state == RETRIED,
        FILES.c.queued_as == bindparam("b_name"),
        FILES.c.kind == bindparam("b_kind"),
        FILES.c.retried_as.is_(None),
    )
    .order_by(FILES.c.id)
    .limit(1)
)
_INSERT = insert(FILES).returning(*FILES.c)
_STATE_OF = select(FILES.c.state, FILES.c.kind).where(_THIS_ROW)


class Ledger(LedgerTable):
    """The drops' state machine: each change one guarded ``UPDATE`` (see the module docstring).

    Built on a ``StateDB`` (``Ledger(db)``), which ``scoring.models.factory`` opens.
    """

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

        ``original_name`` is the name as the filesystem gave it; it is stored escaped
        (``ingest.base.names``). The row is ``received``; or ``duplicate`` (with ``duplicate_of``
        and its archive path) when a live drop of the same kind already has this content; or
        ``quarantined`` at once when ``rejected`` carries an error found before the content was
        read (a file too large). Deciding in one write transaction makes dedupe race-free
        across processes. A drop that is the copy a retry queued (``queued_as``) takes the name
        of the drop it retries, and that drop records it as ``retried_as``, in the same
        transaction.
        """
        now = utc_now()
        name = escape(original_name)
        with self._write() as conn:
            retried = conn.execute(_RETRY_OF, {"b_name": name, "b_kind": kind}).first()
            if retried is not None:
                name = retried.original_name
            row = (
                conn.execute(
                    _INSERT,
                    {
                        "original_name": name,
                        "kind": kind,
                        "size_bytes": size_bytes,
                        "sha256": sha256,
                        "state": RECEIVED,
                        "processing_path": self.relative(processing_path),
                        "received_at": now,
                        "updated_at": now,
                        "claimed_by": self.holder,
                    },
                )
                .mappings()
                .one()
            )
            record = FileRecord.from_row(row)
            if retried is not None:
                conn.execute(
                    _SET_BY_ID, {"b_id": retried.id, "retried_as": record.id, "updated_at": now}
                )
            stored = archive_name or name
            if rejected is not None:
                return _update(
                    conn,
                    _UPDATE_BY_ID,
                    record.id,
                    "quarantine",
                    state=QUARANTINED,
                    error=error_json(rejected),
                    quarantine_path=f"quarantine/{filed(record.id, stored)}",
                    finished_at=now,
                )
            if sha256 is not None:
                earlier = first_live(conn, kind, sha256, before=record.id)
                if earlier is not None:
                    return _duplicate_by_bytes(conn, record.id, earlier.id, stored, now)
            return record

    def start_attempt(self, file_id: int) -> int:
        """Count one more processing attempt and return the count, before any work is done."""
        with self._write() as conn:
            attempts = conn.execute(
                _START_ATTEMPT, {"b_id": file_id, "updated_at": utc_now()}
            ).scalar_one_or_none()
            if attempts is None:
                _refuse(conn, file_id, "start an attempt on")
            return int(attempts)

    def defer(self, file_id: int, *, error: dict[str, Any]) -> FileRecord:
        """Leave a received drop for a later attempt after the service's own failure (disk full).

        The attempt is given back (the file is not at fault, so it never runs out of tries) and
        the row's error says why it waits; its commit later clears it.
        """
        with self._write() as conn:
            return _update(
                conn,
                _DEFER,
                file_id,
                "defer",
                error=error_json(error),
                updated_at=utc_now(),
            )

    def rehash(self, file_id: int, *, size_bytes: int, sha256: str) -> FileRecord:
        """Record the new content of a received drop that changed while it was being read.

        Dedupe is decided again in the same transaction, as ``receive`` does: the drop becomes
        a ``duplicate`` when an earlier live drop of its kind already has the new content.
        """
        now = utc_now()
        with self._write() as conn:
            record = _update(
                conn,
                _GUARDED,
                file_id,
                "record new content for",
                b_from=[RECEIVED],
                size_bytes=size_bytes,
                sha256=sha256,
                updated_at=now,
            )
            earlier = first_live(conn, record.kind, sha256, before=file_id)
            if earlier is not None:
                return _duplicate_by_bytes(conn, file_id, earlier.id, record.original_name, now)
            return record

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
        content_sha256: str | None = None,
    ) -> FileRecord:
        """Record that the drop is in the lake: the commit point of a successful ingest.

        With ``content_sha256``, dedupe by content is decided in the same transaction: when a
        live drop of the same kind already committed that content, this drop becomes its
        ``duplicate`` (by content, no lake path) instead, so two processes committing the same
        table at once keep it once; the caller then removes this drop's lake file.
        """
        now = utc_now()
        with self._write() as conn:
            record = self._require(conn, file_id)
            earlier = None
            if content_sha256 is not None:
                earlier = first_live_content(conn, record.kind, content_sha256, file_id)
            if earlier is not None:
                return _apply(
                    conn,
                    file_id,
                    (RECEIVED,),
                    DUPLICATE,
                    duplicate_of=earlier.id,
                    duplicate_by=BY_CONTENT,
                    content_sha256=content_sha256,
                    archive_path=self.relative(archive_path),
                    finished_at=now,
                )
            return _apply(
                conn,
                file_id,
                (RECEIVED,),
                NORMALIZED,
                content_sha256=content_sha256,
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
            error=error_json(error),
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
            return _update(
                conn,
                _UNSCORED,
                file_id,
                "reject after normalizing",
                state=QUARANTINED,
                error=error_json(error),
                quarantine_path=self.relative(quarantine_path),
                scoring_claimed_at=None,
                finished_at=now,
                updated_at=now,
            )

    def mark_duplicate(
        self,
        file_id: int,
        *,
        duplicate_of: int,
        archive_path: Path | str,
        by: str = BY_BYTES,
        content_sha256: str | None = None,
    ) -> FileRecord:
        """Record that the content was already taken, so nothing new enters the lake."""
        return self._transition(
            file_id,
            (RECEIVED,),
            DUPLICATE,
            duplicate_of=duplicate_of,
            duplicate_by=by,
            content_sha256=content_sha256,
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
        drift: str | None = None,
    ) -> FileRecord:
        """Record the scorer's output (and its drift verdict); refused unless the drop is a
        normalized score drop."""
        now = utc_now()
        with self._write() as conn:
            return _update(
                conn,
                _NORMALIZED_SCORE,
                file_id,
                "mark as scored",
                state=SCORED,
                output_path=self.relative(output_path),
                model_version=str(model_version),
                rows_scored=rows_scored,
                rows_failed=rows_failed,
                drift=drift,
                scored_at=now,
                updated_at=now,
                scoring_claimed_at=None,
            )

    def mark_retried(self, file_id: int, *, queued_as: str, lost: str | None = None) -> FileRecord:
        """Record that a quarantined drop's original was queued again as ``queued_as``.

        One guarded ``UPDATE``: of two retries racing on one drop exactly one succeeds, the
        other gets ``IllegalTransition``. ``queued_as`` is the name of the copy in the inbox,
        as the filesystem knows it; the drop the watcher makes of it is recorded as
        ``retried_as`` by ``receive``. ``lost`` (the stored name of a copy a crash lost before
        it reached the inbox) queues a retried drop again, only while no drop was made of it.
        """
        if lost is None:
            return self._transition(
                file_id, (QUARANTINED,), RETRIED, queued_as=escape(queued_as), retried_as=None
            )
        with self._write() as conn:
            return _update(
                conn,
                _LOST_RETRY,
                file_id,
                "queue again",
                b_lost=lost,
                queued_as=escape(queued_as),
                updated_at=utc_now(),
            )

    def unmark_retried(self, file_id: int) -> FileRecord:
        """Put a drop back in quarantine when its retry's copy could not be queued after all."""
        return self._transition(file_id, (RETRIED,), QUARANTINED, queued_as=None)

    def claim_for_scoring(self, file_id: int, *, stale_after: float = 900.0) -> bool:
        """Claim a drop for scoring; exactly one caller across processes wins.

        A claim older than ``stale_after`` seconds is taken to belong to a scorer that crashed,
        and can be taken again. ``mark_scored`` or ``release_scoring_claim`` ends a claim.
        """
        now = utc_now()
        values = {
            "b_id": file_id,
            "b_stale": iso_ago(stale_after),
            "scoring_claimed_at": now,
            "updated_at": now,
        }
        with self._write() as conn:
            return conn.execute(_CLAIM, values).rowcount == 1

    def release_scoring_claim(self, file_id: int) -> None:
        """Give a claim back after a failed scoring run, so the next sweep retries at once."""
        with self._write() as conn:
            conn.execute(
                _RELEASE, {"b_id": file_id, "scoring_claimed_at": None, "updated_at": utc_now()}
            )

    def _transition(
        self, file_id: int, allowed_from: tuple[str, ...], to: str, **values: Any
    ) -> FileRecord:
        """Apply a guarded state change: nothing changes unless the row is in ``allowed_from``."""
        with self._write() as conn:
            return _apply(conn, file_id, allowed_from, to, **values)


def _apply(
    conn: Connection,
    file_id: int,
    allowed_from: tuple[str, ...],
    to: str,
    **values: Any,
) -> FileRecord:
    """Make a guarded state change inside the caller's transaction and return the new row."""
    return _update(
        conn,
        _GUARDED,
        file_id,
        f"move to {to}",
        b_from=list(allowed_from),
        **values,
        state=to,
        updated_at=utc_now(),
    )


def _update(
    conn: Connection, statement: Update, file_id: int, action: str, **values: Any
) -> FileRecord:
    """Run one of the guarded updates below on a row and return it as changed, or refuse.

    The keys of ``values`` that name columns are what the update sets; ``b_`` keys fill its
    guards. ``RETURNING`` saves the read that would follow; when no row matched, ``_refuse``
    says why.
    """
    row = conn.execute(statement, {"b_id": file_id, **values}).mappings().first()
    if row is None:
        _refuse(conn, file_id, action)
    return FileRecord.from_row(row)


def _duplicate_by_bytes(
    conn: Connection, file_id: int, earlier: int, stored: str, now: str
) -> FileRecord:
    """Make a just-received drop the duplicate of an earlier live drop with the same bytes."""
    return _apply(
        conn,
        file_id,
        (RECEIVED,),
        DUPLICATE,
        duplicate_of=earlier,
        duplicate_by=BY_BYTES,
        archive_path=f"archive/{filed(file_id, stored)}",
        finished_at=now,
    )


def error_json(error: dict[str, Any]) -> str:
    """Serialize an error for its row, bytes that are not text written as ``\\xNN``.

    A message may quote a name as the filesystem gave it (bytes that are not UTF-8); the row
    must hold text that SQLite, JSON and a terminal accept.
    """

    def readable(value: Any) -> Any:
        if isinstance(value, str):
            return as_text(value)
        if isinstance(value, dict):
            return {readable(k): readable(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [readable(v) for v in value]
        return value

    return json.dumps(readable(error))


def _refuse(conn: Connection, file_id: int, action: str) -> NoReturn:
    """Raise the reason a guarded update changed nothing."""
    row = conn.execute(_STATE_OF, {"b_id": file_id}).first()
    if row is None:
        raise IllegalTransition(f"no file with id {file_id} in the ledger")
    raise IllegalTransition(
        f"cannot {action} file {file_id}: it is a {row.kind} drop in state '{row.state}'"
    )
