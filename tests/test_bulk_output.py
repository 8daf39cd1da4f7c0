"""The scored file's shape users rely on, and the writer left to write (issue 23, point 3)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ingest.base.writers
from ingest.base.config import ReadOptions
from scoring.bulk.batch import score_path
from scoring.lifecycle.champion import load_version

BATCHES = ReadOptions(batch_rows=100)
FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
ADDED = {"prediction": pa.float64(), "model_version": pa.string(), "error": pa.string()}


@pytest.fixture
def model(registry, trained):
    return load_version(registry, trained)


@pytest.fixture
def sample(tmp_path, diabetes) -> tuple[Path, pd.DataFrame]:
    """Three copies of the sample as a user's CSV: an id column, then the features."""
    frame = pd.concat([diabetes[FEATURES]] * 3, ignore_index=True)
    frame.insert(0, "Customer ID", [f"c{i}" for i in range(len(frame))])
    src = tmp_path / "in.csv"
    frame.to_csv(src, index=False)
    return src, frame


def _encodings(path: Path) -> dict[str, set[str]]:
    """Each column's Parquet encodings over every row group."""
    meta = pq.ParquetFile(path).metadata
    found: dict[str, set[str]] = {}
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for c in range(group.num_columns):
            chunk = group.column(c)
            found.setdefault(chunk.path_in_schema, set()).update(chunk.encodings)
    return found


def test_the_scored_parquet_keeps_its_columns_types_values_and_encodings(tmp_path, model, sample):
    src, frame = sample
    out = tmp_path / "out.parquet"
    summary = score_path(src, out, model, read=BATCHES, fmt="parquet")
    assert (summary.rows_scored, summary.rows_failed) == (len(frame), 0)
    table = pq.read_table(out)
    # The user's columns under their names, the three added ones, their types: what readers use.
    assert table.schema.names == [*frame.columns, *ADDED]
    assert table.schema.field("Customer ID").type == pa.string()
    for name, kind in ADDED.items():
        assert table.schema.field(name).type == kind, name
    # Input values as given; one version on every row; no error; the model's predictions.
    assert table.column("Customer ID").to_pylist() == frame["Customer ID"].tolist()
    for name in FEATURES:
        np.testing.assert_array_equal(table.column(name).to_numpy(), frame[name].to_numpy())
    assert set(table.column("model_version").to_pylist()) == {model.version}
    assert table.column("error").null_count == len(frame)
    expected = model.pipeline.predict(frame[FEATURES].to_numpy())
    np.testing.assert_allclose(table.column("prediction").to_numpy(), expected, rtol=1e-12)
    # Bit for bit what one thread writes.
    one = tmp_path / "one.parquet"
    score_path(src, one, model, read=BATCHES, fmt="parquet", pipelined=False)
    assert pq.read_table(one).equals(table)
    # The two text columns are dictionary-encoded, the cheapest form for one repeated value and
    # a column of nulls (measured at 5M rows: 29 KB of a 440 MB file; plain: +1.2 MB, no faster);
    # numbers never are (a dictionary over measured floats is built, found useless, dropped).
    encodings = _encodings(out)
    for name in ("model_version", "error"):
        assert "RLE_DICTIONARY" in encodings[name], name
    for name in [*FEATURES, "prediction"]:
        assert "RLE_DICTIONARY" not in encodings[name] and "PLAIN" in encodings[name], name


def _on_threads(write: Any, seen: set[int]) -> Any:
    """Wrap an output writer so that it notes the threads its batches are taken on."""

    def noting(batches: Iterable[Any], path: Path) -> Any:
        def taken() -> Iterator[Any]:
            for batch in batches:
                seen.add(threading.get_ident())
                yield batch

        return write(taken(), path)

    return noting


@pytest.mark.parametrize("pipelined", [True, False])
def test_the_drift_hook_sees_every_batch_in_order_beside_the_writer(
    tmp_path, model, sample, monkeypatch, pipelined
):
    src, frame = sample
    writing: set[int] = set()
    monkeypatch.setattr(
        ingest.base.writers,
        "write_parquet",
        _on_threads(ingest.base.writers.write_parquet, writing),
    )
    observed: list[str] = []
    observing: set[int] = set()

    def observe(batch: pa.RecordBatch, originals: Any) -> None:
        observing.add(threading.get_ident())
        observed.extend(batch.column(batch.schema.get_field_index("Customer ID")).to_pylist())

    out = tmp_path / "out.parquet"
    score_path(src, out, model, read=BATCHES, fmt="parquet", pipelined=pipelined, observe=observe)
    assert observed == frame["Customer ID"].tolist()  # every row once, in order
    assert writing, "the writer wrapper was not used"
    if pipelined:
        # The writer is the one stage that cannot use a second core: it only writes.
        assert not observing & writing
    else:
        assert observing == writing == {threading.get_ident()}
