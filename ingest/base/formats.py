"""Which files to take and what they are: the format table, unfinished-name rules, detection.

``FORMATS`` is the one description of every format: suffixes, content types, reader, writer,
whether it can be an output and which output answers it. The API, the bulk scorer and the CLI
all read it, so adding a format is adding one entry.

The extension says what a producer meant; the first bytes say what the file is. Both must agree,
so a workbook renamed to ``.csv`` is rejected with a message instead of being parsed as garbage.
"""

from __future__ import annotations

import enum
import fnmatch
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, cast

from ingest.base.errors import FormatMismatchError, UnsupportedFormatError

if TYPE_CHECKING:
    import pyarrow as pa

    from ingest.base.config import ReadOptions
    from ingest.readers.common import RawTable


class Format(enum.Enum):
    """A readable file format, named for what the reader does with it."""

    CSV = "csv"
    TSV = "tsv"
    EXCEL = "excel"  # .xlsx / .xlsm (zip-based workbooks)
    XLS = "xls"  # legacy OLE2 workbooks
    JSON = "json"
    JSONL = "jsonl"
    PARQUET = "parquet"


Reader = Callable[[Path, "ReadOptions", Format], "RawTable"]
Writer = Callable[[Iterator["pa.RecordBatch"], Path], bool]


@dataclass(frozen=True)
class FormatSpec:
    """Everything dropscore knows about one format; adding a format is adding one of these.

    ``suffixes`` and ``content_types`` are lower case, the first of each being the one we write
    and send. ``reader`` and ``writer`` name functions as ``"module:function"`` (so naming a
    format loads no parser: the CLI starts fast, and the readers may import this module).
    ``output`` says whether scored results may be written in it; ``answer`` is the output
    format for results scored from it. ``magic`` is what the file's first bytes must be (None
    for text) and ``magic_words`` says that in a message. ``row_per_line`` lets a progress bar
    guess the row count from the line length.
    """

    format: Format
    suffixes: tuple[str, ...]
    content_types: tuple[str, ...]
    reader: str
    answer: Format
    writer: str | None = None
    output: bool = False
    gzip: bool = False
    magic: bytes | None = None
    magic_words: str = "text"
    row_per_line: bool = False

    def read_function(self) -> Reader:
        """Load the reader this entry names, when a file of this format is to be read."""
        return cast(Reader, _load(self.reader))

    def write_function(self) -> Writer:
        """Load the writer this entry names; only output formats have one."""
        if self.writer is None:
            raise LookupError(f"{self.format.value} is not an output format")
        return cast(Writer, _load(self.writer))


def _load(ref: str) -> object:
    """Resolve a ``"module:function"`` reference (modules are cached by the import system)."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0"
PARQUET_MAGIC = b"PAR1"
GZIP_MAGIC = b"\x1f\x8b"

# Order matters only for messages: it is the order ACCEPTED and OUTPUT_FORMATS list them in.
FORMATS: tuple[FormatSpec, ...] = (
    FormatSpec(
        Format.CSV,
        suffixes=(".csv", ".txt"),
        content_types=("text/csv", "application/csv", "text/plain"),
        reader="ingest.readers.delimited:read_csv",
        answer=Format.CSV,
        writer="ingest.base.writers:write_csv",
        output=True,
        gzip=True,
        row_per_line=True,
    ),
    FormatSpec(
        Format.TSV,
        suffixes=(".tsv",),
        content_types=("text/tab-separated-values",),
        reader="ingest.readers.delimited:read_tsv",
        answer=Format.CSV,
        gzip=True,
        row_per_line=True,
    ),
    FormatSpec(
        Format.EXCEL,
        suffixes=(".xlsx", ".xlsm"),
        content_types=(
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "application/vnd.ms-excel.sheet.macroenabled.12",
        ),
        reader="ingest.readers.workbooks:read_xlsx",
        answer=Format.CSV,
        magic=ZIP_MAGIC,
        magic_words="a ZIP-based workbook",
    ),
    FormatSpec(
        Format.XLS,
        suffixes=(".xls",),
        content_types=("application/vnd.ms-excel",),
        reader="ingest.readers.workbooks:read_workbook",
        answer=Format.CSV,
        magic=OLE_MAGIC,
        magic_words="a legacy (OLE2) .xls workbook",
    ),
    FormatSpec(
        Format.JSON,
        suffixes=(".json",),
        content_types=("application/json",),
        reader="ingest.readers.json_records:read_json",
        answer=Format.JSON,
        writer="ingest.base.writers:write_json",
        output=True,
    ),
    FormatSpec(
        Format.JSONL,
        suffixes=(".jsonl", ".ndjson"),
        content_types=("application/x-ndjson", "application/jsonl", "application/x-jsonlines"),
        reader="ingest.readers.json_records:read_jsonl",
        answer=Format.JSONL,
        writer="ingest.base.writers:write_jsonl",
        output=True,
        gzip=True,
        row_per_line=True,
    ),
    FormatSpec(
        Format.PARQUET,
        suffixes=(".parquet",),
        content_types=(
            "application/vnd.apache.parquet",
            "application/x-parquet",
            "application/parquet",
        ),
        reader="ingest.readers.parquet:read_parquet",
        answer=Format.PARQUET,
        writer="ingest.base.writers:write_parquet",
        output=True,
        magic=PARQUET_MAGIC,
        magic_words="a Parquet file",
    ),
)
_BY_FORMAT = {spec.format: spec for spec in FORMATS}
_BY_SUFFIX = {suffix: spec for spec in FORMATS for suffix in spec.suffixes}
_BY_CONTENT_TYPE = {ct: spec for spec in FORMATS for ct in spec.content_types}
# Formats a program writes: a drop in one of them is answered in its own format (see drops).
JSON_FORMATS = frozenset({Format.JSON, Format.JSONL})
# Output format names as users type them (``--format``, ``?format=``): the Format values.
OUTPUT_FORMATS = tuple(spec.format.value for spec in FORMATS if spec.output)


def _accepted() -> str:
    """List every accepted suffix for messages, marking each run that may also be gzipped."""
    parts: list[str] = []
    run: list[str] = []
    for i, spec in enumerate(FORMATS):
        run.extend(spec.suffixes)
        following = FORMATS[i + 1] if i + 1 < len(FORMATS) else None
        if following is None or following.gzip != spec.gzip:
            parts.append(", ".join(run) + (" (optionally .gz)" if spec.gzip else ""))
            run = []
    return ", ".join(parts)


ACCEPTED = _accepted()


def spec_for(fmt: Format) -> FormatSpec:
    """Return the table entry of a format, for its reader, writer and names."""
    return _BY_FORMAT[fmt]


def output_spec(name: str) -> FormatSpec:
    """Return the entry of an output format named as a user would (one of OUTPUT_FORMATS)."""
    return _BY_FORMAT[Format(name)]


def format_for_content_type(content_type: str) -> Format | None:
    """Map a request's content type to the format it announces, or None when unknown."""
    spec = _BY_CONTENT_TYPE.get(content_type.lower())
    return spec.format if spec is not None else None


def file_suffix(fmt: Format, gzipped: bool = False) -> str:
    """Return the suffix a file of this format is written under by us."""
    return spec_for(fmt).suffixes[0] + (".gz" if gzipped else "")


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
    spec = _BY_SUFFIX.get(suffix)
    shown = suffix + (".gz" if gzipped else "") if suffix else ""
    if spec is None or (gzipped and not spec.gzip):
        what = f"the extension {shown}" if shown else "no extension"
        raise UnsupportedFormatError(
            f"{base} has {what}, which dropscore does not read; save it as one of: {ACCEPTED}",
            expected=ACCEPTED,
        )
    return spec.format, gzipped


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
    spec = spec_for(fmt)
    return spec.magic, spec.magic_words


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
