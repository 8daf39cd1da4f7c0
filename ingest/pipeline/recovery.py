"""Start-up recovery: find what a crash left behind, for ``Intake.resume`` to finish.

A ``kill -9`` can stop the intake between any two of its steps (see ``ingest/pipeline/intake.py``).
What it leaves, and who finishes it:

- half-written temporaries in the lake and in quarantine/: deleted here (the lake file is
  written again, the error record rewritten from the ledger row);
- files in ``processing/<kind>/<uuid>/``: handed one by one, locked, to the intake (a claim an
  older release named after the raw bytes of its drop is first renamed to the text form of
  ``ingest.base.names``, the form the ledger stores), which takes them again (no row, or a
  ``received`` row) or moves them where their terminal row says; an
  interrupted ``take_copy`` temporary is deleted (its source is intact); a file another live
  process holds is left alone; a lake file published by a drop that was not yet committed is
  replaced when the drop is taken again (or not published again, when another drop committed
  the same table meanwhile), and a duplicate's own lake file is removed before its original
  leaves processing/, so a duplicate killed in between has it removed here too;
- ``received`` rows whose file is gone: listed here, quarantined by the intake (on a ledger
  replicas share, only this data folder's, or another's whose claim expired);
- rejections of normalized drops cut short (original still in archive/, or the lake file still
  there): listed here, finished by the intake.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from ingest.base.config import KINDS, IngestConfig
from ingest.base.errors import InternalIngestError
from ingest.base.names import escape, on_disk, shown, undecodable
from ingest.lake.lakefile import drop_lake_owner
from ingest.pipeline.quarantine import remove_stale_temporaries as remove_stale_error_temporaries
from ingest.state.claims import (
    EMPTY_CLAIM_GRACE_SECONDS,
    is_interrupted_copy,
    lake_lock,
    try_hold,
)
from ingest.state.file_ledger import FileLedger
from ingest.state.ledger import QUARANTINED, RECEIVED, FileRecord

log = logging.getLogger("dropscore.ingest")

ResumeClaim = Callable[[Path, str], FileRecord]  # called with the claim held

DEFERRED = "disk_full"  # the error code of a ``received`` row a full disk left waiting
# Another replica's ``received`` drop untouched this long was left by a process that died: a
# take reads one file of at most ``max_file_mb``, minutes at worst, so an hour is no live read.
CLAIM_EXPIRES_SECONDS = 3600.0


def remove_temporaries(config: IngestConfig) -> None:
    """Delete half-written lake files and error records from a crashed writer."""
    for kind in KINDS:
        with lake_lock(config, kind):
            removed = config.lake_store(kind).remove_temporaries()
        if removed:
            log.info("removed lake temporaries", extra={"kind": kind, "files": len(removed)})
    remove_stale_error_temporaries(config.quarantine, older_than=EMPTY_CLAIM_GRACE_SECONDS)


def resume_claims(config: IngestConfig, kind: str, resume: ResumeClaim) -> list[FileRecord]:
    """Hand every free file left in processing/<kind>/<uuid>/ to ``resume``, locked."""
    done = []
    for folder in sorted((config.processing / kind).iterdir()):
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            done.extend(_resume_claim(entry, kind, resume))
        _remove_stale_claim_folder(folder)
    return done


def resume_deferred(ledger: FileLedger, resume: ResumeClaim) -> list[FileRecord]:
    """Hand each drop a full disk left waiting, in any process, to ``resume`` unless one holds it.

    Its row is ``received`` with the ``disk_full`` error and its claim is in processing/; the
    process that deferred it may have exited (``dropscore ingest``) or still run, so only a
    claim whose ``flock`` is free is taken.
    """
    done = []
    for record in ledger.list(state=RECEIVED, limit=None):
        if (record.error or {}).get("code") != DEFERRED:
            continue
        claimed = ledger.resolve(record.processing_path)
        if claimed is not None:
            done.extend(_resume_claim(claimed, record.kind, resume))
    return done


def _resume_claim(entry: Path, kind: str, resume: ResumeClaim) -> list[FileRecord]:
    """Resume one claimed file unless a live process holds it; its failure is only logged."""
    if not entry.is_file():
        return []
    try:
        hold = try_hold(entry)
    except FileNotFoundError:
        return []
    if hold is None:
        return []  # another live process is working on it
    try:
        if is_interrupted_copy(entry):
            entry.unlink(missing_ok=True)
            return []
        return [resume(_as_stored(entry), kind)]
    except Exception:
        log.exception("could not recover", extra={"file": shown(entry.name), "kind": kind})
        return []
    finally:
        hold.release()


def _as_stored(entry: Path) -> Path:
    """Rename a claim named after raw bytes (by an older release) to its text form, held.

    Such a claim never got a ledger row (its path could not be stored), so no row names the
    old path. The lock stays on the file across the rename. The text form is shortened as a new
    claim's is (``names.on_disk``): each undecodable byte takes four characters, so a long raw
    name could pass the filesystem's limit.
    """
    if not undecodable(entry.name):
        return entry
    target = entry.with_name(on_disk(escape(entry.name)))
    os.link(entry, target)  # never over another file: FileExistsError instead
    entry.unlink()
    return target


def _remove_stale_claim_folder(folder: Path) -> None:
    """Remove an empty claim folder a crash left, unless a claim may be starting in it."""
    with contextlib.suppress(OSError):
        if time.time() - folder.stat().st_mtime > EMPTY_CLAIM_GRACE_SECONDS:
            folder.rmdir()


def orphan_rows(
    ledger: FileLedger, expired_after: float = CLAIM_EXPIRES_SECONDS
) -> list[FileRecord]:
    """List ``received`` rows whose file is gone from processing/, so none stays unfinished.

    On a ledger replicas share, another machine's drop is left to it (its file is in that
    machine's processing/, not missing) until it has not moved for ``expired_after`` seconds.
    """
    orphans = []
    for record in ledger.unfinished(expired_after=expired_after):
        path = ledger.resolve(record.processing_path)
        if path is not None and path.exists():
            continue  # a live process holds it; resume_claims skipped it on purpose
        orphans.append(record)
    return orphans


def vanished(record: FileRecord) -> InternalIngestError:
    """Describe a drop whose claimed file disappeared before it was ingested."""
    return InternalIngestError(
        f"{record.original_name} disappeared from processing/ before it was "
        "ingested; the original is not in archive/ or quarantine/"
    )


def unfinished_rejections(config: IngestConfig, ledger: FileLedger) -> list[FileRecord]:
    """List rejections of normalized drops whose original or lake file a crash left behind."""
    unfinished = []
    for record in ledger.list(state=QUARANTINED, limit=None):
        if record.archive_path is None or record.lake_path is None:
            continue  # rejected before it was normalized: settled like any quarantine
        archived = ledger.resolve(record.archive_path)
        leftover = (archived is not None and archived.exists()) or (
            drop_lake_owner(config, record) == record.id
        )
        if leftover:
            unfinished.append(record)
    return unfinished
