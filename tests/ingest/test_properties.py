"""Property: a small table written as CSV, JSON Lines or XLSX normalizes to one lake table."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ingest._tables import read, xlsx_bytes

NAME = st.text(alphabet="aBzé -.()1_€", min_size=1, max_size=8).filter(
    lambda s: any(c.isalnum() for c in s)
)
INTS = st.integers(-1_000_000, 1_000_000)
FLOATS = st.integers(-100_000, 100_000).map(lambda i: i + 0.25)  # exact in binary, never whole
TEXT = st.text(alphabet="abxé ,\"'", max_size=6).map(lambda s: "t" + s)


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[str], list[list[object]]]:
    names = draw(st.lists(NAME, min_size=2, max_size=5, unique_by=str.strip))
    kinds = [draw(st.sampled_from([INTS, FLOATS, TEXT])) for _ in names]
    n_rows = draw(st.integers(1, 12))
    rows = [
        [draw(st.one_of(st.none(), kind) if draw(st.booleans()) else kind) for kind in kinds]
        for _ in range(n_rows)
    ]
    rows[0] = [draw(kind) for kind in kinds]  # at least one row with values
    return names, rows


def as_csv(names: list[str], rows: list[list[object]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return out.getvalue().encode()


def as_jsonl(names: list[str], rows: list[list[object]]) -> bytes:
    lines = [json.dumps(dict(zip(names, row, strict=True)), ensure_ascii=False) for row in rows]
    return ("\n".join(lines) + "\n").encode()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_csv_jsonl_xlsx_normalize_alike(table: tuple[list[str], list[list[object]]]) -> None:
    names, rows = table
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        results = []
        for name, content in [
            ("t.csv", as_csv(names, rows)),
            ("t.jsonl", as_jsonl(names, rows)),
            ("t.xlsx", xlsx_bytes([names, *rows])),
        ]:
            path = folder / name
            path.write_bytes(content)
            results.append(read(path))
    csv_table, jsonl_table, xlsx_table = results
    assert csv_table.schema == jsonl_table.schema == xlsx_table.schema
    assert csv_table.to_pylist() == jsonl_table.to_pylist() == xlsx_table.to_pylist()
