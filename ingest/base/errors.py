"""Typed ingest errors: each says what is wrong, where, and what was expected.

Only the intake turns them into quarantine records (``to_dict`` is the ``.error.json`` body), so
readers stay pure and their messages can be asserted exactly in tests.
"""

from __future__ import annotations

import errno
from typing import Any

# Our own write failed for want of room: the disk (or quota, or file size limit) is full. Not
# the file's fault: a drop waits and is taken again, an upload is answered 507.
DISK_FULL = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


def disk_full(exc: BaseException) -> bool:
    """Tell whether a failure is the service's own write running out of room, not the file's."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in DISK_FULL:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class IngestError(Exception):
    """A file that cannot become a lake file as it is. Permanent unless ``transient``."""

    code = "unreadable"
    transient = False

    def __init__(
        self,
        message: str,
        *,
        row: int | None = None,
        column: str | None = None,
        expected: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.row = row
        self.column = column
        self.expected = expected

    def to_dict(self) -> dict[str, Any]:
        """Return the quarantine record body: a person reads this to fix the file."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        for key in ("row", "column", "expected"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


class EmptyFileError(IngestError):
    """The file has no bytes at all."""

    code = "empty_file"


class NoRowsError(IngestError):
    """The file has a header, or nothing readable, but no data rows."""

    code = "no_rows"


class UnsupportedFormatError(IngestError):
    """Neither the name nor the bytes match a format dropscore reads."""

    code = "unsupported_format"


class FormatMismatchError(IngestError):
    """The content is not what the extension says (a PDF named .csv, say)."""

    code = "format_mismatch"


class MalformedFileError(IngestError):
    """Syntax errors: broken JSON, a truncated workbook, an undecodable text."""

    code = "malformed"


class RaggedRowsError(IngestError):
    """A record has a different number of fields than the header."""

    code = "ragged_rows"


class TooManyColumnsError(IngestError):
    """The file has more columns than ingest accepts."""

    code = "too_many_columns"


class FileTooLargeError(IngestError):
    """The file is bigger than ``[ingest] max_file_mb``."""

    code = "file_too_large"


class ZipBombError(IngestError):
    """A workbook whose archive would expand far beyond its size on disk."""

    code = "zip_bomb"


class TypeConflictError(IngestError):
    """A column whose type cannot be reconciled with the same column in earlier files."""

    code = "type_conflict"


class TransientIngestError(IngestError):
    """Worth retrying: the file vanished, is locked, or permission was denied for now."""

    code = "transient"
    transient = True


class SheetNotFoundError(IngestError):
    """The configured ``excel_sheet`` names no sheet of the workbook."""

    code = "sheet_not_found"


class InternalIngestError(IngestError):
    """An unexpected failure while reading one file: that file fails, never the intake."""

    code = "internal"


class RetriesExhaustedError(IngestError):
    """A transient failure that outlasted ``max_attempts``, or a file that crashed us repeatedly."""

    code = "retries_exhausted"
