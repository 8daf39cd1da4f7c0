"""Normalization: original names and types in, lake names and types out (work in progress)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa

from ingest.readers import RawTable


def normalize_names(names: Iterable[str]) -> list[str]:
    """Return lake column names for the given originals."""
    raise NotImplementedError


@dataclass
class NormalizedTable:
    """Normalized batches of one file plus what the ledger records about it."""

    column_map: dict[str, str]
    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    rows_written: int = 0


def normalize_file(raw: RawTable, file_id: int) -> NormalizedTable:
    """Normalize one file's batches for the lake."""
    raise NotImplementedError
