"""Normalization: names, value parsing, empty rows, provenance, widening."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pytest

from ingest.base.errors import NoRowsError
from ingest.base.formats import Format
from ingest.pipeline.normalize import (
    infer_type,
    normalize_file,
    normalize_names,
    parse_numbers,
    parse_timestamps,
)
from ingest.readers import RawTable
from tests.ingest._tables import read, write


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ([], []),
        (["Name", " Amount (€) ", "Date-Of-Birth"], ["name", "amount", "date_of_birth"]),
        (["a", "A", "a "], ["a", "a_2", "a_3"]),
        (["a", "a", "a_2"], ["a", "a_3", "a_2"]),
        (["", None, "  ", "___"], ["column_1", "column_2", "column_3", "column_4"]),
        (["_id", "__x__", "x__y"], ["id", "x", "x_y"]),
        (["Ｎａｍｅ", "ﬁle", "Straße", "Größe µ"], ["name", "file", "straße", "größe_μ"]),
        (["日付", "温度°C"], ["日付", "温度_c"]),
        (["column_2", ""], ["column_2", "column_2_2"]),
        ([1, 2.5], ["1", "2_5"]),
    ],
)
def test_normalize_names(names: list[object], expected: list[str]) -> None:
    assert normalize_names(names) == expected
    assert normalize_names(names) == normalize_names(names)  # deterministic


@pytest.mark.parametrize(
    ("values", "decimal", "expected", "type_"),
    [
        (["1", " 2 ", None], ".", [1, 2, None], pa.int64()),
        (["1.5", "-2", "1e3"], ".", [1.5, -2.0, 1000.0], pa.float64()),
        (["1,234.5", "12"], ".", [1234.5, 12.0], pa.float64()),
        (["1.234,5", "0,5"], ",", [1234.5, 0.5], pa.float64()),
        (["1.234", "5"], ",", [1234, 5], pa.int64()),
        (["1,23,4"], ".", None, None),
        (["abc"], ".", None, None),
    ],
)
def test_parse_numbers(values, decimal, expected, type_) -> None:
    got = parse_numbers(pa.array(values, pa.string()), decimal)
    if expected is None:
        assert got is None
    else:
        assert got.to_pylist() == expected and got.type == type_


def test_parse_timestamps() -> None:
    got = parse_timestamps(pa.array(["2024-01-02", "2024-01-02T03:04:05", None]))
    assert got.to_pylist() == [datetime(2024, 1, 2), datetime(2024, 1, 2, 3, 4, 5), None]
    zoned = parse_timestamps(pa.array(["2024-01-02T03:04:05+02:00", "2024-01-02T00:00:00Z"]))
    assert zoned.to_pylist() == [datetime(2024, 1, 2, 1, 4, 5), datetime(2024, 1, 2)]
    assert parse_timestamps(pa.array(["02/01/2024"])) is None


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["TRUE", "false", None], pa.bool_()),
        (["", "  ", None], pa.null()),
        (["1", "2"], pa.int64()),
        (["1", "2.5"], pa.float64()),
        (["2024-01-01", "2024-02-01 10:00"], pa.timestamp("us")),
        (["x", "1"], pa.string()),
        ([1, 2], pa.int64()),
        ([1.5, None], pa.float64()),
    ],
)
def test_infer_type(values, expected) -> None:
    assert infer_type(pa.array(values)) == expected


def _raw(batches: list[pa.RecordBatch], columns: list[str]) -> RawTable:
    return RawTable(Format.CSV, "utf-8", ",", columns, iter(batches))


def test_normalize_file_drops_empty_rows_and_numbers_rows() -> None:
    batch = pa.record_batch({"A b": ["x", None, " ", "y"], "N": [1, None, None, 3]})
    table = normalize_file(_raw([batch], ["A b", "N"]), 42)
    assert table.column_map == {"A b": "a_b", "N": "n"}
    assert table.schema.names == ["a_b", "n", "_file_id", "_row"]
    rows = [r for b in table.batches for r in b.to_pylist()]
    assert rows == [
        {"a_b": "x", "n": 1, "_file_id": 42, "_row": 1},
        {"a_b": "y", "n": 3, "_file_id": 42, "_row": 4},
    ]
    assert table.rows_written == 2


def test_repeated_original_names_are_all_mapped() -> None:
    batch = pa.RecordBatch.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"])
    table = normalize_file(_raw([batch], ["a", "a"]), 1)
    assert table.column_map == {"a": "a", "a (2)": "a_2"}


def test_later_batches_widen_and_schema_reports_it() -> None:
    first = pa.record_batch({"x": [1, 2], "e": pa.nulls(2, pa.string())})
    second = pa.record_batch({"x": ["2.5", "3"], "e": ["late", None]})
    table = normalize_file(_raw([first, second], ["x", "e"]), 1)
    assert table.schema.field("x").type == pa.int64()
    batches = list(table.batches)
    assert table.schema.field("x").type == pa.float64()
    assert table.schema.field("e").type == pa.string()
    assert batches[1].column("x").to_pylist() == [2.5, 3.0]


@pytest.mark.parametrize(
    ("batches", "message"),
    [
        ([], "the file has a header but no data rows; add at least one row below the header"),
        (
            [pa.record_batch({"a": pa.array([None, ""], pa.string())})],
            "every row of the file is empty; add at least one row with a value",
        ),
    ],
)
def test_no_rows(batches, message) -> None:
    with pytest.raises(NoRowsError) as info:
        list(normalize_file(_raw(batches, ["a"]), 1).batches)
    assert info.value.message == message


def test_csv_rows_keep_record_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "g.csv", b"a,b\n1,x\n,\n3,z\n")
    assert read(path).column("_row").to_pylist() == [1, 3]
