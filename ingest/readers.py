"""Readers: one dropped file in, a RawTable of Arrow record batches with original names out.

Pure apart from reading the file: no logging of content, no writes, and every failure is a typed
``IngestError`` whose message a person can act on (the intake turns it into a quarantine
record). Memory is bounded by ``ReadOptions.batch_rows`` for CSV/TSV (pyarrow's streaming
reader), JSON Lines (line by line) and Parquet (row groups); workbooks and ``.json`` documents
are parsed whole, which the intake bounds by checking ``max_file_mb`` before calling us (and,
for zip-based workbooks, ``check_zip`` bounds the *uncompressed* size before anything is
inflated).

Values are left as the file gives them (pyarrow's inferred types for CSV, Python's for JSON and
workbooks); ``ingest.normalize`` decides the lake types.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import io
import json
import logging
import re
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ingest.config import ReadOptions
from ingest.errors import (
    EmptyFileError,
    IngestError,
    MalformedFileError,
    NoRowsError,
    RaggedRowsError,
    SheetNotFoundError,
    TooManyColumnsError,
    ZipBombError,
)
from ingest.formats import Format, detect_format, split_extension

log = logging.getLogger("dropscore.ingest")

HEAD_BYTES = 8192
SAMPLE_BYTES = 1 << 20  # decoded text looked at to pick encoding, delimiter and decimal mark
DELIMITERS = (",", ";", "\t", "|")
SNIFF_LINES = 50
# Zip-based workbooks: refuse before inflating anything beyond these.
ZIP_MAX_MEMBERS = 10_000
ZIP_MAX_TOTAL_BYTES = 1 << 30  # 1 GiB uncompressed
ZIP_MAX_RATIO = 500  # per member, for members above ZIP_RATIO_FLOOR
ZIP_RATIO_FLOOR = 10 << 20
_NOT_OURS = (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError)


@dataclass
class RawTable:
    """A file as read: its format, how its text was decoded, original names, and batches.

    ``batches`` is a one-shot iterator of RecordBatches with the original column names (in
    ``columns``' order) and at most ``batch_rows`` rows each; errors found while iterating are
    IngestErrors too. ``decimal`` is the decimal mark numbers written as text use ("." or ",").
    """

    format: Format
    encoding: str | None
    delimiter: str | None
    columns: list[str]
    batches: Iterator[pa.RecordBatch]
    decimal: str = "."


# ---------------------------------------------------------------------------------------------
# Entry point


def open_table(path: Path, options: ReadOptions) -> RawTable:
    """Open a dropped file for streaming, raising a typed IngestError for anything unreadable."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(HEAD_BYTES)
        fmt = detect_format(path.name, head)
        if not head:
            raise EmptyFileError(
                "the file is empty (0 bytes); export it again with a header row and data",
                expected="a header row and at least one data row",
            )
        reader = _READERS[fmt]
        raw = reader(path, options)
    except IngestError:
        raise
    except OSError:
        raise  # vanished, locked, permission: the intake decides whether to retry
    except BaseException as exc:  # any other failure is a file we could not make sense of
        if isinstance(exc, _NOT_OURS):
            raise
        raise _unexpected(exc) from exc
    _check_width(raw.columns, options)
    raw.batches = _guarded(_rebatch(raw.batches, options.batch_rows))
    return raw


def _unexpected(exc: BaseException) -> MalformedFileError:
    """Wrap an unforeseen parser failure so one odd file never escapes as a crash."""
    log.warning("unexpected reader failure", exc_info=exc)
    detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return MalformedFileError(
        f"the file could not be read ({detail}); check that it is a complete, valid file "
        "of the type its name says"
    )


def _guarded(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Translate failures raised while iterating into IngestErrors, like at open time."""
    try:
        yield from batches
    except (IngestError, OSError):
        raise
    except BaseException as exc:
        if isinstance(exc, _NOT_OURS):
            raise
        raise _unexpected(exc) from exc


def _check_width(columns: list[str], options: ReadOptions) -> None:
    """Refuse files wider than configured, before any row is converted."""
    if len(columns) > options.max_columns:
        raise TooManyColumnsError(
            f"the file has {len(columns)} columns, more than the {options.max_columns} allowed; "
            "remove unused columns or split the file",
            expected=f"at most {options.max_columns} columns",
        )
    if not columns:
        raise NoRowsError(
            "the file has no columns; the first row must be a header naming each column",
            expected="a header row",
        )


def _rebatch(batches: Iterable[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    """Cut batches down to at most ``size`` rows, so consumers' memory follows batch_rows."""
    for batch in batches:
        for start in range(0, batch.num_rows, size):
            yield batch.slice(start, size)


def _no_rows(what: str = "a header but no data rows") -> NoRowsError:
    return NoRowsError(
        f"the file has {what}; add at least one row below the header"
        if what.startswith("a header")
        else f"the file has {what}; add at least one record",
        expected="at least one data row",
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# ---------------------------------------------------------------------------------------------
# Delimited text


def _open_bytes(path: Path) -> io.BufferedIOBase:
    """Open the file's bytes, decompressing gzip transparently."""
    _, gzipped = split_extension(path.name)
    if gzipped:
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def _read_sample(path: Path) -> tuple[bytes, bool]:
    """Return the first decompressed bytes and whether they are the whole file."""
    try:
        with _open_bytes(path) as fh:
            sample = fh.read(SAMPLE_BYTES)
            complete = not fh.read(1)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise MalformedFileError(
            f"the gzip data is damaged or truncated ({exc}); compress the file again"
        ) from exc
    return sample, complete


def _trim_partial(sample: bytes, complete: bool) -> bytes:
    """Cut a sample at its last line end, so a half line never misleads the sniffers."""
    if complete:
        return sample
    cut = max(sample.rfind(b"\n"), sample.rfind(b"\r"))
    return sample[: cut + 1] if cut > 0 else sample


def choose_encoding(sample: bytes, fallbacks: Iterable[str]) -> tuple[str, str]:
    """Return (codec for decoding, name to record) for text: UTF-8 first, then fallbacks."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", "utf-16"
    for name in ("utf-8", *fallbacks):
        try:
            sample.decode(name)
        except (UnicodeDecodeError, LookupError):
            continue
        return name, name
    raise MalformedFileError(
        "the text is not UTF-8 and not in any configured fallback encoding "
        f"({', '.join(fallbacks) or 'none'}); save the file as UTF-8",
        expected="UTF-8 text",
    )


def _sample_rows(text: str, delimiter: str, limit: int = SNIFF_LINES) -> list[list[str]]:
    """Parse the first rows of a sample with one delimiter; blank lines are not rows."""
    rows: list[list[str]] = []
    with contextlib.suppress(csv.Error):
        for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
            if row:
                rows.append(row)
            if len(rows) >= limit:
                break
    return rows


def sniff_delimiter(text: str, preferred: str = ",") -> str:
    """Pick the delimiter giving the same field count (> 1) on every sampled row.

    Ties go to the most fields, then to ``preferred`` (tab for .tsv), then to the order of
    ``DELIMITERS``. A single-column file gets ``preferred``.
    """
    order = sorted(DELIMITERS, key=lambda d: d != preferred)
    best: tuple[int, int, int, str] | None = None  # (consistent, fields, -rank, delimiter)
    for rank, delimiter in enumerate(order):
        rows = _sample_rows(text, delimiter)
        if not rows or len(rows[0]) < 2:
            continue
        score = (int(len({len(r) for r in rows}) == 1), len(rows[0]), -rank, delimiter)
        if best is None or score[:3] > best[:3]:
            best = score
    return best[3] if best else preferred


_COMMA_DECIMAL = re.compile(r"^[+-]?(\d{1,3}(\.\d{3})+|\d+),\d+$")
_DOT_DECIMAL = re.compile(r"^[+-]?\d*\.\d+$")
_DOT_GROUPS = re.compile(r"^[+-]?\d{1,3}(\.\d{3}){2,}$")  # 1.234.567: dots can only group


def sniff_decimal(text: str, delimiter: str) -> str:
    """Tell whether numbers in this file use a decimal comma (only possible without ',')."""
    if delimiter == ",":
        return "."
    comma = dot = 0
    for row in _sample_rows(text, delimiter, limit=500)[1:]:
        for value in row:
            value = value.strip()
            if _COMMA_DECIMAL.match(value) or _DOT_GROUPS.match(value):
                comma += 1
            elif _DOT_DECIMAL.match(value):
                dot += 1
    return "," if comma > dot else "."


def _has_multiline_values(text: str, delimiter: str) -> bool:
    """Tell whether quoted values span lines, which needs pyarrow's slower parsing mode."""
    if '"' not in text:
        return False
    rows = _sample_rows(text, delimiter, limit=10_000)
    return any("\n" in v or "\r" in v for row in rows for v in row)


@dataclass(frozen=True)
class _CsvPlan:
    """Everything sniffed about a delimited file, so re-reads parse it identically."""

    path: Path
    encoding: str
    delimiter: str
    decimal: str
    multiline: bool
    block_size: int


CSV_BLOCK_BYTES = 1 << 20


def _coalesce(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Merge small consecutive batches of one schema into batches of about ``rows`` rows."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        if pending and (batch.schema != pending[0].schema or count + batch.num_rows > rows):
            yield _concat(pending)
            pending, count = [], 0
        pending.append(batch)
        count += batch.num_rows
    if pending:
        yield _concat(pending)


def _concat(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def _plan_csv(path: Path, fmt: Format, options: ReadOptions) -> tuple[_CsvPlan, str]:
    """Sniff encoding, delimiter, decimal mark and block size from the start of the file."""
    sample, complete = _read_sample(path)
    if not sample.strip(b" \t\r\n\x00\xef\xbb\xbf"):
        raise EmptyFileError(
            "the file holds no text (only blank lines); export it again with a header row",
            expected="a header row and at least one data row",
        )
    trimmed = _trim_partial(sample, complete)
    codec, name = choose_encoding(trimmed, options.csv_encodings)
    text = trimmed.decode(codec, errors="replace")
    delimiter = sniff_delimiter(text, "\t" if fmt is Format.TSV else ",")
    lines = max(1, text.count("\n"))
    per_row = max(16, len(trimmed) // lines)
    # Arrow's streaming reader queues up to 32 blocks ahead of its consumer, so the block size,
    # not batch_rows, sets the reader's memory: 1 MiB blocks keep that near 32 MiB (21 MiB
    # blocks measured 670 MB). Batches are merged back up to batch_rows by _coalesce.
    block = min(max(per_row * options.batch_rows, 1 << 16), CSV_BLOCK_BYTES)
    plan = _CsvPlan(
        path, codec, delimiter, sniff_decimal(text, delimiter),
        _has_multiline_values(text, delimiter), block,
    )
    return plan, name


_COLUMN_IN_ERROR = re.compile(r"In CSV column #(\d+)")
_RAGGED_IN_ERROR = re.compile(r"Expected \d+ columns, got \d+")


def _open_arrow_csv(plan: _CsvPlan, types: dict[str, pa.DataType]) -> pacsv.CSVStreamingReader:
    """Start pyarrow's streaming CSV reader with the sniffed settings and pinned types."""
    _, gzipped = split_extension(plan.path.name)
    source = pa.input_stream(str(plan.path), compression="gzip" if gzipped else None)
    encoding = "utf8" if plan.encoding in ("utf-8", "utf-8-sig") else plan.encoding
    return pacsv.open_csv(
        source,
        read_options=pacsv.ReadOptions(block_size=plan.block_size, encoding=encoding),
        parse_options=pacsv.ParseOptions(
            delimiter=plan.delimiter, newlines_in_values=plan.multiline
        ),
        convert_options=pacsv.ConvertOptions(
            column_types=types,
            strings_can_be_null=True,
            decimal_point=plan.decimal,
        ),
    )


def find_ragged_row(plan: _CsvPlan) -> RaggedRowsError | None:
    """Find the first record whose field count differs from the header's, by re-reading it."""
    with _open_bytes(plan.path) as raw:
        text = io.TextIOWrapper(raw, encoding=plan.encoding, errors="replace", newline="")
        records = (r for r in csv.reader(text, delimiter=plan.delimiter) if r)
        header = next(records, None)
        if header is None:
            return None
        for number, record in enumerate(records, start=1):
            if len(record) != len(header):
                return RaggedRowsError(
                    f"row {number} has {_plural(len(record), 'field')} but the header has "
                    f"{len(header)}; "
                    f"give every row {len(header)} fields (quote values that contain "
                    f"{_shown(plan.delimiter)})",
                    row=number,
                    expected=f"{len(header)} fields",
                )
    return None


def _shown(delimiter: str) -> str:
    return {"\t": "a tab", ",": "a comma", ";": "a semicolon", "|": "a pipe"}[delimiter]


def _csv_failure(exc: pa.ArrowInvalid, plan: _CsvPlan) -> IngestError:
    """Turn a pyarrow parse error into the IngestError a person can act on."""
    message = str(exc)
    if "Empty CSV file" in message:
        return _no_rows()
    if _RAGGED_IN_ERROR.search(message):
        found = find_ragged_row(plan)
        if found is not None:
            return found
    if "UTF8" in message or "UTF-8" in message:
        return MalformedFileError(
            "the text is not valid UTF-8 past its first megabyte; save the file as UTF-8",
            expected="UTF-8 text",
        )
    return MalformedFileError(f"the file is not valid delimited text ({message[:200]})")


def _start_csv(plan: _CsvPlan) -> pacsv.CSVStreamingReader:
    """Open the reader (which parses the first block), translating parse errors."""
    try:
        return _open_arrow_csv(plan, {})
    except pa.ArrowInvalid as exc:
        raise _csv_failure(exc, plan) from exc


def _stream_csv(
    plan: _CsvPlan, reader: pacsv.CSVStreamingReader
) -> Iterator[pa.RecordBatch]:
    """Yield batches; when a later block breaks a type inferred from the first, re-read as text.

    pyarrow infers each column's type from the first block only. When a later block does not
    fit (``1.5`` after whole numbers, text after an empty column), the file is read again from
    the start with that column pinned to string and every other column pinned to its type,
    skipping the rows already handed out. ``ingest.normalize`` then widens the column.
    """
    schema = reader.schema
    emitted = 0
    while True:
        try:
            for batch in reader:
                emitted += batch.num_rows
                yield batch
            return
        except pa.ArrowInvalid as exc:
            match = _COLUMN_IN_ERROR.search(str(exc))
            if match is None or "conversion error" not in str(exc):
                raise _csv_failure(exc, plan) from exc
            schema = _pin_as_text(schema, int(match.group(1)))
            reader = _resume(plan, schema, emitted)
            log.info("csv column re-read as text", extra={"file": plan.path.name})


def _pin_as_text(schema: pa.Schema, index: int) -> pa.Schema:
    """Return the schema with one column (and every all-empty column) read as text."""
    fields = []
    for i, f in enumerate(schema):
        as_text = i == index or pa.types.is_null(f.type)
        fields.append(f.with_type(pa.string()) if as_text else f)
    return pa.schema(fields)


class _Skipping:
    """A streaming reader that drops its first ``skip`` rows (already handed out)."""

    def __init__(self, reader: pacsv.CSVStreamingReader, skip: int) -> None:
        self.reader = reader
        self.skip = skip
        self.schema = reader.schema

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        for batch in self.reader:
            if self.skip >= batch.num_rows:
                self.skip -= batch.num_rows
                continue
            yield batch.slice(self.skip)
            self.skip = 0


def _resume(plan: _CsvPlan, schema: pa.Schema, emitted: int) -> Any:
    """Re-open the file with pinned types and skip what was already emitted."""
    types = {f.name: f.type for f in schema}
    try:
        reader = _open_arrow_csv(plan, types)
    except pa.ArrowInvalid as exc:
        raise _csv_failure(exc, plan) from exc
    return _Skipping(reader, emitted)


def _fix_header(names: list[str]) -> list[str]:
    """Strip a BOM pyarrow may leave on the first name, so it never reaches the lake."""
    return [n.lstrip("\ufeff") if i == 0 else n for i, n in enumerate(names)]


def read_delimited(path: Path, options: ReadOptions, fmt: Format = Format.CSV) -> RawTable:
    """Read CSV/TSV/TXT (optionally gzip) as a stream of batches."""
    plan, encoding = _plan_csv(path, fmt, options)
    reader = _start_csv(plan)
    columns = _fix_header(reader.schema.names)
    _check_width(columns, options)
    batches = _coalesce(_stream_csv(plan, reader), options.batch_rows)
    first = _first_batch(batches)
    return RawTable(
        fmt, encoding, plan.delimiter, columns,
        _renamed(_chain([first], batches), columns), plan.decimal,
    )


def _first_batch(batches: Iterator[pa.RecordBatch]) -> pa.RecordBatch:
    """Return the first non-empty batch, or raise NoRowsError for a header-only file."""
    for batch in batches:
        if batch.num_rows:
            return batch
    raise _no_rows()


def _chain(
    head: Iterable[pa.RecordBatch], rest: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    yield from head
    yield from rest


def _renamed(batches: Iterator[pa.RecordBatch], names: list[str]) -> Iterator[pa.RecordBatch]:
    """Give every batch the cleaned header names."""
    for batch in batches:
        yield batch.rename_columns(names) if batch.schema.names != names else batch


# ---------------------------------------------------------------------------------------------
# Python values → Arrow (JSON, workbooks)


def _as_array(values: list[Any]) -> pa.Array:
    """Build an Arrow array from Python values; mixed kinds fall back to their text."""
    try:
        return pa.array(values, from_pandas=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return pa.array([_text(v) for v in values], pa.string())


def _text(value: Any) -> str | None:
    """Render a value as the text a person would expect to see for it."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | int | float | list | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


def _batches_from_rows(
    rows: Iterable[list[Any]], width: int, size: int
) -> Iterator[pa.RecordBatch]:
    """Group row lists into RecordBatches of ``size`` rows with positional names."""
    names = [f"c{i}" for i in range(width)]
    chunk: list[list[Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield _rows_to_batch(chunk, names)
            chunk = []
    if chunk:
        yield _rows_to_batch(chunk, names)


def _rows_to_batch(chunk: list[list[Any]], names: list[str]) -> pa.RecordBatch:
    columns = [_as_array([row[i] for row in chunk]) for i in range(len(names))]
    return pa.RecordBatch.from_arrays(columns, names=names)


def flatten_record(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested objects to ``a.b`` keys; lists stay as values (rendered as JSON text)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten_record(value, f"{name}."))
        elif isinstance(value, list | dict):
            out[name] = _text(value) if value else None
        else:
            out[name] = value
    return out


def _records_to_rows(
    records: Iterable[dict[str, Any]], columns: list[str]
) -> Iterator[list[Any]]:
    for record in records:
        yield [record.get(c) for c in columns]


def _union_keys(records: Iterable[dict[str, Any]]) -> list[str]:
    """Collect column names in order of first appearance across all records."""
    seen: dict[str, None] = {}
    for record in records:
        for key in record:
            seen.setdefault(key, None)
    return list(seen)


# ---------------------------------------------------------------------------------------------
# JSON


def _decode_json_bytes(data: bytes, fallbacks: Iterable[str]) -> str:
    """Decode a JSON document: UTF-8 (BOM allowed), UTF-16/32 by BOM, then fallbacks."""
    try:
        return data.decode(json.detect_encoding(data))
    except UnicodeDecodeError:
        pass
    for name in fallbacks:
        try:
            return data.decode(name)
        except (UnicodeDecodeError, LookupError):
            continue
    raise MalformedFileError("the JSON is not valid UTF-8; save it as UTF-8", expected="UTF-8")


_JSON_SHAPES = (
    "an array of objects, {\"columns\": [...], \"data\": [[...]]}, or an object holding one "
    "array of objects"
)


def _json_shape_error(found: str) -> MalformedFileError:
    return MalformedFileError(
        f"the JSON is {found}, not a table; expected {_JSON_SHAPES}", expected=_JSON_SHAPES
    )


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _records_from_array(items: list[Any]) -> tuple[list[str], list[list[Any]]]:
    """Read an array of objects (or of arrays under a header array) as columns and rows."""
    if items and all(isinstance(i, list) for i in items):
        return _split_rows(items[0], items[1:], "the first array (the header)")
    records = []
    for number, item in enumerate(items, start=1):
        if item is None:
            item = {}
        if not isinstance(item, dict):
            raise MalformedFileError(
                f"record {number} of the JSON array is {_json_kind(item)}, not an object; "
                "every element must be an object of column: value",
                row=number,
                expected="an object",
            )
        records.append(flatten_record(item))
    columns = _union_keys(records)
    return columns, list(_records_to_rows(records, columns))


def _split_rows(
    header: Any, data: Any, where: str
) -> tuple[list[str], list[list[Any]]]:
    """Read the pandas "split" shape: a header list and rows of values."""
    if not isinstance(header, list) or not isinstance(data, list):
        raise _json_shape_error("an object with \"columns\" and \"data\" that are not arrays")
    columns = [c if isinstance(c, str) else _text(c) or "" for c in header]
    rows = []
    for number, row in enumerate(data, start=1):
        if not isinstance(row, list) or len(row) != len(columns):
            got = len(row) if isinstance(row, list) else 1
            raise RaggedRowsError(
                f"row {number} has {_plural(got, 'value')} but {where} names {len(columns)} "
                f"columns; "
                f"give every row {len(columns)} values",
                row=number,
                expected=f"{len(columns)} values",
            )
        rows.append([_text(v) if isinstance(v, list | dict) else v for v in row])
    return columns, rows


def _json_table(doc: Any) -> tuple[list[str], list[list[Any]]]:
    """Find the table in a parsed JSON document, whichever accepted shape it has."""
    if isinstance(doc, list):
        return _records_from_array(doc)
    if isinstance(doc, dict):
        if "columns" in doc and "data" in doc:
            return _split_rows(doc["columns"], doc["data"], '"columns"')
        arrays = [v for v in doc.values() if isinstance(v, list)]
        if len(doc) == 1 and len(arrays) == 1:
            return _records_from_array(arrays[0])
        raise _json_shape_error("an object without a single array of records")
    raise _json_shape_error(_json_kind(doc))


def read_json(path: Path, options: ReadOptions) -> RawTable:
    """Read a ``.json`` document whole (its size is capped by max_file_mb before we get here)."""
    text = _decode_json_bytes(path.read_bytes(), options.csv_encodings)
    if not text.strip():
        raise EmptyFileError("the file holds only blank space; it needs a JSON array of records")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedFileError(
            f"the JSON is not valid at line {exc.lineno}, column {exc.colno}: {exc.msg}; "
            "fix the syntax or export the file again",
            expected="valid JSON",
        ) from exc
    except RecursionError as exc:
        raise MalformedFileError("the JSON is nested too deeply to be a table") from exc
    columns, rows = _json_table(doc)
    if not rows:
        raise _no_rows("no records")
    batches = _batches_from_rows(rows, len(columns), options.batch_rows)
    return RawTable(Format.JSON, "utf-8", None, columns, _renamed(batches, columns))


# ---------------------------------------------------------------------------------------------
# JSON Lines


def _jsonl_records(path: Path, fallbacks: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """Yield each line's object, flattened; blank lines are skipped; errors name the line."""
    with _open_bytes(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            if line_no == 1:
                line = line.removeprefix(codecs.BOM_UTF8)
            if not line.strip():
                continue
            try:
                value = json.loads(_decode_line(line, fallbacks))
            except json.JSONDecodeError as exc:
                raise MalformedFileError(
                    f"line {line_no} is not valid JSON ({exc.msg} at column {exc.colno}); "
                    "each line must hold one complete JSON object",
                    row=line_no,
                    expected="one JSON object per line",
                ) from exc
            except RecursionError as exc:
                raise MalformedFileError(f"line {line_no} is nested too deeply") from exc
            if not isinstance(value, dict):
                raise MalformedFileError(
                    f"line {line_no} is {_json_kind(value)}, not a JSON object; "
                    "each line must hold one object of column: value",
                    row=line_no,
                    expected="a JSON object",
                )
            yield flatten_record(value)


def _decode_line(line: bytes, fallbacks: tuple[str, ...]) -> str:
    for name in ("utf-8", *fallbacks):
        try:
            return line.decode(name)
        except (UnicodeDecodeError, LookupError):
            continue
    return line.decode("latin-1")


def read_jsonl(path: Path, options: ReadOptions) -> RawTable:
    """Read JSON Lines in two streaming passes: names (and syntax) first, then values."""
    try:
        columns = _union_keys(_jsonl_records(path, options.csv_encodings))
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise MalformedFileError(
            f"the gzip data is damaged or truncated ({exc}); compress the file again"
        ) from exc
    if not columns:
        raise _no_rows("no records")

    def rows() -> Iterator[list[Any]]:
        yield from _records_to_rows(_jsonl_records(path, options.csv_encodings), columns)

    batches = _batches_from_rows(rows(), len(columns), options.batch_rows)
    return RawTable(Format.JSONL, "utf-8", None, columns, _renamed(batches, columns))


# ---------------------------------------------------------------------------------------------
# Workbooks


def check_zip(path: Path) -> None:
    """Refuse a zip whose members would inflate past safe limits, reading only its directory."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        raise MalformedFileError(
            f"the workbook is damaged or truncated ({exc}); save it again from Excel",
            expected="a complete .xlsx workbook",
        ) from exc
    if len(members) > ZIP_MAX_MEMBERS:
        raise ZipBombError(
            f"the workbook holds {len(members)} parts, more than {ZIP_MAX_MEMBERS}; "
            "it is not a normal spreadsheet",
            expected=f"at most {ZIP_MAX_MEMBERS} parts",
        )
    total = sum(m.file_size for m in members)
    if total > ZIP_MAX_TOTAL_BYTES:
        raise ZipBombError(
            f"the workbook would unpack to {total:,} bytes, more than the "
            f"{ZIP_MAX_TOTAL_BYTES:,} allowed; split it or save it as CSV",
            expected=f"at most {ZIP_MAX_TOTAL_BYTES:,} bytes unpacked",
        )
    for m in members:
        if m.file_size > ZIP_RATIO_FLOOR and m.file_size > ZIP_MAX_RATIO * max(m.compress_size, 1):
            raise ZipBombError(
                f"the workbook part {m.filename} unpacks {m.file_size // max(m.compress_size, 1)} "
                f"times its stored size (limit {ZIP_MAX_RATIO}); it is not a normal spreadsheet",
                expected=f"a compression ratio of at most {ZIP_MAX_RATIO}",
            )


def _excel_value(value: Any) -> Any:
    """Map a cell to a plain value: whole floats → int (Excel stores every number as a float)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, time | timedelta):
        return str(value)
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day)  # one column, one type
    return value


def _pick_sheet(workbook: Any, wanted: str) -> Any:
    """Return the configured sheet: first by default, else by name or 0-based index."""
    names = list(workbook.sheet_names)
    if not names:
        raise NoRowsError("the workbook has no sheets", expected="a sheet with a header row")
    if not wanted:
        return workbook.get_sheet_by_index(0)
    if wanted in names:
        return workbook.get_sheet_by_name(wanted)
    if wanted.isdigit() and int(wanted) < len(names):
        return workbook.get_sheet_by_index(int(wanted))
    raise SheetNotFoundError(
        f"the workbook has no sheet {wanted!r}; its sheets are {', '.join(map(repr, names))} "
        "(set [ingest] excel_sheet to one of them, or to a 0-based index)",
        expected=", ".join(names),
    )


def _load_sheet(path: Path, options: ReadOptions) -> list[list[Any]]:
    """Load the sheet's cells with calamine; any parser failure means a damaged workbook."""
    import python_calamine

    try:
        workbook = python_calamine.CalamineWorkbook.from_path(str(path))
        try:
            sheet = _pick_sheet(workbook, str(options.excel_sheet).strip())
            return sheet.to_python(skip_empty_area=True)
        finally:
            with contextlib.suppress(Exception):
                workbook.close()
    except IngestError:
        raise
    except python_calamine.PasswordError as exc:
        raise MalformedFileError(
            "the workbook is password-protected; save an unprotected copy",
            expected="a workbook without a password",
        ) from exc
    except BaseException as exc:  # pyo3's PanicException (bad input) is a BaseException
        if isinstance(exc, _NOT_OURS):
            raise
        raise MalformedFileError(
            f"the workbook is damaged or truncated ({str(exc)[:160]}); save it again from Excel",
            expected="a complete workbook",
        ) from exc


def _trim_grid(grid: list[list[Any]]) -> list[list[Any]]:
    """Drop trailing columns that have neither a header nor any value."""
    width = max((len(r) for r in grid), default=0)
    while width and all(len(r) < width or r[width - 1] in (None, "") for r in grid):
        width -= 1
    return [list(r[:width]) + [None] * (width - len(r)) for r in grid]


def read_workbook(path: Path, options: ReadOptions, fmt: Format = Format.EXCEL) -> RawTable:
    """Read one sheet of an .xlsx/.xlsm/.xls workbook; zip limits are checked first."""
    if fmt is Format.EXCEL:
        check_zip(path)
    grid = _trim_grid(_load_sheet(path, options))
    if not grid:
        raise EmptyFileError(
            "the sheet is empty; put a header row and data on the first sheet "
            "(or set [ingest] excel_sheet)",
            expected="a header row and at least one data row",
        )
    header = [_header_text(v) for v in grid[0]]
    _check_width(header, options)
    rows = ([_excel_value(v) for v in row] for row in grid[1:])
    if len(grid) < 2:
        raise _no_rows()
    batches = _batches_from_rows(rows, len(header), options.batch_rows)
    return RawTable(fmt, None, None, header, _renamed(batches, header))


def _header_text(value: Any) -> str:
    """Render a header cell as text (a year typed as a number stays ``2024``)."""
    value = _excel_value(value)
    return "" if value is None else (value if isinstance(value, str) else _text(value) or "")


# ---------------------------------------------------------------------------------------------
# Parquet


def read_parquet(path: Path, options: ReadOptions) -> RawTable:
    """Read a Parquet file row group by row group; nested structs become ``a.b`` columns."""
    try:
        # pre_buffer keeps every row group read so far until the file ends: memory would
        # follow the file size instead of batch_rows.
        parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
        schema = parquet.schema_arrow
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise MalformedFileError(
            f"the Parquet file is damaged or truncated ({str(exc)[:160]}); write it again",
            expected="a complete Parquet file",
        ) from exc
    if parquet.metadata.num_rows == 0:
        raise _no_rows("no rows")
    flat = pa.Table.from_batches([], schema=schema).flatten()
    columns = flat.schema.names

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in parquet.iter_batches(batch_size=options.batch_rows):
            table = pa.Table.from_batches([batch]).flatten()
            yield from table.to_batches()

    return RawTable(Format.PARQUET, None, None, columns, batches())


# ---------------------------------------------------------------------------------------------

_READERS: dict[Format, Callable[[Path, ReadOptions], RawTable]] = {
    Format.CSV: read_delimited,
    Format.TSV: lambda p, o: read_delimited(p, o, Format.TSV),
    Format.EXCEL: read_workbook,
    Format.XLS: lambda p, o: read_workbook(p, o, Format.XLS),
    Format.JSON: read_json,
    Format.JSONL: read_jsonl,
    Format.PARQUET: read_parquet,
}
