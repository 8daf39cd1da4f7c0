"""The Parquet lake (work in progress)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa


@dataclass(frozen=True)
class TypeConflict:
    """A column whose new type cannot join the lake's."""

    column: str
    lake_type: pa.DataType
    new_type: pa.DataType
    message: str


def write_parquet_atomic(batches: Iterable[pa.RecordBatch], schema: pa.Schema, dest: Path) -> int:
    """Write batches to dest atomically; return rows written."""
    raise NotImplementedError


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove temporaries left by a crash."""
    raise NotImplementedError


def lake_schema(folder: Path) -> pa.Schema | None:
    """Return the unified schema of the lake files in folder."""
    raise NotImplementedError


def check_compatible(lake: pa.Schema, new: pa.Schema) -> list[TypeConflict]:
    """List the columns whose new type conflicts with the lake."""
    raise NotImplementedError


def read_lake(folder: Path, columns: list[str] | None = None) -> pa.Table:
    """Read every lake file in folder as one table."""
    raise NotImplementedError
