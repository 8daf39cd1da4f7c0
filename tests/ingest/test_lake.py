"""The lake: atomic writes, stale temporaries, footer schemas, conflicts, unified reads."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.base.errors import TypeConflictError
from ingest.base.formats import Format
from ingest.lake.store import (
    lake_schema,
    read_lake,
    remove_stale_temporaries,
    write_parquet_atomic,
)
from ingest.pipeline.normalize import normalize_file
from ingest.readers import RawTable


def _batches(*tables: dict) -> list[pa.RecordBatch]:
    return [pa.record_batch(t) for t in tables]


def test_write_is_atomic_and_refuses_overwrite(tmp_path: Path) -> None:
    dest = tmp_path / "a.parquet"
    batches = _batches({"x": [1, 2]}, {"x": [3]})
    assert write_parquet_atomic(batches, batches[0].schema, dest) == 3
    assert pq.read_table(dest).column("x").to_pylist() == [1, 2, 3]
    with pytest.raises(FileExistsError):
        write_parquet_atomic(batches, batches[0].schema, dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.parquet"]


def test_failure_removes_temporary(tmp_path: Path) -> None:
    def failing():
        yield pa.record_batch({"x": [1]})
        raise RuntimeError("reader broke")

    with pytest.raises(RuntimeError):
        write_parquet_atomic(failing(), pa.schema([("x", pa.int64())]), tmp_path / "a.parquet")
    assert list(tmp_path.iterdir()) == []


def test_widening_rewrites_earlier_rows(tmp_path: Path) -> None:
    schema = pa.schema([("x", pa.int64()), ("e", pa.null())])
    batches = _batches(
        {"x": [1], "e": pa.nulls(1)}, {"x": [2.5], "e": ["t"]}, {"x": ["word"], "e": [None]}
    )
    dest = tmp_path / "w.parquet"
    assert write_parquet_atomic(batches, schema, dest) == 3
    table = pq.read_table(dest)
    assert table.schema == pa.schema([("x", pa.string()), ("e", pa.string())])
    assert table.column("x").to_pylist() == ["1", "2.5", "word"]
    assert [p.name for p in tmp_path.iterdir()] == ["w.parquet"]


def test_remove_stale_temporaries(tmp_path: Path) -> None:
    (tmp_path / ".a.parquet.abc123.tmp").write_bytes(b"half")
    (tmp_path / "keep.parquet").write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path) == [tmp_path / ".a.parquet.abc123.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["keep.parquet"]
    assert remove_stale_temporaries(tmp_path / "missing") == []


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    pq.write_table(
        pa.table({"a": pa.array([1], pa.int32()), "s": ["x"], "t": [1]}), tmp_path / "1.parquet"
    )
    pq.write_table(
        pa.table({"a": [2.5], "s": [None], "b": [True], "t": ["late"]}), tmp_path / "2.parquet"
    )
    (tmp_path / ".3.parquet.ffff.tmp").write_bytes(b"half-written")
    return tmp_path


def test_lake_schema_and_read_lake(lake: Path) -> None:
    expected = pa.schema(
        [("a", pa.float64()), ("s", pa.string()), ("t", pa.string()), ("b", pa.bool_())]
    )
    # Checked as numbers: the one text file (an older version's) does not refuse clean drops.
    assert lake_schema(lake) == expected.set(2, pa.field("t", pa.int64()))
    table = read_lake(lake)
    assert table.schema == expected
    assert table.to_pylist() == [
        {"a": 1.0, "s": "x", "t": "1", "b": None},
        {"a": 2.5, "s": None, "t": "late", "b": True},
    ]
    assert read_lake(lake, columns=["b"]).column_names == ["b"]
    with pytest.raises(KeyError):
        read_lake(lake, columns=["nope"])


def test_empty_lake(tmp_path: Path) -> None:
    assert lake_schema(tmp_path) is None
    assert read_lake(tmp_path).num_columns == 0
    assert read_lake(tmp_path / "missing").num_rows == 0


@pytest.mark.parametrize(
    ("lake_type", "values", "message"),
    [
        (pa.int64(), pa.array([1.5]), None),
        (pa.int32(), pa.array([2]), None),
        (pa.null(), pa.array(["x"]), None),
        (pa.string(), pa.array([None], pa.string()), None),
        (pa.timestamp("s"), pa.array(["2024-01-05"]), None),
        (
            pa.float64(),
            pa.array(["abc"]),
            "column 'c' holds text ('abc') at row 1 in this file but numbers in the files "
            "already in the lake; fix the values that are not numbers, or rename the column if "
            "it means something else",
        ),
        (
            pa.string(),
            pa.array([3]),
            "column 'c' holds whole numbers (3) at row 1 in this file but text in the files "
            "already in the lake; fix the values that are not text, or rename the column if it "
            "means something else",
        ),
        (
            pa.timestamp("us"),
            pa.array([True]),
            "column 'c' holds true/false (True) at row 1 in this file but dates in the files "
            "already in the lake; fix the values that are not dates, or rename the column if it "
            "means something else",
        ),
    ],
)
def test_a_training_file_must_fit_the_lake_s_types(lake_type, values, message) -> None:
    batch = pa.RecordBatch.from_arrays([values, pa.array([1])], names=["c", "new"])
    raw = RawTable(Format.PARQUET, None, None, ["c", "new"], iter([batch]))
    table = normalize_file(raw, 1, strict=True)
    table.expected = pa.schema([("c", lake_type), ("old", pa.int64())])
    if message is None:
        assert sum(b.num_rows for b in table.batches) == 1
        return
    with pytest.raises(TypeConflictError) as caught:
        list(table.batches)
    assert caught.value.message == message
    assert (caught.value.column, caught.value.row) == ("c", 1)
