"""The JSON reader takes every table layout pandas' ``DataFrame.to_json`` writes but "values".

Files are written by real pandas; a property test checks that each layout of one frame reads to
the same columns and rows as its ``orient="records"`` file.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.base.errors import MalformedFileError
from tests.ingest._tables import read_raw

ORIENTS = ["records", "split", "columns", "index", "table"]
FRAME = pd.DataFrame(
    {
        "Age": [31, 45, 27],
        "City": ["Oslo", None, "Lyon"],
        "Score": [0.5, float("nan"), 2.25],
    }
)
EXPECTED = [
    {"Age": 31, "City": "Oslo", "Score": 0.5},
    {"Age": 45, "City": None, "Score": None},
    {"Age": 27, "City": "Lyon", "Score": 2.25},
]


def rows_of(path: Path) -> tuple[list[str], list[dict]]:
    raw, table = read_raw(path)
    return raw.columns, table.to_pylist()


@pytest.mark.parametrize("orient", ORIENTS)
def test_each_pandas_layout_reads_as_the_table(tmp_path: Path, orient: str) -> None:
    path = tmp_path / f"{orient}.json"
    FRAME.to_json(path, orient=orient)
    columns, rows = rows_of(path)
    assert columns == ["Age", "City", "Score"]
    assert rows == EXPECTED


def test_pandas_default_to_json_is_read(tmp_path: Path) -> None:
    path = tmp_path / "default.json"
    FRAME.to_json(path)  # orient="columns": {"Age": {"0": 31, ...}, ...}
    assert path.read_text().startswith('{"Age":{"0":31')
    assert rows_of(path) == (["Age", "City", "Score"], EXPECTED)


@pytest.mark.parametrize("orient", ORIENTS)
def test_columns_named_like_the_layout_keys(tmp_path: Path, orient: str) -> None:
    frame = pd.DataFrame({"columns": [1, 2], "data": ["a", "b"], "schema": [0.5, 1.5]})
    path = tmp_path / "keys.json"
    frame.to_json(path, orient=orient)
    assert rows_of(path) == (list(frame.columns), frame.to_dict(orient="records"))


def test_a_named_index_in_the_table_layout_stays_a_column(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    FRAME.set_index("City").to_json(path, orient="table")
    columns, _ = rows_of(path)
    assert columns == ["City", "Age", "Score"]


@pytest.mark.parametrize(
    ("doc", "found"),
    [
        ('{"Age": [31, 45], "City": ["Oslo", "Lyon"]}', "an object without a single array"),
        ('{"Age": {"0": 31}, "City": "Oslo"}', "an object without a single array"),
        ('"Oslo"', "a string"),
    ],
)
def test_other_layouts_are_refused_naming_every_accepted_one(
    tmp_path: Path, doc: str, found: str
) -> None:
    path = tmp_path / "x.json"
    path.write_text(doc)
    with pytest.raises(MalformedFileError) as info:
        read_raw(path)
    message = info.value.message
    assert message.startswith(f"the JSON is {found}")
    for orient in ORIENTS:
        assert f'orient="{orient}"' in message, orient


NAME = st.text(alphabet="aBzé -.()1_", min_size=1, max_size=8).filter(
    lambda s: any(c.isalnum() for c in s)
)
VALUES = {
    "int": st.integers(-1_000_000, 1_000_000),
    "float": st.integers(-100_000, 100_000).map(lambda i: i + 0.25),
    "text": st.text(alphabet="abxé ,\"'{}[]", max_size=6),
}


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    names = draw(st.lists(NAME, min_size=1, max_size=5, unique=True))
    n = draw(st.integers(1, 12))
    data = {}
    for name in names:
        kind = draw(st.sampled_from(sorted(VALUES)))
        values = draw(st.lists(VALUES[kind], min_size=n, max_size=n))
        data[name] = pd.Series(values, dtype=object if kind == "text" else None)
    return pd.DataFrame(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=frames(), orient=st.sampled_from(ORIENTS[1:]))
def test_every_layout_reads_like_records(frame: pd.DataFrame, orient: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        records, other = Path(folder) / "records.json", Path(folder) / f"{orient}.json"
        frame.to_json(records, orient="records")
        frame.to_json(other, orient=orient)
        assert rows_of(other) == rows_of(records)
        assert rows_of(records)[0] == list(frame.columns)
