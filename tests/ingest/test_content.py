"""The content hash: equal tables hash alike in any dtype or batching; any real change shows."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.base.config import ReadOptions
from ingest.lake.content import ContentHash, content_hash, encode, hashed
from ingest.pipeline.normalize import normalize_file
from ingest.readers import open_table
from tests.ingest._tables import xlsx_bytes
from tests.ingest.test_properties import as_csv, as_jsonl

EPOCH = dt.datetime(2000, 1, 1)
NAMES = st.lists(
    st.text(alphabet="abcxyz_0é", min_size=1, max_size=6), min_size=1, max_size=4, unique=True
)
KINDS = ("int", "float", "text", "bool", "time")
VALUES = {
    "int": st.integers(-(2**40), 2**40),
    "float": st.integers(-100_000, 100_000).map(lambda i: i + 0.25),  # never whole
    "text": st.text(max_size=5),
    "bool": st.booleans(),
    "time": st.integers(0, 10**6).map(lambda d: EPOCH + dt.timedelta(days=d)),  # whole days
}

Table = tuple[list[str], list[str], list[list[Any]]]


@st.composite
def tables(draw: st.DrawFn, min_rows: int = 1) -> Table:
    """Draw column names, a kind per column and rows (None for a missing cell)."""
    names = draw(NAMES)
    kinds = [draw(st.sampled_from(KINDS)) for _ in names]
    n = draw(st.integers(min_rows, 12))
    rows = [
        [
            draw(st.none() | VALUES[kind]) if draw(st.booleans()) else draw(VALUES[kind])
            for kind in kinds
        ]
        for _ in range(n)
    ]
    return names, kinds, rows


NARROW = {"int": pa.int64(), "float": pa.float64(), "text": pa.string(), "bool": pa.bool_()}
NARROW["time"] = pa.timestamp("us")
# The same values in another type, as another reader would hand them over.
OTHER = {
    "int": pa.float64(),  # whole numbers from Excel come back as floats
    "float": pa.float64(),
    "text": pa.large_string(),
    "bool": pa.bool_(),
    "time": pa.date32(),  # whole days
}


def arrow(table: Table, types: dict[str, pa.DataType]) -> pa.Table:
    """Build the Arrow table with one type per kind."""
    names, kinds, rows = table
    columns = [
        pa.array([row[i] for row in rows], types[kind]).cast(types[kind])
        if types[kind] != pa.date32()
        else pa.array([None if row[i] is None else row[i].date() for row in rows], pa.date32())
        for i, kind in enumerate(kinds)
    ]
    return pa.table(columns, names=names)


def streamed(table: pa.Table, cuts: list[int]) -> str:
    """Hash a table fed as batches cut at the given row counts, as the lake writer feeds it."""
    digest = ContentHash()
    start = 0
    for cut in [*sorted(cuts), table.num_rows]:
        if cut > start:
            for batch in table.slice(start, cut - start).to_batches():
                digest.update(batch)
            start = cut
    return digest.hexdigest()


@settings(max_examples=150, deadline=None)
@given(tables(), st.data())
def test_equal_tables_hash_alike_in_any_dtype_batching_and_column_order(
    table: Table, data: st.DataObject
) -> None:
    narrow = arrow(table, NARROW)
    other = arrow(table, OTHER)
    order = data.draw(st.permutations(range(narrow.num_columns)))
    shuffled = other.select(list(order))
    cuts = data.draw(st.lists(st.integers(0, narrow.num_rows), max_size=3))
    assert content_hash(narrow) == content_hash(other) == streamed(shuffled, cuts)
    provenance = narrow.append_column("_file_id", pa.array([7] * narrow.num_rows))
    provenance = provenance.append_column("_row", pa.array(range(3, 3 + narrow.num_rows)))
    assert content_hash(provenance) == content_hash(narrow)  # ids and row numbers never count


def _changed(kind: str, value: Any) -> Any:
    """Return a value of the same kind that differs from ``value``."""
    changes = {
        "int": lambda v: 1 if v is None else v + 1,
        "float": lambda v: 0.25 if v is None else v + 0.5,
        "text": lambda v: "x" if v is None else v + "x",
        "bool": lambda v: True if v is None else not v,
        "time": lambda v: EPOCH if v is None else v + dt.timedelta(microseconds=1),
    }
    return changes[kind](value)


@settings(max_examples=150, deadline=None)
@given(tables(), st.data())
def test_any_changed_cell_changes_the_hash(table: Table, data: st.DataObject) -> None:
    names, kinds, rows = table
    r = data.draw(st.integers(0, len(rows) - 1))
    c = data.draw(st.integers(0, len(names) - 1))
    changed = [list(row) for row in rows]
    changed[r][c] = _changed(kinds[c], rows[r][c])
    assert content_hash(arrow(table, NARROW)) != content_hash(
        arrow((names, kinds, changed), NARROW)
    )
    missing = [list(row) for row in rows]
    if rows[r][c] is not None:
        missing[r][c] = None
        assert content_hash(arrow(table, NARROW)) != content_hash(
            arrow((names, kinds, missing), NARROW)
        )


@settings(max_examples=100, deadline=None)
@given(tables(), st.data())
def test_a_renamed_column_changes_the_hash(table: Table, data: st.DataObject) -> None:
    names, kinds, rows = table
    c = data.draw(st.integers(0, len(names) - 1))
    renamed = [*names[:c], names[c] + "~", *names[c + 1 :]]  # "~" is in no drawn name
    assert content_hash(arrow(table, NARROW)) != content_hash(arrow((renamed, kinds, rows), NARROW))


@settings(max_examples=100, deadline=None)
@given(tables(min_rows=2), st.data())
def test_row_order_and_row_count_change_the_hash(table: Table, data: st.DataObject) -> None:
    names, kinds, rows = table
    base = content_hash(arrow(table, NARROW))
    i, j = data.draw(st.lists(st.integers(0, len(rows) - 1), min_size=2, max_size=2, unique=True))
    if content_hash(arrow((names, kinds, [rows[i]]), NARROW)) != content_hash(
        arrow((names, kinds, [rows[j]]), NARROW)
    ):
        swapped = list(rows)
        swapped[i], swapped[j] = rows[j], rows[i]
        assert base != content_hash(arrow((names, kinds, swapped), NARROW))
    assert base != content_hash(arrow((names, kinds, rows[:-1]), NARROW))
    assert base != content_hash(arrow((names, kinds, [*rows, rows[0]]), NARROW))


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (pa.array(["true"]), pa.array([True])),  # text is not a boolean
        (pa.array(["1"]), pa.array([1])),  # text is not a number
        (pa.array(["2024-01-05"]), pa.array([dt.datetime(2024, 1, 5)])),  # nor a date
        (pa.array([""]), pa.array([None], pa.string())),  # empty text is not missing
        (pa.array(["ab", "c"]), pa.array(["a", "bc"])),  # text bytes split by their lengths
        (pa.array([0]), pa.array([None], pa.int64())),  # zero is not missing
        (pa.array([1.5]), pa.array([1])),
        (pa.array([2**53 + 1]), pa.array([float(2**53)])),  # no rounding through floats
    ],
)
def test_values_that_only_look_alike_hash_apart(left: pa.Array, right: pa.Array) -> None:
    assert content_hash(pa.table({"a": left})) != content_hash(pa.table({"a": right}))


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (pa.array([3, None]), pa.array([3.0, float("nan")])),  # NaN is missing, 3.0 is 3
        (pa.array([0]), pa.array([-0.0])),
        (pa.array([5], pa.int8()), pa.array([5], pa.uint64())),
        (
            pa.array([dt.datetime(2024, 1, 5, 12)]),
            pa.array([dt.datetime(2024, 1, 5, 12)], pa.timestamp("ms")),
        ),
        (
            pa.array([dt.datetime(2024, 1, 5, 12)]),
            pa.array([dt.datetime(2024, 1, 5, 12, tzinfo=dt.UTC)], pa.timestamp("us", "UTC")),
        ),
        (pa.array(["é", None, "x"]).slice(1), pa.array([None, "x"])),  # a sliced array
        (pa.array([None]), pa.array([None], pa.string())),
    ],
)
def test_values_that_are_alike_hash_alike(left: pa.Array, right: pa.Array) -> None:
    assert content_hash(pa.table({"a": left})) == content_hash(pa.table({"a": right}))


def test_encode_is_nine_bytes_a_value_and_the_text_apart() -> None:
    records, text = encode(pa.array(["ab", None, "cde"]))
    assert records.dtype.itemsize == 9 and len(records) == 3
    assert text is not None and bytes(text) == b"abcde"


def test_batches_must_keep_their_columns() -> None:
    digest = ContentHash()
    digest.update(pa.record_batch({"a": [1]}))
    with pytest.raises(ValueError, match="differ"):
        digest.update(pa.record_batch({"b": [1]}))


def test_hashed_passes_batches_through_unchanged() -> None:
    batches = pa.table({"a": [1, 2, 3]}).to_batches(max_chunksize=1)
    digest = ContentHash()
    assert list(hashed(iter(batches), digest)) == batches
    assert digest.hexdigest() == content_hash(pa.table({"a": [1, 2, 3]}))


# -- the same table in every accepted format ----------------------------------------------------

FORMAT_VALUES = {
    "int": st.integers(-1_000_000, 1_000_000),
    "float": st.integers(-100_000, 100_000).map(lambda i: i + 0.25),
    "whole": st.integers(-100_000, 100_000).map(float),  # "3.0" in CSV and JSON, 3 from Excel
    "text": st.text(alphabet="abxé ,\"'", max_size=6).map(lambda s: "t" + s),
}


@st.composite
def plain_tables(draw: st.DrawFn) -> tuple[list[str], list[list[object]]]:
    """Draw a table every format can carry: headers, ints, floats and text, some missing."""
    names = draw(
        st.lists(
            st.sampled_from(["id", "Age", "bmi x", "Name", "s5"]),
            min_size=1,
            max_size=4,
            unique=True,
        )
    )
    kinds = [draw(st.sampled_from(sorted(FORMAT_VALUES))) for _ in names]
    n = draw(st.integers(1, 10))
    rows = [[draw(st.none() | FORMAT_VALUES[k]) for k in kinds] for _ in range(n)]
    rows[0] = [draw(FORMAT_VALUES[k]) for k in kinds]
    return names, rows


def _parquet(names: list[str], rows: list[list[object]]) -> bytes:
    """Write the table as Parquet, each column typed from its values."""
    columns = {name: [row[i] for row in rows] for i, name in enumerate(names)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.parquet"
        pq.write_table(pa.table(columns), path)
        return path.read_bytes()


def file_hash(path: Path) -> str:
    """Read, normalize and hash a file the way the intake does while writing its lake file."""
    table = normalize_file(open_table(path, ReadOptions()), 1)
    digest = ContentHash()
    for _ in hashed(table.batches, digest):
        pass
    return digest.hexdigest()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plain_tables())
def test_the_same_table_hashes_alike_in_every_format(
    table: tuple[list[str], list[list[object]]],
) -> None:
    names, rows = table
    records = [dict(zip(names, row, strict=True)) for row in rows]
    files = {
        "t.csv": as_csv(names, rows),
        "t.jsonl": as_jsonl(names, rows),
        "t.json": json.dumps(records).encode(),
        "t.xlsx": xlsx_bytes([names, *rows]),
        "t.parquet": _parquet(names, rows),
    }
    with tempfile.TemporaryDirectory() as tmp:
        hashes = {}
        for name, content in files.items():
            path = Path(tmp) / name
            path.write_bytes(content)
            hashes[name] = file_hash(path)
    assert len(set(hashes.values())) == 1, hashes
