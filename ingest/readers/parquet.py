"""Parquet: read row group by row group; nested structs become ``a_b`` columns.

Text is read as dictionaries and decoded a slice at a time: a dictionary-encoded column stores a
repeated value once, so a file of a few KB can decode to gigabytes. Each slice decodes to at most
``SLICE_BYTES`` (and ``batch_rows`` rows), and ``max_file_mb`` counts the decoded bytes, as it
counts what a gzip file unpacks to.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ingest.base.config import ReadOptions
from ingest.base.errors import MalformedFileError
from ingest.base.formats import Format
from ingest.readers.common import RawTable, flat_names, no_rows, unpacked_limit, unpacked_too_large

SLICE_BYTES = 32 << 20  # the most one batch decodes to (one row may hold more by itself)


def read_parquet(path: Path, options: ReadOptions, fmt: Format) -> RawTable:
    """Read a Parquet file row group by row group; nested structs become ``a_b`` columns."""
    try:
        # pre_buffer keeps every row group read so far until the file ends: memory would
        # follow the file size instead of batch_rows.
        parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
        schema = parquet.schema_arrow
        texts = text_columns(parquet)
        if texts:
            parquet = pq.ParquetFile(
                path, pre_buffer=False, buffer_size=1 << 20, read_dictionary=texts
            )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise MalformedFileError(
            f"the Parquet file is damaged or truncated ({str(exc)[:160]}); write it again",
            expected="a complete Parquet file",
        ) from exc
    meta = parquet.metadata
    if meta.num_rows == 0:
        raise no_rows("no rows")
    limit = decoded_limit(meta, options, path.name, path.stat().st_size)
    columns = flat_names(schema)

    def slices() -> Iterator[pa.RecordBatch]:
        for batch in parquet.iter_batches(batch_size=options.batch_rows):
            yield from decoded_slices(batch)

    return RawTable(fmt, None, None, columns, Decoded(limit).flattened(slices(), columns))


@dataclass(frozen=True)
class DecodedLimit:
    """The bytes a Parquet file may decode to (``max_file_mb``), and the file's words to refuse it.

    The one check of that limit: this reader counts a file's rows against it, and so does each
    Dask part (``scoring.bulk.remote``) and then the client on the parts' sum, so a file is
    refused at the same size and in the same words wherever it is read.
    """

    name: str = ""  # the file's name, for the message
    packed: int = 0  # the bytes the file is stored in, as its filesystem says
    limit: int | None = None  # None: no limit

    def check(self, decoded: int) -> None:
        """Refuse the file when ``decoded`` bytes pass the limit."""
        if self.limit is not None and decoded > self.limit:
            raise unpacked_too_large(self.name, self.limit, self.packed)


def decoded_limit(
    meta: pq.FileMetaData, options: ReadOptions, name: str, packed: int
) -> DecodedLimit:
    """Refuse a file whose pages pass ``max_file_mb`` unpacked (the footer alone); give its limit.

    The pages' unpacked size is known before a row is read; what dictionaries decode to is
    not, so the rows count that against the returned limit as they are read (``Decoded``).
    """
    found = DecodedLimit(name, packed, unpacked_limit(options))
    found.check(
        sum(
            meta.row_group(g).column(c).total_uncompressed_size
            for g in range(meta.num_row_groups)
            for c in range(meta.num_columns)
        )
    )
    return found


class Decoded:
    """Count the bytes a file's decoded rows hold, refusing the file once they pass its limit."""

    def __init__(self, limit: DecodedLimit) -> None:
        self.limit = limit
        self.bytes = 0  # decoded so far: a Dask part reports it for the client's sum

    def flattened(
        self, slices: Iterable[pa.RecordBatch], columns: list[str]
    ) -> Iterator[pa.RecordBatch]:
        """Count each decoded slice, then give it as the reader does: structs flat, renamed."""
        for part in slices:
            self.bytes += part.nbytes
            self.limit.check(self.bytes)
            table = pa.Table.from_batches([part])
            while any(pa.types.is_struct(t) for t in table.schema.types):
                table = table.flatten()  # one level a call
            yield from table.rename_columns(columns).to_batches()


def text_columns(parquet: pq.ParquetFile) -> list[str]:
    """List the columns stored as BYTE_ARRAY (text, binary), by their dotted paths.

    Those inside lists and maps are left out: a file has one row per record, so they are not
    columns a model reads, and their values stay in the pages' counted size.
    """
    schema = parquet.schema
    return [
        schema.column(c).path
        for c in range(len(schema))
        if schema.column(c).physical_type == "BYTE_ARRAY"
        and schema.column(c).max_repetition_level == 0
    ]


def decoded_slices(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    """Cut a batch whose dictionaries decode big into slices of about SLICE_BYTES, decoded."""
    sizes = row_bytes(batch)
    if int(sizes.sum()) <= SLICE_BYTES:
        yield undictionary(batch)
        return
    ends = np.cumsum(sizes)
    start, before = 0, 0
    while start < batch.num_rows:
        end = max(start + 1, int(np.searchsorted(ends, before + SLICE_BYTES, side="right")))
        yield undictionary(batch.slice(start, end - start))
        start, before = end, int(ends[end - 1])


def row_bytes(batch: pa.RecordBatch) -> np.ndarray:
    """Estimate each row's decoded bytes: its dictionary values' lengths plus fixed widths."""
    sizes = np.full(batch.num_rows, batch.nbytes // max(batch.num_rows, 1), dtype=np.int64)
    for column in batch.columns:
        for chunk in _dictionaries(column):
            lengths = pc.binary_length(chunk.dictionary).take(chunk.indices).fill_null(0)
            sizes += lengths.to_numpy(zero_copy_only=False).astype(np.int64) + 8
    return sizes


def _dictionaries(array: pa.Array) -> list[pa.DictionaryArray]:
    """Find the dictionary arrays in a column, inside structs too (row-aligned)."""
    if isinstance(array, pa.DictionaryArray):
        return [array]
    if isinstance(array, pa.StructArray):
        return [d for i in range(array.type.num_fields) for d in _dictionaries(array.field(i))]
    return []


def undictionary(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Decode a batch's dictionary columns (in structs too) into the plain values."""
    plain = pa.schema([pa.field(f.name, _plain(f.type), f.nullable) for f in batch.schema])
    return batch if plain == batch.schema else batch.cast(plain)


def _plain(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(kind):
        return kind.value_type
    if pa.types.is_struct(kind):
        return pa.struct([pa.field(f.name, _plain(f.type), f.nullable) for f in kind])
    return kind


def bounded_batches(path: Path, batch_rows: int) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """Read a flat Parquet file (a lake file) in batches bounded in rows and decoded bytes."""
    # pre_buffer would keep every row group's bytes read so far until the file is done.
    plain = pq.ParquetFile(path, pre_buffer=False)
    texts = text_columns(plain)
    if not texts:
        return plain.schema_arrow, plain.iter_batches(batch_size=batch_rows)
    parquet = pq.ParquetFile(path, pre_buffer=False, read_dictionary=texts)
    batches = parquet.iter_batches(batch_size=batch_rows)
    return plain.schema_arrow, (part for b in batches for part in decoded_slices(b))
