"""A bounded sample of one file, read and normalized exactly as the lake would see it.

Used to look at a file before any model exists (``dropscore init``): the same readers and the
same normalization as a drop, so the names and types proposed are the ones the lake will hold.
Reads at most ``max_rows`` rows; nothing is written and no ledger row is made.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from ingest.base.config import ReadOptions
from ingest.pipeline.normalize import FILE_ID, ROW, normalize_file
from ingest.readers import open_table

SAMPLE_ROWS = 100_000


@dataclass(frozen=True)
class Sample:
    """The first rows of a file under lake names and types, and the map from its headers."""

    table: pa.Table  # lake names and types, provenance columns removed
    column_map: dict[str, str]  # original header → lake name
    truncated: bool  # the file holds more rows than were read


def read_sample(path: Path, options: ReadOptions, max_rows: int = SAMPLE_ROWS) -> Sample:
    """Read and normalize up to ``max_rows`` rows; raises the readers' IngestErrors."""
    normalized = normalize_file(open_table(path, options), file_id=0)
    batches: list[pa.RecordBatch] = []
    rows = 0
    truncated = False
    for batch in normalized.batches:
        if rows + batch.num_rows >= max_rows:
            truncated = rows + batch.num_rows > max_rows or _more(normalized.batches)
            batches.append(batch.slice(0, max_rows - rows))
            break
        batches.append(batch)
        rows += batch.num_rows
    schema = normalized.schema  # widest after the batches read (see ingest.pipeline.normalize)
    table = pa.Table.from_batches([b.cast(schema) for b in batches], schema=schema)
    return Sample(table.drop_columns([FILE_ID, ROW]), normalized.column_map, truncated)


def _more(batches: Iterator[pa.RecordBatch]) -> bool:
    """Tell whether a batch iterator has another non-empty batch, reading at most one."""
    return any(batch.num_rows for batch in batches)
