"""Bulk scoring on every core: CSV chunks parsed side by side, one output for any core count."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import ingest.base.writers
from ingest.base.config import ReadOptions
from ingest.base.errors import MalformedFileError, RaggedRowsError
from ingest.readers.csv_chunks import CHUNK_BYTES, parallel_batches
from scoring.bulk.batch import score_path
from scoring.lifecycle.champion import load_version

from .test_batch_pipeline import _left_behind, _threads, failing_on_the_third_batch

BATCHES = ReadOptions(batch_rows=10_000)
FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
WAIT = 30.0  # seconds a parse waits for a second one to start (generous on a loaded machine)


@pytest.fixture
def model(registry, trained):
    return load_version(registry, trained)


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """A CSV of three parallel chunks and more: ids in order, the sample's features, noisy."""
    rng = np.random.default_rng(3)
    rows = 3 * CHUNK_BYTES // 170
    frame = pd.DataFrame(rng.normal(0.0, 0.05, size=(rows, len(FEATURES))), columns=FEATURES)
    frame.insert(0, "Customer ID", [f"c{i}" for i in range(rows)])
    path = tmp_path_factory.mktemp("big") / "big.csv"
    frame.to_csv(path, index=False)
    assert path.stat().st_size > 3 * CHUNK_BYTES
    return path


@pytest.fixture
def cores():
    """Set pyarrow's CPU count (the parsing threads) for one test, restored after."""
    before = pa.cpu_count()
    yield pa.set_cpu_count
    pa.set_cpu_count(before)


def _batches(src: Path, workers: int, chunk_bytes: int) -> list[pa.RecordBatch]:
    """Parse src in chunks on ``workers`` threads, every column pinned to float64."""
    schema = pa.schema([(name, pa.float64()) for name in pacsv.open_csv(src).schema.names])
    return list(
        parallel_batches(
            pa.input_stream(str(src)),
            schema,
            delimiter=",",
            decimal=".",
            failure=lambda exc: MalformedFileError(str(exc)),
            chunk_bytes=chunk_bytes,
            workers=workers,
        )
    )


def test_batches_are_the_same_for_any_number_of_threads(tmp_path, diabetes):
    """A word past the first chunks turns its column to text from its chunk on, on any count.

    With several threads the chunks after it were parsed ahead as numbers; they must be parsed
    again as text, or the batches would depend on how many threads parsed them.
    """
    frame = pd.concat([diabetes] * 6, ignore_index=True).astype({"bmi": object})
    frame.insert(0, "id", range(len(frame)))
    frame.loc[1700, "bmi"] = "tall"
    src = tmp_path / "in.csv"
    frame.to_csv(src, index=False)
    one = _batches(src, 1, 4096)
    assert len(one) > 40
    turned = next(i for i, b in enumerate(one) if b.schema.field("bmi").type == pa.string())
    assert 0 < turned < len(one) - 3  # numbers before, text from the word's chunk to the end
    assert all(b.schema.field("bmi").type == pa.string() for b in one[turned:])
    for workers in (2, 3, 8):
        many = _batches(src, workers, 4096)
        assert [b.num_rows for b in many] == [b.num_rows for b in one]
        for a, b in zip(one, many, strict=True):
            assert a.equals(b)


def test_two_chunks_are_parsed_at_once(big, monkeypatch):
    """The first chunk's parse waits for a second to start: it does unless chunks go one by one."""
    real = pacsv.read_csv
    lock = threading.Lock()
    running = [0]
    most = [0]
    second = threading.Event()

    def observed(*args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            first = most[0] == 1
            if running[0] >= 2:
                second.set()
        try:
            if first:
                second.wait(WAIT)
            return real(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(pacsv, "read_csv", observed)
    before = _threads()
    batches = _batches(big, 2, CHUNK_BYTES)
    assert most[0] >= 2
    assert sum(b.num_rows for b in batches) == pd.read_csv(big).shape[0]
    assert _threads() == before


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_scored_output_is_identical_on_one_two_or_four_cores(tmp_path, model, big, cores, fmt):
    outputs = []
    for count in (1, 2, 4):
        cores(count)
        out = tmp_path / f"out{count}.{fmt}"
        summary = score_path(big, out, model, read=BATCHES, fmt=fmt)
        assert summary.rows_failed == 0
        outputs.append(out)
    serial = tmp_path / f"serial.{fmt}"
    score_path(big, serial, model, read=BATCHES, fmt=fmt, pipelined=False)
    outputs.append(serial)
    if fmt == "csv":
        assert len({out.read_bytes() for out in outputs}) == 1
    else:
        tables = [pq.read_table(out) for out in outputs]
        assert all(t.equals(tables[0]) for t in tables)
    ids = (pq.read_table(outputs[0]) if fmt == "parquet" else pacsv.read_csv(outputs[0])).column(
        "Customer ID"
    )
    assert ids.to_pylist() == [f"c{i}" for i in range(len(ids))]  # in file order


def test_a_parquet_writer_error_with_chunks_in_flight_ends_the_run(
    tmp_path, model, big, monkeypatch
):
    """The writer fails while chunks are being parsed: its error, no thread left, no temporary."""
    failing = failing_on_the_third_batch(ingest.base.writers.write_parquet)
    monkeypatch.setattr(ingest.base.writers, "write_parquet", failing)
    before = _threads()
    with pytest.raises(OSError, match="disk full"):
        score_path(big, tmp_path / "out.parquet", model, read=BATCHES, fmt="parquet")
    assert _threads() == before
    assert not (tmp_path / "out.parquet").exists()
    assert _left_behind(tmp_path) == []


def test_a_ragged_row_in_a_later_chunk_ends_the_run_with_it(tmp_path, model, big):
    lines = big.read_text().splitlines()
    at = 2 * CHUNK_BYTES // 170  # past the first chunk, while others are parsed ahead
    lines[at] += ",1,2"
    src = tmp_path / "in.csv"
    src.write_text("\n".join(lines) + "\n")
    before = _threads()
    with pytest.raises(RaggedRowsError) as caught:
        score_path(src, tmp_path / "out.parquet", model, read=BATCHES, fmt="parquet")
    assert caught.value.row == at
    assert _threads() == before
    assert not (tmp_path / "out.parquet").exists()
    assert _left_behind(tmp_path) == []
