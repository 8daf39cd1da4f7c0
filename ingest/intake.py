"""The intake: the one path every dropped file takes from the inbox to a terminal ledger state.

Order of the steps, chosen so a ``kill -9`` at any point is finished by ``recover()``:

1. claim: ``os.rename`` the file into ``processing/<kind>/<uuid>/<name>`` (a copy for
   ``take_copy``), holding an ``flock`` on it so another process's ``recover`` leaves it alone;
   the folder per claim keeps names collision-free and the basename intact for messages;
2. ``receive``: insert the ledger row (size, sha256) and decide ``duplicate`` in the same
   transaction, so dedupe is race-free across processes;
3. read, normalize and write ``lake/<kind>/<sha256>.parquet`` atomically (temp + rename); the
   lake file carries ``_file_id``, so a re-take recognizes its own leftover;
4. the ledger transition (``normalized``, ``quarantined`` or ``duplicate``) is the commit point;
5. only then is the original moved from ``processing/`` to ``archive/`` or ``quarantine/``.

Every step before 4 is redone by ``recover`` (a file in ``processing/`` with no row, or with a
``received`` row, is taken again); every step after 4 is finished by it (a file in
``processing/`` whose row is terminal is moved to where the row says).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ingest.config import KINDS, IngestConfig
from ingest.errors import (
    FileTooLargeError,
    IngestError,
    NoRowsError,
    TransientIngestError,
    TypeConflictError,
)
from ingest.formats import is_unfinished_name
from ingest.ledger import (
    DUPLICATE,
    LIVE_STATES,
    NORMALIZED,
    QUARANTINED,
    RECEIVED,
    FileRecord,
    IllegalTransition,
    Ledger,
)

try:  # POSIX advisory locks keep two processes off one claimed file; elsewhere we do without
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("dropscore.ingest")

TRANSIENT = (TransientIngestError, FileNotFoundError, PermissionError, BlockingIOError)
_EMPTY_CLAIM_GRACE_SECONDS = 60.0  # an empty claim folder younger than this may be in use

HINTS: dict[str, str] = {
    "empty_file": "The file has no content. Check that the export finished, then drop it again.",
    "no_rows": "The file has no data rows. Export the rows too, then drop it again.",
    "unsupported_format": "Save the file as CSV, TSV, Excel, JSON, JSON Lines or Parquet "
    "and drop it again.",
    "format_mismatch": "The content does not match the file name. Rename the file as the "
    "message suggests, or export it again in the format its name says.",
    "malformed": "Fix the file at the place the message names (or export it again) "
    "and drop it again.",
    "ragged_rows": "Give every row as many fields as the header (quote values that contain "
    "the delimiter) and drop the file again.",
    "too_many_columns": "Remove columns you do not need, or raise [ingest] max_columns, "
    "then drop the file again.",
    "file_too_large": "Split the file into smaller parts, or raise [ingest] max_file_mb, "
    "then drop it again.",
    "zip_bomb": "The file expands to far more than its size. Save it again without embedded "
    "objects, or export it as CSV, and drop it again.",
    "type_conflict": "Fix the values in the named column so they have the same type as in the "
    "files already taken (or rename the column if it means something else), then drop the "
    "file again.",
    "retries_exhausted": "The file could not be read after several tries (locked, removed "
    "while being read, or it stopped the service). Check it opens and drop it again.",
    "internal": "dropscore failed on this file in a way it did not expect. Report it with this "
    "record and the file; dropping it again will fail the same way until that is fixed.",
}
DEFAULT_HINT = "Fix what the message describes and drop the file into the inbox again."


class InternalIngestError(IngestError):
    """An unexpected failure while reading one file: that file fails, never the intake."""

    code = "internal"


class RetriesExhaustedError(IngestError):
    """A transient failure that outlasted ``max_attempts``, or a file that crashed us repeatedly."""

    code = "retries_exhausted"


@dataclass(frozen=True)
class _Normalized:
    """What a successful lake write tells the ledger."""

    rows: int
    columns: int
    format: str | None
    encoding: str | None
    delimiter: str | None
    column_map: dict[str, str]
    lake_path: Path


@dataclass(frozen=True)
class _OwnedElsewhere:
    """The lake file for this content already belongs to another live drop."""

    owner: int


class _Hold:
    """An exclusive ``flock`` on a claimed file; the kernel drops it if the process dies."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def release(self) -> None:
        """Let go of the file so another process's recover may take it."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _try_hold(path: Path) -> _Hold | None:
    """Lock a file without waiting: None when another holder has it; FileNotFoundError if gone."""
    fd = os.open(path, os.O_RDONLY)
    if fcntl is None:
        return _Hold(fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return _Hold(fd)


def _create_held(path: Path) -> _Hold:
    """Create a new empty file and lock it before anything is written to it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return _Hold(fd)


@contextlib.contextmanager
def _folder_lock(lock_file: Path) -> Iterator[None]:
    """Serialize compatibility check + lake write per kind, across processes."""
    if fcntl is None:
        yield
        return
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _backoff(attempt: int) -> float:
    """Wait longer after each failed attempt, capped, so a locked file gets time to free up."""
    return min(0.05 * 2 ** (attempt - 1), 2.0)


def _sha256(path: Path) -> str:
    """Hash a file in chunks, so a large drop never sits in memory."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _human_size(size: int) -> str:
    """Say a size the way a person reads it."""
    if size >= 1024 * 1024:
        return f"{size / 1024 / 1024:.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size} bytes"


def _remove_claim_folder(claimed: Path) -> None:
    """Remove a claim's folder once its file has moved on; a non-empty one is left alone."""
    with contextlib.suppress(OSError):
        claimed.parent.rmdir()


def _write_json_atomic(path: Path, body: dict[str, Any]) -> None:
    """Write a small JSON file whole or not at all."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(body, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _check_kind(kind: str) -> None:
    """Refuse a kind the layout has no folders for."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")


class Intake:
    """Takes files into the lake and the ledger; the watcher, the CLI and bootstrap share it."""

    def __init__(
        self,
        config: IngestConfig,
        ledger: Ledger,
        on_normalized: Callable[[FileRecord], None] | None = None,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.on_normalized = on_normalized

    # -- public ------------------------------------------------------------------------------

    def take(self, path: Path, kind: str) -> FileRecord:
        """Move a file out of an inbox and through ingest; it ends in archive/ or quarantine/.

        Raises FileNotFoundError or PermissionError only when the file could not even be
        claimed (it vanished, or cannot be moved): then it never became a drop.
        """
        _check_kind(kind)
        self._ensure_dirs()
        path = Path(path)
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a folder; only files are taken")
        hold, claimed = self._claim(path, kind)
        try:
            return self._enter(claimed, kind, path.name, hold)
        finally:
            hold.release()

    def take_copy(self, path: Path, kind: str) -> FileRecord:
        """Ingest a copy of a file that stays where it is (``dropscore ingest``, bootstrap)."""
        _check_kind(kind)
        self._ensure_dirs()
        path = Path(path)
        size = path.stat().st_size
        if size > self._max_bytes:
            return self._reject_uncopied(path, kind, size)
        claimed = self._claim_name(kind, path.name)
        claimed.parent.mkdir(parents=True, exist_ok=True)
        tmp = claimed.with_name(f".{claimed.name}.copying")
        hold = _create_held(tmp)  # locked before the copy, so no recover deletes it mid-copy
        try:
            shutil.copyfile(path, tmp)
            os.rename(tmp, claimed)
            return self._enter(claimed, kind, path.name, hold)
        finally:
            hold.release()
            tmp.unlink(missing_ok=True)
            _remove_claim_folder(claimed)

    def recover(self) -> list[FileRecord]:
        """Finish whatever a crash interrupted; run at start-up, before new files are taken."""
        self._ensure_dirs()
        self._remove_lake_temporaries()
        done = [r for kind in KINDS for r in self._recover_claims(kind)]
        done.extend(self._recover_orphan_rows())
        done.extend(self._recover_rejections())
        if done:
            log.info("recovered", extra={"files": len(done)})
        return done

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
        files = self._bootstrap_files(path)
        if not files:
            log.warning("bootstrap found no file", extra={"file": str(path)})
            return None
        records = [self.take_copy(f, "train") for f in files]
        return next((r for r in records if r.state == NORMALIZED), records[0])

    def reject_normalized(self, record: FileRecord, error: IngestError) -> FileRecord:
        """Quarantine a normalized score drop the scorer cannot use, original and all.

        The ledger commits first; then the error record is written, the archived original
        moves to quarantine/ and the drop's lake file is removed. ``recover`` finishes those
        steps if a crash interrupts them.
        """
        record = self.ledger.mark_score_refused(
            record.id,
            error=error.to_dict(),
            quarantine_path=self.config.quarantine / f"{record.id}__{record.original_name}",
        )
        self._finish_rejection(record)
        self._log_quarantined(record)
        return record

    # -- claiming ----------------------------------------------------------------------------

    @property
    def _max_bytes(self) -> float:
        return self.config.max_file_mb * 1024 * 1024

    def _ensure_dirs(self) -> None:
        """Create the data layout and the per-kind claim folders; cheap and idempotent."""
        self.config.make_dirs()
        for kind in KINDS:
            (self.config.processing / kind).mkdir(exist_ok=True)

    def _lake_lock_file(self, kind: str) -> Path:
        """Name the lock that serializes writers of one lake folder (kept out of the lake)."""
        return self.config.processing / f".lake-{kind}.lock"

    def _claim_name(self, kind: str, name: str) -> Path:
        """Name a claim so two drops of one name never collide; only the basename is kept."""
        return self.config.processing / kind / uuid.uuid4().hex / Path(name).name

    def _claim(self, path: Path, kind: str) -> tuple[_Hold, Path]:
        """Lock and rename the file into processing/, retrying transient failures."""
        dest = self._claim_name(kind, path.name)
        for attempt in range(1, self.config.max_attempts + 1):
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                hold = _try_hold(path)
                if hold is None:
                    raise BlockingIOError(f"{path.name} is locked by another process")
                try:
                    os.rename(path, dest)
                except BaseException:
                    hold.release()
                    raise
                log.debug("claimed", extra={"file": path.name, "kind": kind})
                return hold, dest
            except (FileNotFoundError, PermissionError, BlockingIOError) as exc:
                if attempt >= self.config.max_attempts:
                    _remove_claim_folder(dest)
                    log.warning(
                        "could not claim",
                        extra={"file": path.name, "kind": kind, "error": str(exc)},
                    )
                    raise
                time.sleep(_backoff(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _enter(self, claimed: Path, kind: str, name: str, hold: _Hold) -> FileRecord:
        """Record a claimed file in the ledger and carry it to a terminal state."""
        size = claimed.stat().st_size
        if size > self._max_bytes:
            error = self._too_large(name, size)
            record = self.ledger.receive(
                original_name=name,
                kind=kind,
                size_bytes=size,
                sha256=None,
                processing_path=claimed,
                rejected=error.to_dict(),
            )
            return self._settle(record, claimed)
        sha = self._hash_with_retries(claimed)
        record = self.ledger.receive(
            original_name=name, kind=kind, size_bytes=size, sha256=sha, processing_path=claimed
        )
        if record.state == DUPLICATE:
            return self._settle(record, claimed)
        return self._process(record, claimed)

    def _hash_with_retries(self, claimed: Path) -> str:
        """Hash the claimed file, riding out a short-lived lock or permission glitch."""
        for attempt in range(1, self.config.max_attempts + 1):
            try:
                return _sha256(claimed)
            except (PermissionError, BlockingIOError):
                if attempt >= self.config.max_attempts:
                    raise
                time.sleep(_backoff(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _too_large(self, name: str, size: int) -> FileTooLargeError:
        """Describe a file over the size cap in words a person can act on."""
        limit = self.config.max_file_mb
        return FileTooLargeError(
            f"{name} is {_human_size(size)}, over the {limit:g} MB limit",
            expected=f"at most {limit:g} MB ([ingest] max_file_mb)",
        )

    def _reject_uncopied(self, path: Path, kind: str, size: int) -> FileRecord:
        """Quarantine-record an oversized file for take_copy without copying gigabytes."""
        record = self.ledger.receive(
            original_name=path.name,
            kind=kind,
            size_bytes=size,
            sha256=None,
            processing_path=None,
            rejected=self._too_large(path.name, size).to_dict(),
        )
        self._write_error_record(record)
        self._log_quarantined(record)
        return record

    # -- processing --------------------------------------------------------------------------

    def _process(self, record: FileRecord, claimed: Path) -> FileRecord:
        """Read, normalize and write the lake file, retrying transient failures."""
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
                outcome = self._normalize(record, claimed)
            except TRANSIENT as exc:
                if attempt >= self.config.max_attempts:
                    return self._quarantine(
                        record,
                        claimed,
                        RetriesExhaustedError(
                            f"gave up on {record.original_name} after {attempt} attempts: {exc}"
                        ),
                    )
                log.warning("retrying", extra=self._extra(record, attempt=attempt, error=str(exc)))
                time.sleep(_backoff(attempt))
                continue
            except IngestError as exc:
                return self._quarantine(record, claimed, exc)
            except Exception as exc:
                log.exception("unexpected failure", extra=self._extra(record))
                return self._quarantine(
                    record,
                    claimed,
                    InternalIngestError(
                        f"unexpected {type(exc).__name__} while reading "
                        f"{record.original_name}: {exc}"
                    ),
                )
            if isinstance(outcome, _OwnedElsewhere):
                return self._duplicate_of(record, claimed, outcome.owner)
            return self._accept(record, claimed, outcome)

    def _normalize(self, record: FileRecord, claimed: Path) -> _Normalized | _OwnedElsewhere:
        """Turn the claimed file into its lake file, or say the lake already has it."""
        from ingest.lake import write_parquet_atomic
        from ingest.normalize import normalize_file
        from ingest.readers import open_table

        raw = open_table(claimed, self.config.read)
        try:
            table = normalize_file(raw, record.id)
            dest = self.config.lake(record.kind) / f"{record.sha256}.parquet"
            with _folder_lock(self._lake_lock_file(record.kind)):
                owner = self._clear_leftover(dest, record.id)
                if owner is not None:
                    return _OwnedElsewhere(owner)
                if record.kind == "train":
                    self._check_train_types(table.schema)
                rows = write_parquet_atomic(table.batches, table.schema, dest)
        finally:
            close = getattr(raw, "close", None)
            if callable(close):
                close()
        if rows == 0:
            dest.unlink(missing_ok=True)
            raise NoRowsError(f"{record.original_name} has no data rows")
        return _Normalized(
            rows=rows,
            columns=len(table.column_map),
            format=getattr(raw.format, "value", raw.format),
            encoding=raw.encoding,
            delimiter=raw.delimiter,
            column_map=dict(table.column_map),
            lake_path=dest,
        )

    def _check_train_types(self, schema: Any) -> None:
        """Refuse a training file whose column types clash with the training lake."""
        from ingest.lake import check_compatible, lake_schema

        conflicts = check_compatible(lake_schema(self.config.lake("train")), schema)
        if conflicts:
            first = conflicts[0]
            raise TypeConflictError(
                "; ".join(c.message for c in conflicts),
                column=getattr(first, "column", None),
                expected=str(getattr(first, "lake_type", "")) or None,
            )

    def _clear_leftover(self, dest: Path, file_id: int) -> int | None:
        """Make room for the lake write: remove our own or an orphaned earlier attempt.

        Returns the owning drop's id when a live drop already holds this content.
        """
        if not dest.exists():
            return None
        owner = _lake_owner(dest)
        if owner is not None and owner != file_id:
            other = self.ledger.get(owner)
            if other is not None and other.state in LIVE_STATES:
                return owner
        log.info("replacing leftover lake file", extra={"file_id": file_id, "lake_path": str(dest)})
        dest.unlink(missing_ok=True)
        return None

    # -- endings -----------------------------------------------------------------------------

    def _accept(self, record: FileRecord, claimed: Path, done: _Normalized) -> FileRecord:
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
            archive_path=self.config.archive / f"{record.id}__{record.original_name}",
        )
        self._settle(record, claimed)
        return record

    def _duplicate_of(self, record: FileRecord, claimed: Path, owner: int) -> FileRecord:
        """Commit a drop whose content another live drop already put in the lake."""
        record = self.ledger.mark_duplicate(
            record.id,
            duplicate_of=owner,
            archive_path=self.config.archive / f"{record.id}__{record.original_name}",
        )
        return self._settle(record, claimed)

    def _quarantine(
        self, record: FileRecord, claimed: Path | None, error: IngestError
    ) -> FileRecord:
        """Commit a rejection, then write its error record and move the original beside it."""
        self._discard_own_lake_file(record)
        record = self.ledger.mark_quarantined(
            record.id,
            error=error.to_dict(),
            quarantine_path=self.config.quarantine / f"{record.id}__{record.original_name}",
        )
        return self._settle(record, claimed)

    def _discard_own_lake_file(self, record: FileRecord) -> None:
        """Remove a lake file an earlier attempt of this drop wrote, so a reject adds nothing."""
        if record.sha256 is None:
            return
        dest = self.config.lake(record.kind) / f"{record.sha256}.parquet"
        with _folder_lock(self._lake_lock_file(record.kind)):
            if dest.exists() and _lake_owner(dest) == record.id:
                dest.unlink(missing_ok=True)

    def _finish_rejection(self, record: FileRecord) -> None:
        """Move a rejected normalized drop out of archive/ and the lake; idempotent."""
        self._write_error_record(record)
        archived = self.ledger.resolve(record.archive_path)
        dest = self.ledger.resolve(record.quarantine_path)
        if archived is not None and dest is not None and archived.exists():
            os.replace(archived, dest)
        self._discard_own_lake_file(record)

    def _settle(self, record: FileRecord, claimed: Path | None) -> FileRecord:
        """Move the original where its terminal row says; idempotent, so recover can redo it."""
        if record.state == QUARANTINED:
            self._write_error_record(record)
            dest = self.ledger.resolve(record.quarantine_path)
        else:
            dest = self.ledger.resolve(record.archive_path)
        if claimed is not None and dest is not None and claimed.exists():
            os.replace(claimed, dest)
            _remove_claim_folder(claimed)
        if record.state == QUARANTINED:
            self._log_quarantined(record)
        elif record.state == DUPLICATE:
            log.info(
                "duplicate",
                extra=self._extra(
                    record, duplicate_of=record.duplicate_of, archive_path=record.archive_path
                ),
            )
        elif record.state == NORMALIZED:
            log.info(
                "normalized",
                extra=self._extra(record, rows=record.rows, lake_path=record.lake_path),
            )
            self._notify(record)
        return record

    def _write_error_record(self, record: FileRecord) -> None:
        """Write ``<id>__<name>.error.json``: what is wrong and what to do about it."""
        error = dict(record.error or {})
        body = {
            **error,
            "file": record.original_name,
            "file_id": record.id,
            "kind": record.kind,
            "size_bytes": record.size_bytes,
            "sha256": record.sha256,
            "quarantined_at": record.finished_at,
            "what_to_do": HINTS.get(str(error.get("code")), DEFAULT_HINT),
        }
        name = f"{record.id}__{record.original_name}.error.json"
        _write_json_atomic(self.config.quarantine / name, body)

    def _log_quarantined(self, record: FileRecord) -> None:
        """Say which file was rejected and why."""
        error = record.error or {}
        log.warning(
            "quarantined",
            extra=self._extra(
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
            log.exception("on_normalized failed", extra=self._extra(record))

    @staticmethod
    def _extra(record: FileRecord, **more: Any) -> dict[str, Any]:
        """Build the structured log fields naming the drop."""
        return {"file_id": record.id, "file": record.original_name, "kind": record.kind, **more}

    # -- recovery ----------------------------------------------------------------------------

    def _remove_lake_temporaries(self) -> None:
        """Delete half-written lake temporaries from a crashed writer."""
        from ingest.lake import remove_stale_temporaries

        for kind in KINDS:
            with _folder_lock(self._lake_lock_file(kind)):
                removed = remove_stale_temporaries(self.config.lake(kind))
            if removed:
                log.info("removed lake temporaries", extra={"kind": kind, "files": len(removed)})
        for tmp in self.config.quarantine.glob(".*.error.json.*.tmp"):
            with contextlib.suppress(OSError):  # an error record cut short; rewritten from the row
                if time.time() - tmp.stat().st_mtime > _EMPTY_CLAIM_GRACE_SECONDS:
                    tmp.unlink()

    def _recover_claims(self, kind: str) -> list[FileRecord]:
        """Take again, or finish, every file left in processing/<kind>/<uuid>/."""
        done = []
        for folder in sorted((self.config.processing / kind).iterdir()):
            if not folder.is_dir():
                continue
            for entry in sorted(folder.iterdir()):
                done.extend(self._recover_claim(entry, kind))
            self._remove_stale_claim_folder(folder)
        return done

    def _recover_claim(self, entry: Path, kind: str) -> list[FileRecord]:
        """Resume one claimed file unless a live process holds it."""
        if not entry.is_file():
            return []
        try:
            hold = _try_hold(entry)
        except FileNotFoundError:
            return []
        if hold is None:
            return []  # another live process is working on it
        try:
            if entry.name.startswith("."):
                entry.unlink(missing_ok=True)  # an interrupted take_copy copy
                return []
            return [self._resume(entry, kind, hold)]
        except Exception:
            log.exception("could not recover", extra={"file": entry.name, "kind": kind})
            return []
        finally:
            hold.release()

    @staticmethod
    def _remove_stale_claim_folder(folder: Path) -> None:
        """Remove an empty claim folder a crash left, unless a claim may be starting in it."""
        with contextlib.suppress(OSError):
            if time.time() - folder.stat().st_mtime > _EMPTY_CLAIM_GRACE_SECONDS:
                folder.rmdir()

    def _resume(self, claimed: Path, kind: str, hold: _Hold) -> FileRecord:
        """Continue a claimed file from wherever its ledger row says it stopped."""
        record = self.ledger.find_by_processing_path(claimed)
        if record is None:
            return self._enter(claimed, kind, claimed.name, hold)
        log.info("resuming", extra=self._extra(record, state=record.state))
        if record.state == RECEIVED:
            return self._process(record, claimed)
        return self._settle(record, claimed)

    def _recover_orphan_rows(self) -> list[FileRecord]:
        """Quarantine ``received`` rows whose file is gone, so no row stays unfinished."""
        done = []
        for record in self.ledger.list(state=RECEIVED, limit=None):
            path = self.ledger.resolve(record.processing_path)
            if path is not None and path.exists():
                continue  # a live process holds it; recover_claims skipped it on purpose
            try:
                done.append(
                    self._quarantine(
                        record,
                        None,
                        InternalIngestError(
                            f"{record.original_name} disappeared from processing/ before it was "
                            "ingested; the original is not in archive/ or quarantine/"
                        ),
                    )
                )
            except IllegalTransition:
                continue  # another process finished it meanwhile
        return done

    def _recover_rejections(self) -> list[FileRecord]:
        """Finish rejections of normalized drops that a crash cut short."""
        done = []
        for record in self.ledger.list(state=QUARANTINED, limit=None):
            if record.archive_path is None or record.lake_path is None:
                continue  # rejected before it was normalized: settled by _settle
            archived = self.ledger.resolve(record.archive_path)
            lake_file = self.ledger.resolve(record.lake_path)
            leftover = (archived is not None and archived.exists()) or (
                lake_file is not None and lake_file.exists() and _lake_owner(lake_file) == record.id
            )
            if leftover:
                self._finish_rejection(record)
                done.append(record)
        return done

    # -- bootstrap ---------------------------------------------------------------------------

    def _train_lake_has_data(self) -> bool:
        """Tell whether training data exists, in the lake or in the ledger's history."""
        from ingest.lake import lake_files

        return bool(lake_files(self.config.lake("train"))) or self.ledger.has_normalized("train")

    @staticmethod
    def _bootstrap_files(path: Path) -> list[Path]:
        """List the file, or the files of a folder, that bootstrap should take."""
        if path.is_dir():
            return sorted(
                p for p in path.iterdir() if p.is_file() and not is_unfinished_name(p.name)
            )
        return [path] if path.is_file() else []


def _lake_owner(path: Path) -> int | None:
    """Return the ``_file_id`` a lake file was written for, or None if it cannot be read."""
    try:
        table = pq.ParquetFile(path).read_row_group(0, columns=["_file_id"])
        values = table.column("_file_id")
        return int(values[0].as_py()) if len(values) else None
    except Exception:
        return None
