"""A drop's lake file: ``lake/<kind>/<sha256>.parquet``, written under the kind's lake lock.

Each lake file carries its drop's ``_file_id``, so a re-take (after a crash) recognizes its own
leftover and replaces it, while content another live drop already put in the lake makes this
drop a duplicate of that one. Training files are type-checked against the training lake under
the same lock as the write, so two processes cannot both add clashing columns: every batch, not
only the first, must fit the lake's types (``normalize_file(strict=True)``), and the lake's
schema comes from its schema record (``ingest.lake.store.lake_schema``), updated with each write.

The same table in another format has other bytes, so the normalized table is hashed too
(``ingest/lake/content.py``), batch by batch as it is written. When a live drop of the kind already
committed that content, the temporary is dropped before it is published and the drop is a
duplicate by content. A drop committing the same content at the same moment in another process
is caught by the ledger's commit (``Ledger.mark_normalized``); the intake then removes the lake
file the later drop published.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa

from ingest import readers
from ingest.base.config import IngestConfig
from ingest.base.errors import NoRowsError, TransientIngestError
from ingest.lake.content import ContentHash, hashed
from ingest.lake.store import Lake
from ingest.pipeline.normalize import normalize_file
from ingest.state.claims import lake_lock
from ingest.state.file_ledger import FileLedger
from ingest.state.ledger import BY_BYTES, BY_CONTENT, LIVE_STATES, FileRecord
from ingest.state.locks import Lock

log = logging.getLogger("dropscore.ingest")


@dataclass(frozen=True)
class Normalized:
    """What a successful lake write tells the ledger."""

    rows: int
    columns: int
    format: str | None
    encoding: str | None
    delimiter: str | None
    column_map: dict[str, str]
    lake_path: Path
    content_sha256: str


@dataclass(frozen=True)
class OwnedElsewhere:
    """The lake already holds this content for another live drop: by bytes or by content."""

    owner: int
    by: str = BY_BYTES
    content_sha256: str | None = None


class LakeLockLost(TransientIngestError):
    """The kind's lake lock went away during a write (its database connection was lost)."""


class _SameContent(Exception):
    """Raised at the end of the batches to stop a lake write whose table is already there."""

    def __init__(self, owner: int, content_sha256: str) -> None:
        super().__init__(f"content already in the lake for file {owner}")
        self.owner = owner
        self.content_sha256 = content_sha256


def lake_file(config: IngestConfig, record: FileRecord) -> Path:
    """Name a drop's lake file by its content, so equal content lands on one file."""
    return config.lake(record.kind) / f"{record.sha256}.parquet"


def write_lake_file(
    config: IngestConfig, ledger: FileLedger, record: FileRecord, claimed: Path
) -> Normalized | OwnedElsewhere:
    """Turn the claimed file into its lake file, or say the lake already has it.

    Raises the reader's and the normalizer's IngestErrors, and NoRowsError for a file with a
    header and no rows (its empty lake file is removed first).
    """
    # max_file_mb counts what a compressed file unpacks to as well (ingest.readers.open_bytes).
    raw = readers.open_table(claimed, replace(config.read, max_unpacked_mb=config.max_file_mb))
    content = ContentHash()
    train = record.kind == "train"
    try:
        table = normalize_file(raw, record.id, strict=train)
        dest = lake_file(config, record)
        lake = config.lake_store(record.kind)
        with lake_lock(config, record.kind) as lock:
            owner = _clear_leftover(ledger, lake, dest.name, record.id)
            if owner is not None:
                return OwnedElsewhere(owner)
            if train:  # every batch is checked against it as it is written
                table.expected = lake.unified_schema()
            batches = _while_held(
                _unless_known(hashed(table.batches, content), content, ledger, record), lock
            )
            rows = lake.write(dest.name, batches, table.schema)
            if train:
                lake.remember(dest.name, table.schema)
    except _SameContent as same:  # the temporary was removed; nothing was published
        return OwnedElsewhere(same.owner, BY_CONTENT, same.content_sha256)
    finally:
        close = getattr(raw, "close", None)
        if callable(close):
            close()
    if rows == 0:
        lake.delete(dest.name)
        raise NoRowsError(f"{record.original_name} has no data rows")
    return Normalized(
        rows=rows,
        columns=len(table.column_map),
        format=raw.format.value,
        encoding=raw.encoding,
        delimiter=raw.delimiter,
        column_map=dict(table.column_map),
        lake_path=dest,
        content_sha256=content.hexdigest(),
    )


def _unless_known(
    batches: Iterator[pa.RecordBatch], content: ContentHash, ledger: FileLedger, record: FileRecord
) -> Iterator[pa.RecordBatch]:
    """Pass the batches on; after the last, stop the write if a live drop has this content.

    Raising from inside the writer's loop makes ``Lake.write`` discard its temporary,
    so a duplicate by content is never published to the lake.
    """
    yield from batches
    digest = content.hexdigest()
    owner = ledger.find_by_content(record.kind, digest, excluding=record.id)
    if owner is not None:
        raise _SameContent(owner.id, digest)


def _while_held(batches: Iterator[pa.RecordBatch], lock: Lock) -> Iterator[pa.RecordBatch]:
    """Pass the batches on; after the last, stop the write if the lake lock was lost meanwhile.

    An advisory lock dies with its connection, so another replica may have been writing this
    kind's lake (its schema, this very file) since: nothing is published, and the transient
    error leaves the drop ``received`` for another attempt under the lock taken again.
    """
    yield from batches
    if not lock.held():
        raise LakeLockLost(f"lost the lake lock {lock.name!r} while writing; trying again")


def _clear_leftover(ledger: FileLedger, lake: Lake, name: str, file_id: int) -> int | None:
    """Make room for the lake write: remove our own or an orphaned earlier attempt.

    Returns the owning drop's id when a live drop already holds this content.
    """
    if not lake.exists(name):
        return None
    owner = _owner(lake, name)
    if owner is not None and owner != file_id:
        other = ledger.get(owner)
        if other is not None and other.state in LIVE_STATES:
            return owner
    log.info(
        "replacing leftover lake file", extra={"file_id": file_id, "lake_path": lake.path(name)}
    )
    lake.delete(name)
    return None


def discard_own_lake_file(config: IngestConfig, record: FileRecord) -> None:
    """Remove a lake file this drop wrote, so a rejected drop adds nothing to the lake."""
    if record.sha256 is None:
        return
    dest = lake_file(config, record)
    lake = config.lake_store(record.kind)
    with lake_lock(config, record.kind):
        if lake.exists(dest.name) and _owner(lake, dest.name) == record.id:
            lake.delete(dest.name)


def lake_owner(path: Path) -> int | None:
    """Return the ``_file_id`` a local lake file was written for, or None if it cannot be read."""
    return _owner(Lake.local(path.parent), path.name)


def drop_lake_owner(config: IngestConfig, record: FileRecord) -> int | None:
    """Return the ``_file_id`` a drop's lake file was written for, wherever the lake lives, or
    None (no such file, or unreadable)."""
    if record.lake_path is None:
        return None
    lake = config.lake_store(record.kind)
    name = Path(record.lake_path).name
    return _owner(lake, name) if lake.exists(name) else None


def _owner(lake: Lake, name: str) -> int | None:
    """Read the ``_file_id`` of a file in ``lake`` from its first row group, or None."""
    try:
        values = lake.first_group(name, ["_file_id"]).column("_file_id")
        return int(values[0].as_py()) if len(values) else None
    except Exception:
        return None
