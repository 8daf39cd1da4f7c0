"""Readers: one file in, a RawTable of Arrow record batches out (work in progress)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from ingest.config import ReadOptions
from ingest.formats import Format


@dataclass
class RawTable:
    """A file as read: original header names and batches of at most ``batch_rows`` rows."""

    format: Format
    encoding: str | None
    delimiter: str | None
    columns: list[str]
    batches: Iterator[pa.RecordBatch]
    decimal: str = "."


def open_table(path: Path, options: ReadOptions) -> RawTable:
    """Open a dropped file for streaming, raising a typed IngestError for anything unreadable."""
    raise NotImplementedError
