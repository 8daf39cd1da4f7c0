"""The pipelined bulk scorer: same output as one thread, failures end the run cleanly."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import ingest.base.writers
from ingest.base.config import ReadOptions
from ingest.base.errors import IngestError, MalformedFileError, RaggedRowsError
from ingest.readers.csv_chunks import parallel_batches
from scoring.bulk.batch import TooManyRows, score_path
from scoring.bulk.pipeline import Stage, close_stages
from scoring.lifecycle.champion import load_version

BATCHES = ReadOptions(batch_rows=100)


@pytest.fixture
def model(registry, trained):
    return load_version(registry, trained)


@pytest.fixture
def frame(diabetes) -> pd.DataFrame:
    """Five copies of the sample (45 batches of 50), users' header spelling, an id column."""
    frame = pd.concat([diabetes.drop(columns="target")] * 5, ignore_index=True)
    frame = frame.rename(columns=str.upper)
    frame.insert(0, "Customer ID", [f"c{i}" for i in range(len(frame))])
    return frame


def _threads() -> set[threading.Thread]:
    return set(threading.enumerate())


def _left_behind(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def failing_on_the_third_batch(write: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an output writer so that its input fails with a full disk at the third batch."""

    def failing(batches: Iterable[Any], path: Path) -> Any:
        def three() -> Iterator[Any]:
            for i, batch in enumerate(batches):
                if i == 2:
                    raise OSError("disk full")
                yield batch

        return write(three(), path)

    return failing


@pytest.mark.parametrize("kind", ["csv", "parquet"])
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_pipelined_output_is_identical_to_one_thread(tmp_path, model, frame, kind, fmt):
    src = tmp_path / f"in.{kind}"
    frame.to_csv(src, index=False) if kind == "csv" else frame.to_parquet(src, index=False)
    one = tmp_path / f"one.{fmt}"
    three = tmp_path / f"three.{fmt}"
    a = score_path(src, one, model, read=BATCHES, fmt=fmt, pipelined=False)
    b = score_path(src, three, model, read=BATCHES, fmt=fmt)
    assert (a.rows_scored, a.rows_failed) == (b.rows_scored, b.rows_failed) == (len(frame), 0)
    if fmt == "csv":
        assert one.read_bytes() == three.read_bytes()
    else:
        assert pq.read_table(one).equals(pq.read_table(three))
    out = pq.read_table(three) if fmt == "parquet" else pacsv.read_csv(three)
    assert out.column("Customer ID").to_pylist() == frame["Customer ID"].tolist()  # in order


def test_a_reader_error_mid_file_ends_the_run_with_it(tmp_path, model, frame):
    src = tmp_path / "in.csv"
    text = frame.to_csv(index=False).splitlines()
    text[1500] += ",1,2"  # a ragged row far past the first block and the first batches
    src.write_text("\n".join(text) + "\n")
    before = _threads()
    with pytest.raises(RaggedRowsError) as caught:
        score_path(src, tmp_path / "out.parquet", model, read=BATCHES, fmt="parquet")
    assert caught.value.row == 1500
    assert _threads() == before
    assert not (tmp_path / "out.parquet").exists()
    assert _left_behind(tmp_path) == []


def test_a_writer_error_mid_file_ends_the_run_with_it(tmp_path, model, frame, monkeypatch):
    src = tmp_path / "in.csv"
    frame.to_csv(src, index=False)
    failing = failing_on_the_third_batch(ingest.base.writers.write_csv)
    monkeypatch.setattr(ingest.base.writers, "write_csv", failing)
    before = _threads()
    with pytest.raises(OSError, match="disk full"):
        score_path(src, tmp_path / "out.csv", model, read=BATCHES, fmt="csv")
    assert _threads() == before
    assert not (tmp_path / "out.csv").exists()
    assert _left_behind(tmp_path) == []


def test_the_row_cap_stops_the_stages(tmp_path, model, frame):
    src = tmp_path / "in.parquet"
    frame.to_parquet(src, index=False)
    before = _threads()
    with pytest.raises(TooManyRows):
        score_path(src, tmp_path / "out.csv", model, read=BATCHES, max_rows=250)
    assert _threads() == before
    assert _left_behind(tmp_path) == []


@pytest.mark.parametrize("row", [2, 1700])
def test_a_word_in_a_typed_numeric_column_fails_only_its_row(tmp_path, model, frame, row):
    """Row 2 is in the first block, row 1700 in a later chunk: either way only that row fails.

    The column is parsed as float64; the value that does not parse turns the column to text
    from its chunk on (the rest of the file), where ``ingest.pipeline.normalize`` types it again.
    """
    frame = frame.astype({"BMI": object})
    frame.loc[row, "BMI"] = "tall"
    src = tmp_path / "in.csv"
    frame.to_csv(src, index=False)
    out = tmp_path / "out.csv"
    summary = score_path(src, out, model, read=BATCHES, fmt="csv")
    assert (summary.rows_scored, summary.rows_failed) == (len(frame) - 1, 1)
    scored = pd.read_csv(out, keep_default_na=False)
    assert scored.loc[row, "error"] == "bmi: expected a number, got 'tall'"
    assert scored.loc[row, "prediction"] == ""
    assert (scored.drop(index=row)["error"] == "").all()
    serial = tmp_path / "serial.csv"
    score_path(src, serial, model, read=BATCHES, fmt="csv", pipelined=False)
    assert serial.read_bytes() == out.read_bytes()


def test_chunks_cut_at_line_ends_parse_like_the_streaming_reader(tmp_path, frame):
    src = tmp_path / "in.csv"
    frame.to_csv(src, index=False)
    whole = pacsv.read_csv(src)
    first = pacsv.open_csv(src).schema
    got = pa.Table.from_batches(
        parallel_batches(
            pa.input_stream(str(src)),
            first,
            delimiter=",",
            decimal=".",
            failure=lambda exc: MalformedFileError(str(exc)),
            chunk_bytes=4096,  # about 25 chunks, most cut mid-line
        )
    )
    assert got.num_rows == len(frame)
    assert got.equals(whole)


def test_a_stage_hands_its_error_over_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise IngestError("bad block")

    before = _threads()
    stage = Stage(items(), "test-stage", depth=1)
    seen = []
    with pytest.raises(IngestError, match="bad block"):
        for item in stage:
            seen.append(item)
    close_stages(stage)
    assert seen == [1, 2]
    assert _threads() == before


def test_closing_a_stage_stops_a_producer_blocked_on_a_full_queue():
    produced = []

    def endless():
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    before = _threads()
    stage = Stage(endless(), "test-stage", depth=2)
    first = next(iter(stage))
    close_stages(stage)
    assert first == 0
    assert _threads() == before
    assert len(produced) <= 4  # the queue bounded how far it ran ahead
