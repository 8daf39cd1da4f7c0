"""What every reader shares: the RawTable it returns, and row/column helpers for its batches."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import pyarrow as pa

from ingest.base.config import ReadOptions
from ingest.base.errors import FileTooLargeError, NoRowsError, TooManyColumnsError
from ingest.base.formats import Format

# Failures that are not the file's fault: never turned into an IngestError.
NOT_OURS = (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError)


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
# Checks and messages every reader uses


def check_width(columns: list[str], options: ReadOptions) -> None:
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


def no_rows(what: str = "a header but no data rows") -> NoRowsError:
    """Build the error for a file with a header (or nothing) but no rows, in its words."""
    return NoRowsError(
        f"the file has {what}; add at least one row below the header"
        if what.startswith("a header")
        else f"the file has {what}; add at least one record",
        expected="at least one data row",
    )


def plural(n: int, word: str) -> str:
    """Count a word in English, so messages read "1 field" and "2 fields"."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def nested_name(parent: str, child: object) -> str:
    """Name the column a nested field flattens to: ``parent_child``, as ingest normalizes it.

    The one rule for every reader that flattens nested data (JSON objects, Parquet structs),
    so ``/score-file``, ``dropscore score`` and the lake all call the field ``nested_x``:
    normalization leaves such a name as it is, where ``nested.x`` would become ``nested_x``
    in the lake but stay ``nested.x`` in scored output.
    """
    return f"{parent}_{child}"


def flat_names(schema: pa.Schema) -> list[str]:
    """Name the columns a schema flattens to, depth first, struct fields by ``nested_name``."""

    def walk(fields: list[pa.Field], prefix: str | None) -> list[str]:
        names: list[str] = []
        for f in fields:
            name = f.name if prefix is None else nested_name(prefix, f.name)
            if pa.types.is_struct(f.type):
                names += walk([f.type.field(i) for i in range(f.type.num_fields)], name)
            else:
                names.append(name)
        return names

    return walk(list(schema), None)


# ---------------------------------------------------------------------------------------------
# Opening bytes (gzip read through)


def is_gzipped(path: Path) -> bool:
    """Tell whether the name says gzip (``detect_format`` has checked the bytes agree)."""
    return path.name.lower().endswith(".gz")


def open_bytes(path: Path, limit: int | None = None) -> gzip.GzipFile | io.BufferedReader:
    """Open the file's bytes, decompressing gzip transparently.

    ``limit`` caps the bytes gzip may unpack to: reading past it raises FileTooLargeError at
    once, so a small file that inflates to gigabytes is refused, not read (``max_file_mb``
    counts what the file holds, not what it weighs on disk).
    """
    if is_gzipped(path):
        unpacked = gzip.open(path, "rb")  # noqa: SIM115 - the caller closes what it returns
        return unpacked if limit is None else io.BufferedReader(_Unpacked(unpacked, limit, path))
    return path.open("rb")


def open_stream(path: Path, limit: int | None = None) -> pa.NativeFile:
    """Open the file as an Arrow stream, gzip unpacked under ``limit`` as ``open_bytes`` does."""
    if is_gzipped(path) and limit is not None:
        return pa.PythonFile(open_bytes(path, limit), mode="r")
    return pa.input_stream(str(path), compression="gzip" if is_gzipped(path) else None)


def unpacked_limit(options: ReadOptions) -> int | None:
    """Return the unpacked-bytes cap of ``options`` in bytes, or None when there is none."""
    if options.max_unpacked_mb is None:
        return None
    return int(options.max_unpacked_mb * 1024 * 1024)


class _Unpacked(io.RawIOBase):
    """A gzip stream that refuses to unpack more than ``limit`` bytes."""

    def __init__(self, inner: gzip.GzipFile, limit: int, path: Path) -> None:
        super().__init__()
        self._inner = inner
        self._limit = limit
        self._path = path
        self._packed = path.stat().st_size  # the file is open: its size is there to read
        self._count = 0

    def readable(self) -> bool:
        """Tell io this stream reads."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` with unpacked bytes, refusing the file once it passes the cap."""
        n = self._inner.readinto(buffer)
        self._count += n
        if self._count > self._limit:
            raise unpacked_too_large(self._path.name, self._limit, self._packed)
        return n

    def close(self) -> None:
        """Close the gzip stream under this one."""
        self._inner.close()
        super().close()


def unpacked_too_large(name: str, limit: int, packed: int) -> FileTooLargeError:
    """Describe a compressed file that unpacks past the cap, in words a person can act on.

    ``packed`` is the file's stored bytes as its caller's filesystem gives them (a path's
    ``stat``, a bucket object's file info): this function reads no disk, so a file in a
    bucket is not reported as 0.0 MB.
    """
    mb, packed_mb = limit / 1024 / 1024, packed / 1024 / 1024
    return FileTooLargeError(
        f"{name} unpacks to more than {mb:g} MB (it is {packed_mb:.1f} MB compressed); "
        "[ingest] max_file_mb counts the unpacked bytes, so split it into smaller files or "
        "raise the limit",
        expected=f"at most {mb:g} MB unpacked ([ingest] max_file_mb)",
    )


def renamed(batches: Iterator[pa.RecordBatch], names: list[str]) -> Iterator[pa.RecordBatch]:
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
        return pa.array([as_text(v) for v in values], pa.string())


def as_text(value: Any) -> str | None:
    """Render a value as the text a person would expect to see for it."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | int | float | list | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


def batches_from_rows(rows: Iterable[list[Any]], width: int, size: int) -> Iterator[pa.RecordBatch]:
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
