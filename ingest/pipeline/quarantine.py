"""Quarantine records: ``quarantine/<id>__<name>.error.json`` beside each rejected original.

The record says what is wrong with the file (the ledger's error: code, message, row, column,
expected) and what its owner should do about it. It is written whole or not at all
(``ingest.base.atomic``) after the ledger commits the rejection, and rewritten from the
ledger row by ``Intake.resume`` when a crash cut it short. The intake's own rejection wording
(a file over the size cap, a symbolic link) lives here too, and so does the refusal of a link:
the link itself is moved, never followed.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from ingest.base import atomic
from ingest.base.config import IngestConfig
from ingest.base.errors import FileTooLargeError, IngestError
from ingest.base.names import filed
from ingest.state.file_ledger import FileLedger
from ingest.state.ledger import FileRecord

ERROR_SUFFIX = ".error.json"

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
    "symlink": "Copy or move the file itself into the inbox; a link is never followed.",
    "internal": "dropscore failed on this file in a way it did not expect. Report it with this "
    "record and the file; dropping it again will fail the same way until that is fixed.",
}
DEFAULT_HINT = "Fix what the message describes and drop the file into the inbox again."


def what_to_do(error: dict[str, Any] | None) -> str:
    """Say what a person should do about a refused drop, from its error's code."""
    return HINTS.get(str((error or {}).get("code")), DEFAULT_HINT)


def filed_name(record: FileRecord) -> str:
    """Name an original in archive/ or quarantine/, so two drops of one name never collide."""
    return filed(record.id, record.original_name)


def too_large(name: str, size: int, limit_mb: float) -> FileTooLargeError:
    """Describe a file over the size cap in words a person can act on."""
    return FileTooLargeError(
        f"{name} is {_human_size(size)}, over the {limit_mb:g} MB limit",
        expected=f"at most {limit_mb:g} MB ([ingest] max_file_mb)",
    )


class SymlinkRefusedError(IngestError):
    """A symbolic link dropped into an inbox: what it points at is never read."""

    code = "symlink"


def refuse_link(config: IngestConfig, ledger: FileLedger, link: Path, kind: str) -> FileRecord:
    """Record a symbolic link as quarantined and move the link itself (not its target) aside.

    Nothing is read through the link: a link could make us ingest a file its producer could not
    have copied into the inbox. The row is committed first, then the link is renamed to where
    the row says, then its error record is written.
    """
    record = ledger.receive(
        original_name=link.name,
        kind=kind,
        size_bytes=None,
        sha256=None,
        processing_path=None,
        rejected=SymlinkRefusedError(
            "symbolic links are not taken: copy or move the file itself into the inbox"
        ).to_dict(),
    )
    dest = config.quarantine / filed_name(record)
    with contextlib.suppress(FileNotFoundError):  # removed meanwhile: the row still says why
        os.rename(link, dest)  # rename moves the link, never the file it points at
    write_error_record(config.quarantine, record)
    return record


def _human_size(size: int) -> str:
    """Say a size the way a person reads it."""
    if size >= 1024 * 1024:
        return f"{size / 1024 / 1024:.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size} bytes"


def error_record(record: FileRecord) -> dict[str, Any]:
    """Build the error record's body from the ledger row: the error plus what to do about it."""
    error = dict(record.error or {})
    return {
        **error,
        "file": record.original_name,
        "file_id": record.id,
        "kind": record.kind,
        "size_bytes": record.size_bytes,
        "sha256": record.sha256,
        "quarantined_at": record.finished_at,
        "what_to_do": what_to_do(error),
    }


def write_error_record(folder: Path, record: FileRecord) -> Path:
    """Write ``<id>__<name>.error.json`` into the quarantine folder, atomically."""
    path = folder / f"{filed_name(record)}{ERROR_SUFFIX}"
    atomic.write_json(path, error_record(record), default=str)
    return path


def remove_stale_temporaries(folder: Path, older_than: float) -> None:
    """Delete error-record temporaries a crash left; a younger one may still be being written.

    The record itself is rewritten from the ledger row (``Intake.resume``).
    """
    atomic.remove_temporaries(folder, older_than=older_than)
