"""A drop's lake file: ``lake/<kind>/<sha256>.parquet``, written under the kind's lake lock.

Each lake file carries its drop's ``_file_id``, so a re-take (after a crash) recognizes its own
leftover and replaces it, while content another live drop already put in the lake makes this
drop a duplicate of that one. Training files are type-checked against the training lake under
the same lock as the write, so two processes cannot both add clashing columns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ingest import readers
from ingest.claims import lake_lock
from ingest.config import IngestConfig
from ingest.errors import NoRowsError, TypeConflictError
from ingest.lake import check_compatible, lake_schema, write_parquet_atomic
from ingest.ledger import LIVE_STATES, FileRecord, Ledger
from ingest.normalize import normalize_file

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


@dataclass(frozen=True)
class OwnedElsewhere:
    """The lake file for this content already belongs to another live drop."""

    owner: int


def lake_file(config: IngestConfig, record: FileRecord) -> Path:
    """Name a drop's lake file by its content, so equal content lands on one file."""
    return config.lake(record.kind) / f"{record.sha256}.parquet"


def write_lake_file(
    config: IngestConfig, ledger: Ledger, record: FileRecord, claimed: Path
) -> Normalized | OwnedElsewhere:
    """Turn the claimed file into its lake file, or say the lake already has it.

    Raises the reader's and the normalizer's IngestErrors, and NoRowsError for a file with a
    header and no rows (its empty lake file is removed first).
    """
    raw = readers.open_table(claimed, config.read)
    try:
        table = normalize_file(raw, record.id)
        dest = lake_file(config, record)
        with lake_lock(config, record.kind):
            owner = _clear_leftover(ledger, dest, record.id)
            if owner is not None:
                return OwnedElsewhere(owner)
            if record.kind == "train":
                _check_train_types(config, table.schema)
            rows = write_parquet_atomic(table.batches, table.schema, dest)
    finally:
        close = getattr(raw, "close", None)
        if callable(close):
            close()
    if rows == 0:
        dest.unlink(missing_ok=True)
        raise NoRowsError(f"{record.original_name} has no data rows")
    return Normalized(
        rows=rows,
        columns=len(table.column_map),
        format=raw.format.value,
        encoding=raw.encoding,
        delimiter=raw.delimiter,
        column_map=dict(table.column_map),
        lake_path=dest,
    )


def _check_train_types(config: IngestConfig, schema: pa.Schema) -> None:
    """Refuse a training file whose column types clash with the training lake."""
    conflicts = check_compatible(lake_schema(config.lake("train")), schema)
    if conflicts:
        first = conflicts[0]
        raise TypeConflictError(
            "; ".join(c.message for c in conflicts),
            column=getattr(first, "column", None),
            expected=str(getattr(first, "lake_type", "")) or None,
        )


def _clear_leftover(ledger: Ledger, dest: Path, file_id: int) -> int | None:
    """Make room for the lake write: remove our own or an orphaned earlier attempt.

    Returns the owning drop's id when a live drop already holds this content.
    """
    if not dest.exists():
        return None
    owner = lake_owner(dest)
    if owner is not None and owner != file_id:
        other = ledger.get(owner)
        if other is not None and other.state in LIVE_STATES:
            return owner
    log.info("replacing leftover lake file", extra={"file_id": file_id, "lake_path": str(dest)})
    dest.unlink(missing_ok=True)
    return None


def discard_own_lake_file(config: IngestConfig, record: FileRecord) -> None:
    """Remove a lake file this drop wrote, so a rejected drop adds nothing to the lake."""
    if record.sha256 is None:
        return
    dest = lake_file(config, record)
    with lake_lock(config, record.kind):
        if dest.exists() and lake_owner(dest) == record.id:
            dest.unlink(missing_ok=True)


def lake_owner(path: Path) -> int | None:
    """Return the ``_file_id`` a lake file was written for, or None if it cannot be read."""
    try:
        table = pq.ParquetFile(path).read_row_group(0, columns=["_file_id"])
        values = table.column("_file_id")
        return int(values[0].as_py()) if len(values) else None
    except Exception:
        return None
