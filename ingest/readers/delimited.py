"""Delimited text (CSV, TSV, TXT; optionally gzip): sniffed, then streamed by pyarrow.

Encoding, delimiter and decimal mark are sniffed from the first megabyte; pyarrow's streaming
reader then yields batches, and a later block that breaks a type inferred from the first is
re-read with that column pinned to text. A caller that knows some columns' types
(``ReadOptions.column_types``) has them parsed as such, with no inference; a value that does not
parse sends that column down the same road (text from then on, typed by
``ingest.pipeline.normalize``). Such typed reads of UTF-8 text are parsed on every core
(``ingest.readers.csv_chunks``).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from ingest.base.config import ReadOptions
from ingest.base.errors import EmptyFileError, IngestError, MalformedFileError, RaggedRowsError
from ingest.base.formats import Format
from ingest.readers.common import (
    RawTable,
    check_width,
    no_rows,
    open_bytes,
    open_stream,
    plural,
    renamed,
    unpacked_limit,
)
from ingest.readers.csv_chunks import parallel_batches
from ingest.readers.sniff import (
    choose_encoding,
    has_multiline_values,
    read_sample,
    sniff_decimal,
    sniff_delimiter,
    trim_partial,
)

log = logging.getLogger("dropscore.ingest")


def read_csv(path: Path, options: ReadOptions, fmt: Format) -> RawTable:
    """Read comma-or-otherwise delimited text; ties in sniffing go to the comma."""
    return read_delimited(path, options, fmt, ",")


def read_tsv(path: Path, options: ReadOptions, fmt: Format) -> RawTable:
    """Read tab-separated text; ties in sniffing go to the tab, as the name promises."""
    return read_delimited(path, options, fmt, "\t")


@dataclass(frozen=True)
class _CsvPlan:
    """Everything sniffed about a delimited file, so re-reads parse it identically."""

    path: Path
    encoding: str
    delimiter: str
    decimal: str
    multiline: bool
    block_size: int
    line_feeds: bool = True  # lines end in \n (or \r\n), not a lone \r
    max_line_bytes: int = 64 << 20  # ReadOptions.max_line_bytes: the block grows up to this
    max_unpacked: int | None = None  # bytes a gzip file may unpack to (max_file_mb)


CSV_BLOCK_BYTES = 1 << 20


def merge_batches(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Merge small consecutive batches of one schema into batches of about ``rows`` rows.

    Public because the Dask path (``scoring.bulk.csv_parts.batch_cuts``) runs this very
    function over row counts to replay the local reader's batching bit for bit: a second
    copy of the rule would drift, and the two engines' batches (so their output) with it.
    """
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


def _plan_csv(path: Path, preferred: str, options: ReadOptions) -> tuple[_CsvPlan, str]:
    """Sniff encoding, delimiter, decimal mark and block size from the start of the file."""
    sample, complete = read_sample(path, unpacked_limit(options))
    if not sample.strip(b" \t\r\n\x00\xef\xbb\xbf"):
        raise EmptyFileError(
            "the file holds no text (only blank lines); export it again with a header row",
            expected="a header row and at least one data row",
        )
    trimmed = trim_partial(sample, complete)
    codec, name = choose_encoding(trimmed, options.csv_encodings)
    text = trimmed.decode(codec, errors="replace")
    delimiter = sniff_delimiter(text, preferred)
    lines = max(1, text.count("\n"))
    per_row = max(16, len(trimmed) // lines)
    # Arrow's streaming reader queues up to 32 blocks ahead of its consumer, so the block size,
    # not batch_rows, sets the reader's memory: 1 MiB blocks keep that near 32 MiB (21 MiB
    # blocks measured 670 MB). Batches are merged back up to batch_rows by merge_batches.
    block = min(max(per_row * options.batch_rows, 1 << 16), CSV_BLOCK_BYTES)
    plan = _CsvPlan(
        path,
        codec,
        delimiter,
        sniff_decimal(text, delimiter),
        has_multiline_values(text, delimiter),
        block,
        "\n" in text,
        max_line_bytes=options.max_line_bytes,
        max_unpacked=unpacked_limit(options),
    )
    return plan, name


_COLUMN_IN_ERROR = re.compile(r"In CSV column #(\d+)")
_RAGGED_IN_ERROR = re.compile(r"Expected \d+ columns, got \d+")


def _open_arrow_csv(plan: _CsvPlan, types: dict[str, pa.DataType]) -> _GrowingReader:
    """Start pyarrow's streaming CSV reader with the sniffed settings and pinned types."""
    return _GrowingReader(plan, types)


def _arrow_csv(plan: _CsvPlan, types: dict[str, pa.DataType]) -> pacsv.CSVStreamingReader:
    """Open pyarrow's streaming CSV reader once, with the plan's block size."""
    source = open_stream(plan.path, plan.max_unpacked)
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


class _GrowingReader:
    """pyarrow's streaming CSV reader that reads lines longer than its block.

    pyarrow refuses a line longer than the block ("straddling object straddles two block
    boundaries"). Then the file is opened again with a block twice as large, every column pinned
    to the type already handed out, and the rows already emitted skipped; past
    ``max_line_bytes`` the file is refused in plain words. Memory grows only for such files.
    """

    def __init__(self, plan: _CsvPlan, types: dict[str, pa.DataType]) -> None:
        self._plan = plan
        self._types = dict(types)
        self._reader = self._open()
        self.schema = self._reader.schema

    def _open(self) -> pacsv.CSVStreamingReader:
        """Open with the current block, doubling it while the first block holds no whole line."""
        while True:
            try:
                return _arrow_csv(self._plan, self._types)
            except pa.ArrowInvalid as exc:
                self._grow(exc)

    def _grow(self, exc: pa.ArrowInvalid) -> None:
        """Double the block for a line longer than it, or refuse past the limit; re-raise else."""
        if "straddling" not in str(exc):
            raise exc
        limit = self._plan.max_line_bytes
        if self._plan.block_size >= limit:
            raise MalformedFileError(
                f"a line is longer than {_mib(limit)}; dropscore reads lines up to {_mib(limit)}",
                expected=f"lines of at most {_mib(limit)}",
            ) from exc
        block = min(self._plan.block_size * 2, limit)
        log.info("csv block grown for a long line", extra={"file": self._plan.path.name})
        self._plan = dataclasses.replace(self._plan, block_size=block)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        emitted = 0
        while True:
            try:
                for batch in self._reader:
                    emitted += batch.num_rows
                    yield batch
                return
            except pa.ArrowInvalid as exc:
                self._grow(exc)
                self._types = {f.name: f.type for f in self.schema}
                self._reader = _Skipping(self._open(), emitted)


def _mib(size: int) -> str:
    """Say a byte count in MiB (or KiB when smaller), as the refusal states the limit."""
    return f"{size / (1 << 20):g} MiB" if size >= 1 << 20 else f"{size / 1024:g} KiB"


def find_ragged_row(plan: _CsvPlan) -> RaggedRowsError | None:
    """Find the first record whose field count differs from the header's, by re-reading it."""
    with open_bytes(plan.path, plan.max_unpacked) as raw:
        text = io.TextIOWrapper(raw, encoding=plan.encoding, errors="replace", newline="")
        records = (r for r in csv.reader(text, delimiter=plan.delimiter) if r)
        header = next(records, None)
        if header is None:
            return None
        for number, record in enumerate(records, start=1):
            if len(record) != len(header):
                return RaggedRowsError(
                    f"row {number} has {plural(len(record), 'field')} but the header has "
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
        return no_rows()
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


def _start_typed(
    plan: _CsvPlan, names: list[str], wanted: Mapping[str, pa.DataType]
) -> pacsv.CSVStreamingReader:
    """Re-open the reader parsing the wanted columns with their types, not inferred ones.

    A value in the first block that does not parse pins its column to text (the other columns
    keep their types), exactly as a later block does in ``_stream_csv``.
    """
    types = {name: wanted[name] for name in names if name in wanted}
    for _ in range(len(types) + 1):
        try:
            return _open_arrow_csv(plan, types)
        except pa.ArrowInvalid as exc:
            match = _COLUMN_IN_ERROR.search(str(exc))
            if match is None or "conversion error" not in str(exc):
                raise _csv_failure(exc, plan) from exc
            types[names[int(match.group(1))]] = pa.string()
    raise MalformedFileError("the file is not valid delimited text")  # not reached


def _stream_csv(plan: _CsvPlan, reader: pacsv.CSVStreamingReader) -> Iterator[pa.RecordBatch]:
    """Yield batches; when a later block breaks a type inferred from the first, re-read as text.

    pyarrow infers each column's type from the first block only. When a later block does not
    fit (``1.5`` after whole numbers, text after an empty column), the file is read again from
    the start with that column pinned to string and every other column pinned to its type,
    skipping the rows already handed out. ``ingest.pipeline.normalize`` then widens the column.
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


def read_delimited(path: Path, options: ReadOptions, fmt: Format, preferred: str) -> RawTable:
    """Read CSV/TSV/TXT (optionally gzip) as a stream of batches."""
    plan, encoding = _plan_csv(path, preferred, options)
    reader = _start_csv(plan)
    columns = _fix_header(reader.schema.names)
    check_width(columns, options)
    stream = None
    typed = _typed(plan, reader, columns, options)
    if typed is not None:
        reader = typed
        if _can_cut(plan):
            stream = _parallel(plan, reader.schema)
    batches = merge_batches(stream or _stream_csv(plan, reader), options.batch_rows)
    first = _first_batch(batches)
    return RawTable(
        fmt,
        encoding,
        plan.delimiter,
        columns,
        renamed(_chain([first], batches), columns),
        plan.decimal,
    )


def _typed(
    plan: _CsvPlan, reader: pacsv.CSVStreamingReader, columns: list[str], options: ReadOptions
) -> pacsv.CSVStreamingReader | None:
    """Re-open the reader with the caller's column types; None when it pins none."""
    if options.column_types is None:
        return None
    # Keyed by pyarrow's own names (a BOM may still be on the first).
    wanted = options.column_types(columns)
    arrow_names = reader.schema.names
    by_arrow = {a: wanted[c] for a, c in zip(arrow_names, columns, strict=True) if c in wanted}
    if not by_arrow:
        return None
    return _start_typed(plan, arrow_names, by_arrow)


@dataclass(frozen=True)
class CutLayout:
    """What a reader of one byte range needs to parse it as ``read_delimited`` parses the file."""

    encoding: str  # as recorded (``RawTable.encoding``)
    delimiter: str
    decimal: str
    columns: list[str]  # the header's names, cleaned
    schema: pa.Schema  # pyarrow's names, each column's type as of the first block


def cut_layout(path: Path, options: ReadOptions, preferred: str = ",") -> CutLayout | str:
    """Say how ``read_delimited`` parses a file in chunks cut at line feeds, or why it does not.

    The same sniffing, header checks (``max_columns``) and first-block types as the read, so
    a byte range parsed with this layout gives the read's batches; a reason in words when the
    read streams the file whole instead (no pinned types, quoted line breaks, not UTF-8, ...).
    """
    plan, encoding = _plan_csv(path, preferred, options)
    reader = _start_csv(plan)
    columns = _fix_header(reader.schema.names)
    check_width(columns, options)
    if not _can_cut(plan):
        if plan.multiline:
            return "quoted values span lines (seen in the first megabyte)"
        if not plan.line_feeds:
            return "lines end in a lone carriage return"
        return f"the text is {plan.encoding}, not UTF-8"
    typed = _typed(plan, reader, columns, options)
    if typed is None:
        return "no column is parsed with a known type (the model has no numeric feature)"
    return CutLayout(encoding, plan.delimiter, plan.decimal, columns, typed.schema)


def _can_cut(plan: _CsvPlan) -> bool:
    """Tell whether the file can be cut at line feeds and parsed in parallel chunks."""
    return plan.encoding in ("utf-8", "utf-8-sig") and plan.line_feeds and not plan.multiline


def _parallel(plan: _CsvPlan, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Parse the file in chunks on every core, every column pinned to the first block's type."""
    return parallel_batches(
        open_stream(plan.path, plan.max_unpacked),
        schema,
        delimiter=plan.delimiter,
        decimal=plan.decimal,
        failure=functools.partial(_csv_failure, plan=plan),
    )


def _first_batch(batches: Iterator[pa.RecordBatch]) -> pa.RecordBatch:
    """Return the first non-empty batch, or raise NoRowsError for a header-only file."""
    for batch in batches:
        if batch.num_rows:
            return batch
    raise no_rows()


def _chain(
    head: Iterable[pa.RecordBatch], rest: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    yield from head
    yield from rest
