"""Writers for scored output: batches in, one file out at the path the caller chose.

The caller picks a temporary path and renames it into place (``scoring.bulk.batch``), so a
reader never sees half a file. Each writer returns whether any batch came: with none, the
caller refuses the output rather than publish an empty file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ingest.lake.store import write_parquet_atomic


def write_csv(batches: Iterator[pa.RecordBatch], path: Path) -> bool:
    """Write CSV with one header, batch by batch, so memory follows the batch size."""
    wrote = False
    with open(path, "wb") as fh:
        for batch in batches:
            options = pacsv.WriteOptions(include_header=not wrote)
            pacsv.write_csv(pa.Table.from_batches([batch]), fh, write_options=options)
            wrote = True
        _sync(fh)
    return wrote


def write_jsonl(batches: Iterator[pa.RecordBatch], path: Path) -> bool:
    """Write one JSON object per row; NaN and infinities become null so every line is strict."""
    wrote = False
    with open(path, "wb") as fh:
        for batch in batches:
            for line in json_rows(batch):
                fh.write(line + b"\n")
            wrote = True
        _sync(fh)
    return wrote


def write_json(batches: Iterator[pa.RecordBatch], path: Path) -> bool:
    """Write one JSON array of row objects, batch by batch: ``[``, rows joined by ``,``, ``]``."""
    wrote = False
    with open(path, "wb") as fh:
        fh.write(b"[")
        for batch in batches:
            for line in json_rows(batch):
                fh.write((b",\n" if wrote else b"\n") + line)
                wrote = True
        fh.write(b"\n]\n")
        _sync(fh)
    return wrote


def json_rows(batch: pa.RecordBatch) -> Iterator[bytes]:
    """Encode each row of a batch as a strict JSON object (no NaN/Infinity: null instead)."""
    names = batch.schema.names
    columns = [_finite_or_null(column).to_pylist() for column in batch.columns]
    for values in zip(*columns, strict=True):
        record = dict(zip(names, values, strict=True))
        yield json.dumps(record, default=str, allow_nan=False).encode()


def _finite_or_null(column: pa.Array) -> pa.Array:
    """Turn NaN and ±inf into nulls, in Arrow, so the JSON encoder never meets them."""
    if not pa.types.is_floating(column.type):
        return column
    return pc.if_else(pc.is_finite(column), column, pa.scalar(None, column.type))


def write_parquet(batches: Iterator[pa.RecordBatch], path: Path) -> bool:
    """Write Parquet with the first batch's schema (widened if a later batch needs it)."""
    first = next(batches, None)
    if first is None:
        return False
    write_parquet_atomic(_chain(first, batches), first.schema, path)
    return True


def _chain(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest


def _sync(fh: BinaryIO) -> None:
    fh.flush()
    os.fsync(fh.fileno())
