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
import pyarrow.csv as pacsv

from ingest.lake import write_parquet_atomic


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
    """Write one JSON object per row; NaN becomes null so every line is strict JSON."""
    wrote = False
    with open(path, "wb") as fh:
        for batch in batches:
            for record in batch.to_pylist():
                clean = {k: None if v != v else v for k, v in record.items()}  # NaN → null
                fh.write(json.dumps(clean, default=str).encode() + b"\n")
            wrote = True
        _sync(fh)
    return wrote


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
