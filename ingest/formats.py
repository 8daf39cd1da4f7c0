"""Which files to take and what they are: unfinished-name rules and format detection.

The extension says what a producer meant; the first bytes say what the file is. Both must agree,
so a workbook renamed to ``.csv`` is rejected with a message instead of being parsed as garbage.
"""

from __future__ import annotations

import enum
import fnmatch
from pathlib import PurePath

from ingest.errors import FormatMismatchError, UnsupportedFormatError


class Format(enum.Enum):
    """A readable file format, named for what the reader does with it."""

    CSV = "csv"
    TSV = "tsv"
    EXCEL = "excel"  # .xlsx / .xlsm (zip-based workbooks)
    XLS = "xls"  # legacy OLE2 workbooks
    JSON = "json"
    JSONL = "jsonl"
    PARQUET = "parquet"


# Suffix (lower case, without ".gz") → format. ``.txt`` is read as delimited text.
_EXTENSIONS: dict[str, Format] = {
    ".csv": Format.CSV,
    ".txt": Format.CSV,
    ".tsv": Format.TSV,
    ".xlsx": Format.EXCEL,
    ".xlsm": Format.EXCEL,
    ".xls": Format.XLS,
    ".json": Format.JSON,
    ".jsonl": Format.JSONL,
    ".ndjson": Format.JSONL,
    ".parquet": Format.PARQUET,
}
_GZIP_OK = frozenset({".csv", ".txt", ".tsv", ".jsonl", ".ndjson"})
ACCEPTED = (
    ".csv, .tsv, .txt (optionally .gz), .xlsx, .xlsm, .xls, .json, .jsonl, .ndjson "
    "(optionally .gz), .parquet"
)

_UNFINISHED_PATTERNS = (
    "~$*",
    ".~lock.*#",
    "*.tmp",
    "*.part",
    "*.partial",
    "*.crdownload",
    "*.swp",
)
_SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini"})

ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0"
PARQUET_MAGIC = b"PAR1"
GZIP_MAGIC = b"\x1f\x8b"

# Binary signatures worth naming in a message, checked in order.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (ZIP_MAGIC, "a ZIP archive (an .xlsx workbook or another zip file)"),
    (b"PK\x05\x06", "an empty ZIP archive"),
    (OLE_MAGIC, "a legacy Office (OLE2) document such as an .xls workbook"),
    (PARQUET_MAGIC, "a Parquet file"),
    (GZIP_MAGIC, "gzip-compressed data"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"SQLite format 3", "an SQLite database"),
)
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def is_unfinished_name(name: str) -> bool:
    """Tell whether a name marks a file still being written or not meant for us."""
    base = PurePath(name).name
    lower = base.lower()
    if not base or base.startswith(".") or lower in _SYSTEM_FILES:
        return True
    return any(fnmatch.fnmatchcase(lower, pattern) for pattern in _UNFINISHED_PATTERNS)


def split_extension(name: str) -> tuple[str, bool]:
    """Return the format-bearing suffix and whether a ``.gz`` wraps it, so both can be checked."""
    suffixes = [s.lower() for s in PurePath(name).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        return (suffixes[-2] if len(suffixes) > 1 else ""), True
    return (suffixes[-1] if suffixes else ""), False


def format_for_name(name: str) -> tuple[Format, bool]:
    """Map a file name to its format and gzip flag, rejecting what dropscore cannot read."""
    base = PurePath(name).name
    suffix, gzipped = split_extension(base)
    fmt = _EXTENSIONS.get(suffix)
    shown = suffix + (".gz" if gzipped else "") if suffix else ""
    if fmt is None or (gzipped and suffix not in _GZIP_OK):
        what = f"the extension {shown}" if shown else "no extension"
        raise UnsupportedFormatError(
            f"{base} has {what}, which dropscore does not read; "
            f"save it as one of: {ACCEPTED}",
            expected=ACCEPTED,
        )
    return fmt, gzipped


def describe_content(head: bytes) -> str:
    """Name what the first bytes look like, in words for an error message."""
    for magic, words in _SIGNATURES:
        if head.startswith(magic):
            return words
    if looks_binary(head):
        return "binary data"
    return "text"


def looks_binary(head: bytes) -> bool:
    """Tell binary from text: NUL bytes or many control characters never occur in a CSV/JSON."""
    if head.startswith(_UTF16_BOMS):
        return False
    if b"\x00" in head:
        return True
    sample = head[:8192]
    controls = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13, 27))
    return bool(sample) and controls / len(sample) > 0.05


def _expected_magic(fmt: Format, gzipped: bool) -> tuple[bytes | None, str]:
    """Return the magic bytes and the words for what a file of this format must start with."""
    if gzipped:
        return GZIP_MAGIC, "gzip-compressed data"
    if fmt is Format.EXCEL:
        return ZIP_MAGIC, "a ZIP-based workbook"
    if fmt is Format.XLS:
        return OLE_MAGIC, "a legacy (OLE2) .xls workbook"
    if fmt is Format.PARQUET:
        return PARQUET_MAGIC, "a Parquet file"
    return None, "text"


def _rename_hint(head: bytes) -> str:
    """Suggest the extension that matches the content, when there is an obvious one."""
    if head.startswith(ZIP_MAGIC):
        return "; if it is an Excel workbook, rename it to .xlsx"
    if head.startswith(OLE_MAGIC):
        return "; if it is an Excel workbook, rename it to .xls"
    if head.startswith(PARQUET_MAGIC):
        return "; rename it to .parquet"
    if head.startswith(GZIP_MAGIC):
        return "; if it is a compressed CSV, rename it to .csv.gz"
    return ""


def detect_format(name: str, head: bytes) -> Format:
    """Return the file's format from its name, after checking the first bytes agree with it."""
    fmt, gzipped = format_for_name(name)
    if not head:
        return fmt  # an empty file is the reader's to report, with its own message
    magic, expected = _expected_magic(fmt, gzipped)
    ok = head.startswith(magic) if magic is not None else describe_content(head) == "text"
    if not ok:
        base = PurePath(name).name
        suffix, _ = split_extension(base)
        shown = suffix + (".gz" if gzipped else "")
        raise FormatMismatchError(
            f"{base} is named {shown} but its content is {describe_content(head)}, "
            f"not {expected}{_rename_hint(head)}",
            expected=expected,
        )
    return fmt
