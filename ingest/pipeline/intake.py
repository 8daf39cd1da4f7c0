"""The intake: the one path every dropped file takes from the inbox to a terminal ledger state.

Order of the steps, chosen so a ``kill -9`` at any point is finished by ``resume()``:

1. claim: ``os.rename`` the file into ``processing/<kind>/<uuid>/<name>`` (a copy for
   ``take_copy``), holding an ``flock`` on it so another process's ``resume`` leaves it alone;
   the folder per claim keeps names collision-free and the basename intact for messages
   (``ingest/state/claims.py``);
2. ``receive``: insert the ledger row (size, sha256) and decide ``duplicate`` in the same
   transaction, so dedupe is race-free across processes;
3. read, normalize and write ``lake/<kind>/<sha256>.parquet`` atomically (temp + rename); the
   lake file carries ``_file_id``, so a re-take recognizes its own leftover
   (``ingest/lake/lakefile.py``); the normalized table is hashed on the way
   (``ingest/lake/content.py``), and a table a live drop already committed is not published: a
   duplicate by content; then, before the commit, the claimed file must be as it was hashed (size,
   mtime) with no writer holding it open; if not, the lake file is discarded and the claim waits
   until it holds still, gets its new size and hash (``Ledger.rehash``) and is read again, so only
   whole content lands;
4. the ledger transition (``normalized``, ``quarantined`` or ``duplicate``) is the commit point;
   ``normalized`` turns into ``duplicate`` (by content) in the same transaction when another
   process committed the same table meanwhile;
5. only then is the original moved from ``processing/`` to ``archive/`` or ``quarantine/``
   (with its ``.error.json`` record, ``ingest/pipeline/quarantine.py``), a duplicate's own lake file
   removed first, so the lake holds the rows once.

Every step before 4 is redone by ``resume`` (a file in ``processing/`` with no row, or with a
``received`` row, is taken again); every step after 4 is finished by it (a file in
``processing/`` whose row is terminal is moved to where the row says).
``ingest/pipeline/recovery.py`` finds what a crash left; this module finishes it with the same
steps a new drop takes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingest.base.config import KINDS, IngestConfig
from ingest.base.errors import (
    IngestError,
    InternalIngestError,
    RetriesExhaustedError,
    TransientIngestError,
    disk_full,
)
from ingest.base.formats import is_unfinished_name
from ingest.base.logs import bound_to
from ingest.base.names import escape
from ingest.lake.lakefile import Normalized, OwnedElsewhere, discard_own_lake_file, write_lake_file
from ingest.pipeline.quarantine import filed_name, refuse_link, too_large, write_error_record
from ingest.pipeline.recovery import (
    DEFERRED,
    orphan_rows,
    remove_temporaries,
    resume_claims,
    resume_deferred,
    unfinished_rejections,
    vanished,
)
from ingest.state.claims import (
    Signature,
    backoff,
    changed_since,
    claim_copy,
    claim_move,
    dropped_name,
    ensure_claim_dirs,
    hash_claimed,
    remove_claim_folder,
    signature,
    wait_until_still,
    warn_if_grown,
)
from ingest.state.file_ledger import FileLedger
from ingest.state.ledger import (
    DUPLICATE,
    NORMALIZED,
    QUARANTINED,
    RECEIVED,
    FileRecord,
    IllegalTransition,
)
from ingest.state.locks import Lock

log = logging.getLogger("dropscore.ingest")


def _model_of(intake: Intake) -> dict[str, str]:
    """Name the intake's model in every event of a public step, down to the readers and the lake."""
    return {"model": intake.model}


_about_model = bound_to(_model_of)


# Worth another attempt: the file vanished, is locked, or permission was denied for now.
TRANSIENT = (TransientIngestError, FileNotFoundError, PermissionError, BlockingIOError)


class Intake:
    """Takes files into the lake and the ledger; the watcher, the CLI and bootstrap share it."""

    def __init__(
        self,
        config: IngestConfig,
        ledger: FileLedger,
        on_normalized: Callable[[FileRecord], None] | None = None,
    ) -> None:
        if config.locks is None:  # replicas sharing the ledger's database share its lake lock
            config = replace(config, locks=ledger.shared_locks())
        self.config = config
        self.ledger = ledger
        self.on_normalized = on_normalized
        # Told of a normalized drop rejected afterwards (its original moved to quarantine/):
        # the bucket poller moves the bucket's copy too. Failures are logged, never raised.
        self.on_rejected: Callable[[FileRecord], None] | None = None
        self.waiting = 0  # drops left in processing/ because our disk was full; resume retries
        # Held while this replica lives, so recovery on another replica leaves its drops alone
        # however long a take waits (``FileLedger.hold_presence``); None on one machine.
        self._presence: Lock | None = None

    @property
    def model(self) -> str:
        """The model whose inboxes this intake takes from."""
        return self.config.layout.model

    # -- public ------------------------------------------------------------------------------

    @_about_model
    def take(self, path: Path, kind: str) -> FileRecord:
        """Move a file out of an inbox and through ingest; it ends in archive/ or quarantine/.

        Raises FileNotFoundError or PermissionError only when the file could not even be
        claimed (it vanished, or cannot be moved): then it never became a drop. A symbolic link
        is refused: recorded as quarantined and the link itself moved to quarantine/.
        """
        _check_kind(kind)
        ensure_claim_dirs(self.config)
        path = Path(path)
        if path.is_symlink():
            record = refuse_link(self.config, self.ledger, path, kind)
            self._log_quarantined(record)
            return record
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a folder; only files are taken")
        with claim_move(self.config, path, kind) as claimed:
            return self._enter(claimed, kind, path.name)

    @_about_model
    def take_copy(self, path: Path, kind: str) -> FileRecord:
        """Ingest a copy of a file that stays where it is (``dropscore ingest``, bootstrap)."""
        _check_kind(kind)
        ensure_claim_dirs(self.config)
        path = Path(path)
        size = path.stat().st_size
        if size > self._max_bytes:
            return self._reject_uncopied(path, kind, size)
        with claim_copy(self.config, path, kind) as claimed:
            return self._enter(claimed, kind, path.name)

    @_about_model
    def refuse_oversized(self, name: str, kind: str, size: int) -> FileRecord | None:
        """Quarantine-record a drop over ``max_file_mb`` before fetching it (an object store's:
        its size is listed); None when it is within the cap and must be taken as usual."""
        _check_kind(kind)
        if size <= self._max_bytes:
            return None
        ensure_claim_dirs(self.config)
        return self._reject_uncopied(Path(name), kind, size)

    @_about_model
    def resume(self) -> list[FileRecord]:
        """Finish whatever a crash interrupted; run at start-up, before new files are taken."""
        self._stay_present()
        ensure_claim_dirs(self.config)
        remove_temporaries(self.config)
        self.waiting = 0  # each drop still refused by a full disk counts itself again
        done = [r for kind in KINDS for r in resume_claims(self.config, kind, self._continue)]
        for record in orphan_rows(self.ledger):
            with contextlib.suppress(IllegalTransition):  # another process finished it meanwhile
                done.append(self._quarantine(record, None, vanished(record)))
        for record in unfinished_rejections(self.config, self.ledger):
            self._finish_rejection(record)
            done.append(record)
        if done:
            log.info("recovered", extra={"files": len(done)})
        return done

    @_about_model
    def abandon_stranded(
        self, path: Path, kind: str, holder: str | None, lease_ended: datetime | None
    ) -> FileRecord | None:
        """Quarantine the ``received`` row a dead replica left for these bytes, before they are
        taken again; None when there is none.

        Called when a bucket claim is taken over (its holder stopped renewing its lease): the
        dead replica received the drop, then never finished it, and its row, live, would make
        the new take a duplicate of a drop that never reaches the lake. Only that replica's row
        is its (``holder``, the claim id the bucket claim named), received before its lease
        ended: the same bytes and name dropped in another folder, or taken earlier, belong to
        other drops. A claim of a release that named no holder matches nothing.
        """
        _check_kind(kind)
        if holder is None:
            return None
        with open(path, "rb") as fh:
            sha256 = hashlib.file_digest(fh, "sha256").hexdigest()
        name = escape(path.name)
        found = [
            r
            for r in self.ledger.received_by(kind, sha256, holder)
            if r.original_name == name
            and (lease_ended is None or _moment(r.received_at) <= lease_ended)
        ]
        if not found:
            return None
        stranded = found[-1]  # the latest: the take the lease was renewed for
        error = InternalIngestError(
            f"{stranded.original_name}: the replica reading it stopped; another replica took "
            "the drop again from the bucket"
        )
        ensure_claim_dirs(self.config)  # its error record is written to quarantine/
        with contextlib.suppress(IllegalTransition):  # its replica finished it after all
            return self._quarantine(stranded, None, error)
        return None

    @_about_model
    def resume_deferred(self) -> list[FileRecord]:
        """Take again the drops a full disk left waiting, in any process, that none holds now.

        It runs on every rescan, so it creates no folder: recreating a deleted inbox here would
        hide the deletion from the observer, which must be restarted on the new folder.
        """
        return resume_deferred(self.ledger, self._continue)

    @_about_model
    def bootstrap(self, path: Path | str | None) -> FileRecord | None:
        """Seed an empty training lake with a labelled file, through the normal ledger path.

        ``path`` may be a file or a folder of files (each taken); the first normalized record
        is returned. An empty setting means no bootstrap.
        """
        if path is None or str(path).strip() == "":
            return None
        path = Path(path)
        if self._train_lake_has_data():
            log.info("bootstrap skipped: training data exists", extra={"file": str(path)})
            return None
        files = _bootstrap_files(path)
        if not files:
            log.warning("bootstrap found no file", extra={"file": str(path)})
            return None
        records = [self.take_copy(f, "train") for f in files]
        return next((r for r in records if r.state == NORMALIZED), records[0])

    @_about_model
    def reject_normalized(self, record: FileRecord, error: IngestError) -> FileRecord:
        """Quarantine a normalized score drop the scorer cannot use, original and all.

        The ledger commits first; then the error record is written, the archived original
        moves to quarantine/ and the drop's lake file is removed. ``resume`` finishes those
        steps if a crash interrupts them.
        """
        record = self.ledger.mark_score_refused(
            record.id,
            error=error.to_dict(),
            quarantine_path=self.config.quarantine / filed_name(record),
        )
        self._finish_rejection(record)
        self._log_quarantined(record)
        if self.on_rejected is not None:
            try:
                self.on_rejected(record)
            except Exception:
                log.exception("on_rejected failed", extra=_fields(record))
        return record

    # -- entering ----------------------------------------------------------------------------

    @property
    def _max_bytes(self) -> float:
        return self.config.max_file_mb * 1024 * 1024

    def _enter(self, claimed: Path, kind: str, name: str) -> FileRecord:
        """Record a claimed file in the ledger and carry it to a terminal state (claim held)."""
        self._stay_present()  # before its row names this replica as the one finishing it
        before = signature(claimed)
        size = before[0]
        if size > self._max_bytes:
            record = self.ledger.receive(
                original_name=name,
                kind=kind,
                size_bytes=size,
                sha256=None,
                processing_path=claimed,
                rejected=too_large(name, size, self.config.max_file_mb).to_dict(),
            )
            return self._settle(record, claimed)
        sha = hash_claimed(claimed, self.config.max_attempts)
        record = self.ledger.receive(
            original_name=name, kind=kind, size_bytes=size, sha256=sha, processing_path=claimed
        )
        if record.state == DUPLICATE:
            return self._settle(record, claimed)
        return self._process(record, claimed, before)

    def _stay_present(self) -> None:
        """Hold this replica's presence lock, taken again if its connection was lost."""
        if self._presence is not None:
            if self._presence.held():
                return
            self._presence.release()
        self._presence = self.ledger.hold_presence()

    def _continue(self, claimed: Path, kind: str) -> FileRecord:
        """Continue a claimed file from wherever its ledger row says it stopped."""
        record = self.ledger.find_by_processing_path(claimed)
        if record is None:
            return self._enter(claimed, kind, dropped_name(claimed))
        log.info("resuming", extra=_fields(record, state=record.state))
        if record.state == RECEIVED:
            return self._process(record, claimed)
        return self._settle(record, claimed)

    def _reject_uncopied(self, path: Path, kind: str, size: int) -> FileRecord:
        """Quarantine-record an oversized file for take_copy without copying gigabytes."""
        record = self.ledger.receive(
            original_name=path.name,
            kind=kind,
            size_bytes=size,
            sha256=None,
            processing_path=None,
            rejected=too_large(path.name, size, self.config.max_file_mb).to_dict(),
        )
        write_error_record(self.config.quarantine, record)
        self._log_quarantined(record)
        return record

    # -- processing --------------------------------------------------------------------------

    def _process(
        self, record: FileRecord, claimed: Path, before: Signature | None = None
    ) -> FileRecord:
        """Read, normalize and write the lake file, retrying transient failures.

        ``before`` is the claimed file's (size, mtime) when it was hashed; a drop resumed after
        a crash is judged from the start of its attempt (its size still checked against the row).
        """
        while True:
            attempt = self.ledger.start_attempt(record.id)
            if attempt > self.config.max_attempts:
                return self._quarantine(
                    record,
                    claimed,
                    RetriesExhaustedError(
                        f"{record.original_name} was being ingested {attempt - 1} times when the "
                        "service stopped or failed; it is set aside so it cannot stop it again"
                    ),
                )
            try:
                before = before or signature(claimed)
                outcome = write_lake_file(self.config, self.ledger, record, claimed)
            except TRANSIENT as exc:
                if attempt >= self.config.max_attempts:
                    return self._quarantine(
                        record,
                        claimed,
                        RetriesExhaustedError(
                            f"gave up on {record.original_name} after {attempt} attempts: {exc}"
                        ),
                    )
                log.warning("retrying", extra=_fields(record, attempt=attempt, error=str(exc)))
                time.sleep(backoff(attempt))
                continue
            except IngestError as exc:
                return self._quarantine(record, claimed, exc)
            except Exception as exc:
                if disk_full(exc):
                    return self._defer(record, exc)
                log.exception("unexpected failure", extra=_fields(record))
                return self._quarantine(
                    record,
                    claimed,
                    InternalIngestError(
                        f"unexpected {type(exc).__name__} while reading "
                        f"{record.original_name}: {exc}"
                    ),
                )
            if changed_since(
                claimed, before, record.size_bytes
            ):  # before the commit: only whole content lands
                record, before = self._retake(record, claimed), None
                if record.state != RECEIVED:
                    return self._settle(record, claimed)
                continue
            if isinstance(outcome, OwnedElsewhere):
                return self._duplicate_of(record, claimed, outcome)
            return self._accept(record, claimed, outcome)

    def _defer(self, record: FileRecord, exc: BaseException) -> FileRecord:
        """Leave a drop our own full disk refused in processing/, to be taken again later.

        Not the producer's fault, so never quarantined: the ledger row stays ``received`` with
        an error saying why (the attempt given back), and ``resume`` (on every rescan, and at
        start-up) takes it again once there is room.
        """
        self.waiting += 1
        log.error(
            "disk full: the lake file could not be written; the drop waits in processing/ and "
            "is taken again on the next rescan",
            extra=_fields(record, error=str(exc), lake=str(self.config.lake(record.kind))),
        )
        return self.ledger.defer(
            record.id,
            error={
                "code": DEFERRED,
                "message": (
                    f"dropscore could not write {record.original_name} to the lake: the disk "
                    f"is full ({exc}); the file waits in processing/ and is taken again once "
                    "there is room. Nothing is wrong with the file."
                ),
            },
        )

    def _retake(self, record: FileRecord, claimed: Path) -> FileRecord:
        """Drop what was read of a file its writer changed meanwhile; take it again once still.

        The claim is kept (a writer holding the file appends to the claimed inode), so the
        file waits in processing/ for ``stable_seconds`` with no writer, and the row gets the
        new size and hash. A file that never settles is quarantined with a word on how to write.
        """
        discard_own_lake_file(self.config, record)
        log.warning(
            "changed while being read; taking it again once it holds still",
            extra=_fields(record, size_bytes=record.size_bytes, attempts=record.attempts),
        )
        limit = max(60.0, 10 * self.config.stable_seconds)
        if not wait_until_still(claimed, self.config.stable_seconds, limit):
            return self._quarantine(
                record,
                claimed,
                RetriesExhaustedError(
                    f"{record.original_name} was still being written {limit:g} s after it was "
                    "taken; write it under a .part name and rename it when it is complete"
                ),
            )
        size = claimed.stat().st_size
        return self.ledger.rehash(
            record.id, size_bytes=size, sha256=hash_claimed(claimed, self.config.max_attempts)
        )

    # -- endings -----------------------------------------------------------------------------

    def _accept(self, record: FileRecord, claimed: Path, done: Normalized) -> FileRecord:
        """Commit a normalized drop in the ledger, then archive the original and notify."""
        record = self.ledger.mark_normalized(
            record.id,
            rows=done.rows,
            columns=done.columns,
            format=done.format,
            encoding=done.encoding,
            delimiter=done.delimiter,
            column_map=done.column_map,
            lake_path=done.lake_path,
            archive_path=self.config.archive / filed_name(record),
            content_sha256=done.content_sha256,
        )  # a duplicate by content instead when another process committed the table first
        return self._settle(record, claimed)

    def _duplicate_of(self, record: FileRecord, claimed: Path, owned: OwnedElsewhere) -> FileRecord:
        """Commit a drop whose content another live drop already put in the lake."""
        record = self.ledger.mark_duplicate(
            record.id,
            duplicate_of=owned.owner,
            archive_path=self.config.archive / filed_name(record),
            by=owned.by,
            content_sha256=owned.content_sha256,
        )
        return self._settle(record, claimed)

    def _quarantine(
        self, record: FileRecord, claimed: Path | None, error: IngestError
    ) -> FileRecord:
        """Commit a rejection, then write its error record and move the original beside it."""
        discard_own_lake_file(self.config, record)
        record = self.ledger.mark_quarantined(
            record.id,
            error=error.to_dict(),
            quarantine_path=self.config.quarantine / filed_name(record),
        )
        return self._settle(record, claimed)

    def _finish_rejection(self, record: FileRecord) -> None:
        """Move a rejected normalized drop out of archive/ and the lake; idempotent."""
        write_error_record(self.config.quarantine, record)
        archived = self.ledger.resolve(record.archive_path)
        dest = self.ledger.resolve(record.quarantine_path)
        if archived is not None and dest is not None and archived.exists():
            os.replace(archived, dest)
        discard_own_lake_file(self.config, record)

    def _settle(self, record: FileRecord, claimed: Path | None) -> FileRecord:
        """Move the original where its terminal row says; idempotent, so resume can redo it.

        A duplicate's own lake file (one by content that lost the commit race, or a crash's
        leftover) goes first: while the original is in processing/, resume comes back here.
        """
        if record.state == DUPLICATE:
            discard_own_lake_file(self.config, record)
        if record.state == QUARANTINED:
            write_error_record(self.config.quarantine, record)
            dest = self.ledger.resolve(record.quarantine_path)
        else:
            dest = self.ledger.resolve(record.archive_path)
        if claimed is not None and dest is not None and claimed.exists():
            os.replace(claimed, dest)
            remove_claim_folder(claimed)
            warn_if_grown(dest, record.size_bytes, _fields(record))
        if record.state == QUARANTINED:
            self._log_quarantined(record)
        elif record.state == DUPLICATE:
            log.info(
                "duplicate",
                extra=_fields(
                    record,
                    duplicate_of=record.duplicate_of,
                    duplicate_by=record.duplicate_by,
                    archive_path=record.archive_path,
                ),
            )
        elif record.state == NORMALIZED:
            where = {"rows": record.rows, "lake_path": record.lake_path}
            log.info("normalized", extra=_fields(record, **where))
            self._notify(record)
        return record

    def _log_quarantined(self, record: FileRecord) -> None:
        """Say which file was rejected and why."""
        error = record.error or {}
        log.warning(
            "quarantined",
            extra=_fields(
                record,
                code=error.get("code"),
                error=error.get("message"),
                quarantine_path=record.quarantine_path,
            ),
        )

    def _notify(self, record: FileRecord) -> None:
        """Tell the listener a drop reached the lake; its failures are logged, never raised."""
        if self.on_normalized is None:
            return
        try:
            self.on_normalized(record)
        except Exception:
            log.exception("on_normalized failed", extra=_fields(record))

    def _train_lake_has_data(self) -> bool:
        """Tell whether training data exists, in the lake or in the ledger's history."""
        lake = self.config.lake_store("train")
        return bool(lake.names()) or self.ledger.has_normalized("train")


def _moment(stamp: str) -> datetime:
    """Read a stored ISO time (``Z`` or an offset) as an aware datetime."""
    moment = datetime.fromisoformat(stamp)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _check_kind(kind: str) -> None:
    """Refuse a kind the layout has no folders for."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")


def _fields(record: FileRecord, **more: Any) -> dict[str, Any]:
    """Build the structured log fields naming the drop."""
    return {"file_id": record.id, "file": record.original_name, "kind": record.kind, **more}


def _bootstrap_files(path: Path) -> list[Path]:
    """List the file, or the files of a folder, that bootstrap should take."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and not is_unfinished_name(p.name))
    return [path] if path.is_file() else []
