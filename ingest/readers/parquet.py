"""Parquet: read row group by row group; nested structs become ``a_b`` columns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ingest.config import ReadOptions
from ingest.errors import MalformedFileError
from ingest.formats import Format
from ingest.readers.common import RawTable, flat_names, no_rows


def read_parquet(path: Path, options: ReadOptions, fmt: Format) -> RawTable:
    """Read a Parquet file row group by row group; nested structs become ``a_b`` columns."""
    try:
        # pre_buffer keeps every row group read so far until the file ends: memory would
        # follow the file size instead of batch_rows.
        parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
        schema = parquet.schema_arrow
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise MalformedFileError(
            f"the Parquet file is damaged or truncated ({str(exc)[:160]}); write it again",
            expected="a complete Parquet file",
        ) from exc
    if parquet.metadata.num_rows == 0:
        raise no_rows("no rows")
    columns = flat_names(schema)

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in parquet.iter_batches(batch_size=options.batch_rows):
            table = pa.Table.from_batches([batch])
            while any(pa.types.is_struct(t) for t in table.schema.types):
                table = table.flatten()  # one level a call
            yield from table.rename_columns(columns).to_batches()

    return RawTable(fmt, None, None, columns, batches())
