"""The file ledger over HTTP."""

from __future__ import annotations

import glob
import mimetypes
import os
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Blueprint, Response, jsonify, send_file

from ingest.base.layout import DataLayout
from ingest.base.names import on_disk, unescape
from ingest.pipeline.markers import marker_of
from ingest.state.claims import folder_lock
from ingest.state.file_ledger import FileLedger
from ingest.state.ledger import QUARANTINED, RETRIED, STATES, FileRecord, IllegalTransition
from scoring.api.context import services
from scoring.api.openapi import (
    ANY_OBJECT,
    INTEGER,
    STRING,
    array,
    nullable,
    obj,
    operation,
    query_param,
    response_object,
)
from scoring.api.params import page_args
from scoring.errors import Conflict, NotFound

if TYPE_CHECKING:
    from scoring.settings import Settings

bp = Blueprint("files", __name__)

FILE = obj(
    id=INTEGER,
    original_name=STRING,
    kind=STRING,
    state=STRING,
    size_bytes=nullable(INTEGER),
    sha256=nullable(STRING),
    content_sha256=nullable(STRING),  # the normalized table's hash (ingest/lake/content.py)
    duplicate_of=nullable(INTEGER),
    duplicate_by=nullable({**STRING, "enum": ["bytes", "content", None]}),  # how it matched
    retried_as=nullable(INTEGER),  # a retried drop: the drop its retry made
    queued_as=nullable(STRING),  # a retried drop: the name its copy was queued under
    rows=nullable(INTEGER),
    columns=nullable(INTEGER),
    format=nullable(STRING),
    column_map=nullable(ANY_OBJECT),
    error=nullable(ANY_OBJECT),
    model_version=nullable(STRING),
    received_at=STRING,
    finished_at=nullable(STRING),
    drift=nullable({**STRING, "enum": ["drifted", "stable", "not_compared", None]}),
)
STATE = {"type": "string", "enum": list(STATES)}


@bp.get("/files")
@operation(
    "The file ledger, newest first",
    query=[
        query_param("status", STATE, "only files in this ledger state"),
        query_param("state", STATE, "the same as status"),
        query_param("limit", {**INTEGER, "minimum": 1, "maximum": 1000}, "page size"),
        query_param("offset", {**INTEGER, "minimum": 0, "maximum": 10**9}, "files to skip"),
    ],
    responses={200: response_object(obj(files=array(FILE), limit=INTEGER, offset=INTEGER))},
    errors=(422,),
)
def list_files() -> Response:
    """List ledger records, optionally of one state (``?status=`` or ``?state=``)."""
    page = page_args(STATES, "ledger", 100, "status", "state")
    records = services().ledger.list(state=page.state, limit=page.limit, offset=page.offset)
    return jsonify(
        {"files": [r.to_dict() for r in records], "limit": page.limit, "offset": page.offset}
    )


@bp.get("/files/<id:file_id>")
@operation("One file of the ledger", responses={200: response_object(FILE)})
def show_file(file_id: int) -> Response:
    """Show one ledger row: where the drop is and why it ended there."""
    record = services().ledger.get(file_id)
    if record is None:
        raise NotFound(f"file {file_id} is not in the ledger")
    return jsonify(record.to_dict())


# -- retry and downloads (the dashboard's Files page calls the same functions) -----------------


def requeue(ledger: FileLedger, layout: DataLayout, file_id: int, marker: str | None = None) -> str:
    """Take a quarantined drop again: copy its original into its inbox; return the copy's name.

    The drop becomes ``retried`` (one guarded update, so of two retries at once exactly one
    wins and the other is a 409) before the copy appears in the inbox; the drop the watcher makes
    of the copy carries the original name, and this drop names it (``retried_as``). The file is
    taken as it is: worth it after a setting or the model changed, not when the file itself must
    be fixed. Dedupe only counts live drops (received, normalized, scored), so content that was
    quarantined is never refused as its own duplicate. The copy is written under a dotted name
    (which the watcher ignores) and renamed into place once the ledger agreed. With a ready
    marker on (``marker``; None reads the served settings' ``[ingest] ready_marker``), the copy's
    empty ``<name><marker>`` is written after it, as a producer does, or the watcher never takes it;
    a copy a crash (or an older release) left in the inbox without its marker gets it when the
    drop is retried again (the same copy's name is returned: nothing is queued twice).
    """
    settings = services().settings
    if marker is None:
        marker = settings.ingest.ready_marker
    if settings.storage.url:  # the original is only in the bucket; so is the inbox it goes to
        return _requeue_in_bucket(ledger, settings, file_id, marker)
    # one retry at a time: another's copy is briefly neither in the inbox nor renamed into it,
    # and must not be taken for a copy a crash lost (a lock, so a killed process frees it)
    layout.processing.mkdir(parents=True, exist_ok=True)
    with folder_lock(layout.retry_lock):
        return _requeue(ledger, layout, file_id, marker)


def _requeue(ledger: FileLedger, layout: DataLayout, file_id: int, marker: str) -> str:
    """Do ``requeue``'s work while holding the retry lock."""
    record = _record(ledger, file_id)
    unannounced = _unannounced_copy(layout, record, marker)
    if unannounced is not None:  # a crash (or an older release) left the copy without it
        marker_of(unannounced, marker).touch()
        return str(record.queued_as)
    lost = _lost_copy(layout, record)
    if record.state != QUARANTINED and lost is None:
        raise _not_retryable(record)
    original = _stored(ledger, record.quarantine_path, file_id, "quarantined original")
    inbox = layout.inbox(record.kind)
    inbox.mkdir(parents=True, exist_ok=True)
    # the dropped bytes again, short enough for the retry's prefix (the ledger keeps the name)
    name = _retry_name(record)
    tmp = inbox / f".retry{file_id}-{secrets.token_hex(3)}.tmp"
    try:
        shutil.copyfile(original, tmp)
        try:
            retried = ledger.mark_retried(file_id, queued_as=name, lost=lost)
        except IllegalTransition:
            raise _not_retryable(_record(ledger, file_id)) from None
        try:
            os.replace(tmp, inbox / name)
            if marker:
                _announce(inbox / name, marker)
        except OSError:
            ledger.unmark_retried(file_id)
            raise
    finally:
        tmp.unlink(missing_ok=True)
    return str(retried.queued_as)


def _requeue_in_bucket(ledger: FileLedger, settings: Settings, file_id: int, marker: str) -> str:
    """Do ``requeue``'s work under ``[storage] url``: copy the quarantined object into the
    bucket's inbox (a server-side copy: the poller sees the whole object or none).

    The ledger agrees first (of two retries one wins), then the copy and its ready marker are
    written; a copy that fails takes the agreement back, so the drop can be retried again.
    """
    from scoring.api.bucket_files import in_bucket

    record = _record(ledger, file_id)
    if record.state != QUARANTINED:
        raise _not_retryable(record)
    what = "quarantined original"
    source = in_bucket(settings, _inside(ledger, record.quarantine_path, file_id, what))
    if source is None:
        raise NotFound(f"file {file_id} has no {what} in the bucket")
    name = _retry_name(record)
    layout = settings.layout
    try:
        retried = ledger.mark_retried(file_id, queued_as=name)
    except IllegalTransition:
        raise _not_retryable(_record(ledger, file_id)) from None
    try:
        copy = source.copy_to(layout.key(layout.inbox(record.kind) / name))
        if marker:
            copy.beside(marker).write_empty()
    except OSError:
        ledger.unmark_retried(file_id)
        raise
    return str(retried.queued_as)


def _retry_name(record: FileRecord) -> str:
    """Name a retry's copy: the dropped name, short enough for the retry's prefix."""
    dropped = Path(unescape(on_disk(record.original_name))).name.replace("\0", "")
    return f"retry{record.id}-{secrets.token_hex(3)}__{dropped}"


def _announce(copy: Path, marker: str) -> None:
    """Write the empty ready marker of a copy now in the inbox; without it, take the copy back.

    Until its marker exists the watcher leaves the copy alone, so removing it is safe.
    """
    try:
        marker_of(copy, marker).touch()
    except OSError:
        copy.unlink(missing_ok=True)
        raise


def _unannounced_copy(layout: DataLayout, record: FileRecord, marker: str) -> Path | None:
    """Return a retry's copy that waits in the inbox without its ready marker, if one does.

    The watcher never takes it, so retrying again writes the marker instead of refusing.
    """
    if not marker or record.state != RETRIED or record.retried_as is not None:
        return None
    if record.queued_as is None:
        return None
    copy = layout.inbox(record.kind) / unescape(str(record.queued_as))
    if not os.path.lexists(copy) or os.path.lexists(marker_of(copy, marker)):
        return None
    return copy


def _lost_copy(layout: DataLayout, record: FileRecord) -> str | None:
    """Return the name of a retry's copy a crash lost before it reached the inbox, if it did.

    The ledger says the drop was retried, no drop was made of the copy, and the copy is
    neither in the inbox nor claimed in processing/: then nothing will ever take it, and the
    drop may be queued again (the ledger checks the same facts as it does so).
    """
    if record.state != RETRIED or record.retried_as is not None or record.queued_as is None:
        return None
    queued = str(record.queued_as)
    if os.path.lexists(layout.inbox(record.kind) / unescape(queued)):
        return None
    if any((layout.processing / record.kind).glob(f"*/{glob.escape(on_disk(queued))}")):
        return None
    return queued


def _not_retryable(record: FileRecord) -> Conflict:
    """Say why a drop cannot be retried, naming the drop a retry already made of it."""
    if record.state == RETRIED and record.retried_as is not None:
        return Conflict(
            f"file {record.id} was already retried as file {record.retried_as}",
            [{"file_id": record.id, "retried_as": record.retried_as}],
        )
    if record.state == RETRIED:
        return Conflict(
            f"file {record.id} was already retried: its copy waits in the {record.kind} "
            f"inbox as {record.queued_as}",
            [{"file_id": record.id, "queued_as": record.queued_as}],
        )
    return Conflict(
        f"file {record.id} is {record.state}; only quarantined files can be retried",
        [{"file_id": record.id, "state": record.state}],
    )


def stored_file(ledger: FileLedger, file_id: int, which: str) -> Path:
    """Return the original (archived or quarantined) or scored output of a drop, from the ledger."""
    return _stored(ledger, *_stored_path(ledger, file_id, which))


def _stored_path(ledger: FileLedger, file_id: int, which: str) -> tuple[str | None, int, str]:
    """Say which ledger path holds a drop's original or output, and what to call it."""
    record = _record(ledger, file_id)
    if which == "output":
        return record.output_path, file_id, "scored output"
    rejected = record.state in (QUARANTINED, RETRIED)  # a retry takes a copy: the original stays
    stored = record.quarantine_path if rejected else record.archive_path
    return stored, file_id, "original"


def _download(file_id: int, which: str) -> Response:
    """Send a drop's original or output: the local file, else (``[storage] url``) the object.

    Under ``[storage] url`` originals and outputs are moved to the bucket and their local
    copies removed; an output whose upload failed stays local, so the disk is looked at first.
    """
    s = services()
    stored, _, what = _stored_path(s.ledger, file_id, which)
    path = _inside(s.ledger, stored, file_id, what)
    if path.is_file() or not s.settings.storage.url:
        path = _stored(s.ledger, stored, file_id, what)
        return send_file(path, as_attachment=True, download_name=_name(path), max_age=0)
    from scoring.api.bucket_files import in_bucket

    found = in_bucket(s.settings, path)
    if found is None:
        raise NotFound(f"file {file_id} has no {what} in the bucket")
    return send_file(
        found.open(),
        mimetype=mimetypes.guess_type(path.name)[0] or "application/octet-stream",
        as_attachment=True,
        download_name=_name(path),
        max_age=0,
    )


@bp.post("/files/<id:file_id>/retry")
@operation(
    "Take a quarantined drop again, unchanged, as a new drop (once; then it is retried)",
    responses={202: response_object(obj(file_id=INTEGER, queued_as=STRING, state=STRING))},
    errors=(409,),
)
def retry_file(file_id: int) -> tuple[Response, int]:
    """Re-queue a quarantined drop; the new drop shows up in the ledger once ingested."""
    s = services()
    name = requeue(s.ledger, s.settings.layout, file_id)
    return jsonify({"file_id": file_id, "queued_as": name, "state": RETRIED}), 202


DOWNLOAD = {
    "description": "The stored file, as an attachment",
    # the type of the stored file (CSV, Parquet, Excel, JSON, …)
    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
}


@bp.get("/files/<id:file_id>/original")
@operation("Download a drop's original (archived or quarantined)", responses={200: DOWNLOAD})
def download_original(file_id: int) -> Response:
    """Send the file as it was dropped, so a person can fix and re-drop it."""
    return _download(file_id, "original")


@bp.get("/files/<id:file_id>/output")
@operation("Download a scored drop's output", responses={200: DOWNLOAD})
def download_output(file_id: int) -> Response:
    """Send the scored output of a drop."""
    return _download(file_id, "output")


def _record(ledger: FileLedger, file_id: int) -> FileRecord:
    record = ledger.get(file_id)
    if record is None:
        raise NotFound(f"file {file_id} is not in the ledger")
    return record


def _stored(ledger: FileLedger, stored: str | None, file_id: int, what: str) -> Path:
    """Resolve a ledger path, refusing anything outside the data folder or no longer there.

    A quarantined symbolic link is refused too: nothing is ever read through a dropped link.
    """
    path = _inside(ledger, stored, file_id, what)
    if not path.is_file():
        raise NotFound(f"file {file_id} has no {what} on disk")
    return path


def _inside(ledger: FileLedger, stored: str | None, file_id: int, what: str) -> Path:
    """Resolve a ledger path, refusing anything outside the data folder or a symbolic link
    (the same key names the object under ``[storage] url``, so the bucket is guarded too)."""
    path = ledger.resolve(stored)
    root = ledger.data_dir.resolve()
    if path is None or path.is_symlink() or not path.resolve().is_relative_to(root):
        raise NotFound(f"file {file_id} has no {what} on disk")
    return path


def _name(path: Path) -> str:
    """Offer the stored name without the ledger's ``<id>__`` prefix."""
    return path.name.split("__", 1)[-1]
