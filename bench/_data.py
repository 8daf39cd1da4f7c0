"""Inputs for the bulk benches: generated rows on the sample's scale, as CSV and as Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scoring.testing.checkout import SAMPLE

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


def feature_scale() -> tuple[Any, Any]:
    """Mean and standard deviation of each feature in the bundled sample."""
    import numpy as np

    sample = np.loadtxt(SAMPLE, delimiter=",", skiprows=1)[:, : len(FEATURES)]
    return sample.mean(axis=0), sample.std(axis=0)


def generate_csv(path: Path, rows: int, seed: int = 7, chunk: int = 250_000) -> None:
    """Write rows of normally distributed features on the sample's scale, chunk by chunk."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    mean, std = feature_scale()
    rng = np.random.default_rng(seed)
    schema = pa.schema([(name, pa.float64()) for name in FEATURES])
    with pacsv.CSVWriter(str(path), schema) as writer:
        done = 0
        while done < rows:
            n = min(chunk, rows - done)
            values = rng.normal(mean, std, size=(n, len(FEATURES)))
            writer.write_table(pa.table(dict(zip(FEATURES, values.T, strict=True))))
            done += n


def csv_to_parquet(src: Path, dst: Path, group: int = 1 << 20) -> None:
    """Convert the CSV to Parquet in row groups of pyarrow's (and pandas') default 1Mi rows."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    reader = pacsv.open_csv(src)
    pending: list[pa.RecordBatch] = []
    with pq.ParquetWriter(dst, reader.schema) as writer:
        for batch in reader:
            pending.append(batch)
            if sum(b.num_rows for b in pending) >= group:
                writer.write_table(pa.Table.from_batches(pending), row_group_size=group)
                pending = []
        if pending:
            writer.write_table(pa.Table.from_batches(pending), row_group_size=group)


def parquet_rows(path: Path) -> int:
    """Count a Parquet file's rows from its footer, to check each path wrote every row."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows
