"""A drop's content hash: its normalized table's names and values in one canonical form.

Two drops hold the same content when their normalized tables are equal, whatever format they
came in: the same rows as CSV, real Excel (where whole numbers may come back as floats), JSON,
JSON Lines or Parquet hash alike, so the second is a duplicate (``ingest/lake/lakefile.py``).

Canonical form, per column (named by its lake name; the provenance columns ``_file_id`` and
``_row`` are left out, so neither the ledger id nor blank lines in the original count):

- each value is a 9-byte record, a tag and an 8-byte little-endian payload: ``I`` + int64 for
  whole numbers (an integral float counts as its integer, so 3 and 3.0 are alike), ``F`` + the
  float64 bits for other numbers, ``B`` + 0/1, ``T`` + microseconds since the epoch (UTC),
  ``S`` + the UTF-8 length for text, ``Z`` for a missing value (null or NaN);
- text bytes go to a second stream, in row order, which the ``S`` lengths split unambiguously.

Both streams are hashed as they come, batch by batch, so batch boundaries do not matter and
memory follows the batch. The table's digest hashes the columns sorted by name: a different
column order is the same table, while any changed cell, column name, row order or row count
changes it. Type tags keep ``"true"`` apart from ``true`` and ``"2024-01-05"`` apart from a
date. A column that normalization widened to text part-way through a file was hashed as it
came (numbers first, text after), so such a file may miss a duplicate in another format; it
never makes a false one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ingest.pipeline.normalize import FILE_ID, ROW

VERSION = b"dropscore-content-v1"
PROVENANCE = frozenset({FILE_ID, ROW})

_RECORD = np.dtype([("tag", "u1"), ("value", "<i8")])  # packed: 9 bytes a value
_INT, _FLOAT, _BOOL, _TIME, _TEXT, _NULL = (ord(c) for c in "IFBTSZ")
_INT64_BOUND = float(2**63)


class _Column:
    """The two running hashes of one column: value records and text bytes."""

    def __init__(self) -> None:
        self.records = hashlib.sha256()
        self.text = hashlib.sha256()

    def update(self, arr: pa.Array) -> None:
        """Feed one batch's values of this column, in row order."""
        records, text = encode(arr)
        self.records.update(records.tobytes())
        if text is not None:
            self.text.update(text)


class ContentHash:
    """The running content hash of one table, fed batch by batch as the lake file is written."""

    def __init__(self) -> None:
        self._columns: dict[str, _Column] | None = None

    def update(self, batch: pa.RecordBatch) -> None:
        """Feed one batch; every batch must carry the same column names."""
        names = [n for n in batch.schema.names if n not in PROVENANCE]
        if self._columns is None:
            self._columns = {n: _Column() for n in names}
        elif names != list(self._columns):
            raise ValueError(f"batch columns {names} differ from {list(self._columns)}")
        for name in names:
            self._columns[name].update(batch.column(name))

    def hexdigest(self) -> str:
        """Return the table's digest: columns sorted by name, each with its two hashes."""
        total = hashlib.sha256(VERSION)
        columns = self._columns or {}
        total.update(len(columns).to_bytes(8, "little"))
        for name in sorted(columns):
            encoded = name.encode()
            total.update(len(encoded).to_bytes(8, "little") + encoded)
            total.update(columns[name].records.digest() + columns[name].text.digest())
        return total.hexdigest()


def hashed(batches: Iterable[pa.RecordBatch], into: ContentHash) -> Iterator[pa.RecordBatch]:
    """Pass batches through unchanged, feeding each to ``into`` on the way (no second read)."""
    for batch in batches:
        into.update(batch)
        yield batch


def content_hash(table: pa.Table | pa.RecordBatch) -> str:
    """Hash a whole table at once; the streamed hash of its batches gives the same digest."""
    digest = ContentHash()
    for batch in pa.table(table).to_batches() if isinstance(table, pa.Table) else [table]:
        digest.update(batch)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Values


def encode(arr: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, memoryview | None]:
    """Return a column's canonical value records and its text bytes (None when not text)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if pa.types.is_null(t):
        return _records(len(arr)), None
    if pa.types.is_boolean(t):
        return _fixed(arr, _BOOL, pc.cast(arr, pa.int64())), None
    if pa.types.is_integer(t):
        return _integers(arr), None
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return _floats(pc.cast(arr, pa.float64())), None
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return _fixed(arr, _TIME, _micros(arr)), None
    return _text(_as_text(arr))


def _records(n: int) -> np.ndarray:
    """Make ``n`` records, all missing values until filled in."""
    out = np.zeros(n, dtype=_RECORD)
    out["tag"] = _NULL
    return out


def _valid(arr: pa.Array) -> np.ndarray | None:
    """Return the mask of present values, or None when every value is present."""
    if arr.null_count == 0:
        return None
    return np.asarray(pc.is_valid(arr).to_numpy(zero_copy_only=False), dtype=bool)


def _numbers(arr: pa.Array, dtype: str) -> np.ndarray:
    """Return the values as numpy, nulls filled with zero (their records say missing)."""
    if arr.null_count:
        arr = pc.fill_null(arr, pa.scalar(0, arr.type))
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=dtype)


def _fill(
    out: np.ndarray, valid: np.ndarray | None, tags: np.ndarray | int, values: np.ndarray
) -> np.ndarray:
    """Set the records of present values (all of them when ``valid`` is None)."""
    if valid is None:
        out["tag"] = tags
        out["value"] = values
    else:
        out["tag"][valid] = tags if isinstance(tags, int) else tags[valid]
        out["value"][valid] = values[valid]
    return out


def _fixed(arr: pa.Array, tag: int, payload: pa.Array) -> np.ndarray:
    """Records with one tag for present values and an int64 payload."""
    out = np.zeros(len(arr), dtype=_RECORD) if arr.null_count == 0 else _records(len(arr))
    return _fill(out, _valid(arr), tag, _numbers(payload, "int64"))


def _integers(arr: pa.Array) -> np.ndarray:
    """Whole numbers: int64 as they are; an unsigned value past int64 counts as a float."""
    if pa.types.is_uint64(arr.type) and (pc.max(arr).as_py() or 0) >= 2**63:
        return _floats(pc.cast(arr, pa.float64()))
    return _fixed(arr, _INT, pc.cast(arr, pa.int64()))


def _floats(arr: pa.Array) -> np.ndarray:
    """Numbers: an integral float is its integer; NaN is missing; the rest keep their bits."""
    values = _numbers(arr, "float64")
    valid = _valid(arr)
    present = ~np.isnan(values) if valid is None else valid & ~np.isnan(values)
    whole = np.isfinite(values) & (np.abs(values) < _INT64_BOUND) & (np.floor(values) == values)
    with np.errstate(invalid="ignore"):  # NaN and inf are cast too, then not chosen
        as_int = values.astype(np.int64)
    tags = np.where(whole, np.uint8(_INT), np.uint8(_FLOAT))
    payload = np.where(whole, as_int, values.view(np.int64))
    everything = bool(present.all())
    out = np.zeros(len(values), dtype=_RECORD) if everything else _records(len(values))
    return _fill(out, None if everything else present, tags, payload)


def _micros(arr: pa.Array) -> pa.Array:
    """Microseconds since the epoch (UTC for zoned times) as int64."""
    if pa.types.is_date(arr.type):
        arr = pc.cast(arr, pa.timestamp("us"))
    elif arr.type.unit != "us":
        arr = pc.cast(arr, pa.timestamp("us", arr.type.tz))
    return arr.view(pa.int64())


def _as_text(arr: pa.Array) -> pa.Array:
    """Render a text-like column as ``string``; anything else by its Python text."""
    if pa.types.is_string(arr.type):
        return arr
    try:
        return pc.cast(arr, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([None if v is None else str(v) for v in arr.to_pylist()], pa.string())


def _text(arr: pa.Array) -> tuple[np.ndarray, memoryview]:
    """Text: records carry each value's UTF-8 length; the bytes go to the text stream."""
    valid = _valid(arr)
    # a null slot may still own bytes; an empty string owns none
    filled = arr if valid is None else pc.fill_null(arr, "")
    n = len(filled)
    offsets_buffer, data_buffer = filled.buffers()[1], filled.buffers()[2]
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[filled.offset : filled.offset + n + 1]
    out = np.zeros(n, dtype=_RECORD) if valid is None else _records(n)
    _fill(out, valid, _TEXT, np.diff(offsets).astype(np.int64))
    if data_buffer is None or n == 0:
        return out, memoryview(b"")
    return out, memoryview(data_buffer)[int(offsets[0]) : int(offsets[-1])]
