"""Readers: every accepted shape reads to the same values; every bad file gets its exact error."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import random
import shutil
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.base.config import ReadOptions
from ingest.base.errors import (
    EmptyFileError,
    FormatMismatchError,
    IngestError,
    MalformedFileError,
    NoRowsError,
    RaggedRowsError,
    SheetNotFoundError,
    TooManyColumnsError,
    ZipBombError,
)
from ingest.base.formats import Format
from ingest.readers import open_table, sniff_decimal, sniff_delimiter
from tests.ingest._tables import (
    DATA,
    data_rows,
    declared_size_bomb,
    ratio_bomb,
    read,
    read_raw,
    write,
    xlsx_bytes,
)

EXPECTED = [
    {"name": "José", "amount": 1.5, "count": 3},
    {"name": "été €", "amount": -2.25, "count": 4},
]


@pytest.mark.parametrize(
    ("name", "content", "encoding", "delimiter"),
    [
        ("a.csv", "Name,Amount,Count\nJosé,1.5,3\nété €,-2.25,4\n".encode(), "utf-8", ","),
        (
            "a.csv",
            "\ufeffName,Amount,Count\nJosé,1.5,3\nété €,-2.25,4\n".encode(),
            "utf-8-sig",
            ",",
        ),
        (
            "a.csv",
            "Name;Amount;Count\r\nJosé;1,5;3\r\nété €;-2,25;4\r\n".encode("cp1252"),
            "cp1252",
            ";",
        ),
        ("a.tsv", "Name\tAmount\tCount\nJosé\t1.5\t3\nété €\t-2.25\t4\n".encode(), "utf-8", "\t"),
        ("a.txt", "Name|Amount|Count\nJosé|1.5|3\nété €|-2.25|4\n".encode(), "utf-8", "|"),
        ("a.csv", "Name\tAmount\tCount\nJosé\t1.5\t3\nété €\t-2.25\t4\n".encode(), "utf-8", "\t"),
        ("a.csv.gz", "Name;Amount;Count\nJosé;1,5;3\nété €;-2,25;4\n".encode(), "utf-8", ";"),
        (
            "a.tsv.gz",
            "Name\tAmount\tCount\nJosé\t1.5\t3\nété €\t-2.25\t4\n".encode(),
            "utf-8",
            "\t",
        ),
        (
            "a.csv",
            '"Name","Amount","Count"\n"José","1.5","3"\n"été €","-2.25","4"\n'.encode(),
            "utf-8",
            ",",
        ),
        ("a.csv", "Name,Amount,Count\nJosé,1.5,3\n\nété €,-2.25,4".encode(), "utf-8", ","),
        ("a.csv", "Name,Amount,Count\nJosé,1.5,3\nété €,-2.25,4\n".encode("utf-16"), "utf-16", ","),
        (
            "a.csv",
            "Name;Amount;Count\nJosé;1,5;3\nété €;-2,25;4\n".encode("cp1252").replace(
                b"\x80", b"\x81"
            ),
            "latin-1",
            ";",
        ),  # \x81 is not cp1252: last fallback
    ],
)
def test_delimited_variants_read_alike(
    tmp_path: Path, name: str, content: bytes, encoding: str, delimiter: str
) -> None:
    path = write(tmp_path, name, content)
    raw, _ = read_raw(path)
    assert (raw.encoding, raw.delimiter) == (encoding, delimiter)
    assert raw.columns == ["Name", "Amount", "Count"]
    rows = data_rows(read(path))
    if encoding == "latin-1":
        rows[1]["name"] = rows[1]["name"].replace("\x81", "€")
    assert rows == EXPECTED


@pytest.mark.parametrize(
    ("content", "delimiter", "values"),
    [
        (b"a;b\n1.234,5;x\n2,25;y\n", ";", [1234.5, 2.25]),
        (b"a;b\n1.234.567;x\n12;y\n", ";", [1234567, 12]),
        (b'a,b\n"1,234.5",x\n"2,000",y\n', ",", [1234.5, 2000.0]),
        (b'a,b\n"1,234",x\n"2,000",y\n', ",", [1234, 2000]),
        (b"a\tb\n1.5\tx\n2\ty\n", "\t", [1.5, 2.0]),
        (b"a|b\n-0,5|x\n+3,25|y\n", "|", [-0.5, 3.25]),
    ],
)
def test_decimal_commas_and_thousands(
    tmp_path: Path, content: bytes, delimiter: str, values: list[float]
) -> None:
    table = read(write(tmp_path, "n.csv", content))
    assert table.column("a").to_pylist() == values
    assert table.schema.field("a").type in (pa.int64(), pa.float64())


def test_sniffers_on_text() -> None:
    assert sniff_delimiter("a;b;c\n1,5;2;3\n") == ";"
    assert sniff_delimiter("only\none\n") == ","
    assert sniff_delimiter("a\tb\n1\t2\n", preferred="\t") == "\t"
    assert sniff_decimal("a;b\n1,5;2,5\n", ";") == ","
    assert sniff_decimal("a;b\n1.5;2.5\n", ";") == "."
    assert sniff_decimal("a,b\n1,5\n", ",") == "."


def test_multiline_quoted_values(tmp_path: Path) -> None:
    path = write(tmp_path, "m.csv", b'id,note\n1,"two\nlines"\n2,plain\n')
    assert data_rows(read(path)) == [{"id": 1, "note": "two\nlines"}, {"id": 2, "note": "plain"}]


def test_later_block_changes_type(tmp_path: Path) -> None:
    """pyarrow infers from the first block; later decimals and text must widen, not crash."""
    lines = ["n,f,t,e"] + [f"{i},{i},{i}," for i in range(1, 201)]
    lines += ["201,2.5,word,late"]
    path = write(tmp_path, "late.csv", ("\n".join(lines) + "\n").encode())
    options = ReadOptions(batch_rows=16)
    read_raw(path, options)  # the raw stream alone must not fail either
    table = read(path, options)
    assert table.schema.field("n").type == pa.int64()
    assert table.schema.field("f").type == pa.float64()
    assert table.schema.field("t").type == pa.string()
    assert table.schema.field("e").type == pa.string()
    assert table.num_rows == 201
    assert table.column("_row").to_pylist() == list(range(1, 202))
    last = table.slice(200).to_pylist()[0]
    assert (last["f"], last["t"], last["e"]) == (2.5, "word", "late")
    assert table.column("t").to_pylist()[:2] == ["1", "2"]


def test_batches_respect_batch_rows(tmp_path: Path) -> None:
    body = "a,b\n" + "".join(f"{i},x{i}\n" for i in range(1000))
    for name, content in [("a.csv", body.encode()), ("a.jsonl", _jsonl(1000))]:
        raw = open_table(write(tmp_path, name, content), ReadOptions(batch_rows=64))
        sizes = [b.num_rows for b in raw.batches]
        assert sum(sizes) == 1000 and max(sizes) <= 64


def _jsonl(n: int) -> bytes:
    return "".join(json.dumps({"a": i, "b": f"x{i}"}) + "\n" for i in range(n)).encode()


# ---------------------------------------------------------------------------------------------
# JSON shapes

JSON_ROWS = [
    {"id": 1, "name": "a", "geo.lat": 1.5, "geo.lon": None},
    {"id": 2, "name": "b", "geo.lat": None, "geo.lon": 3.0},
]


@pytest.mark.parametrize(
    ("name", "doc"),
    [
        (
            "r.json",
            [
                {"id": 1, "name": "a", "geo": {"lat": 1.5}},
                {"id": 2, "name": "b", "geo": {"lon": 3}},
            ],
        ),
        (
            "s.json",
            {
                "columns": ["id", "name", "geo.lat", "geo.lon"],
                "data": [[1, "a", 1.5, None], [2, "b", None, 3]],
            },
        ),
        (
            "s.json",
            {
                "index": [0, 1],
                "columns": ["id", "name", "geo.lat", "geo.lon"],
                "data": [[1, "a", 1.5, None], [2, "b", None, 3]],
            },
        ),
        (
            "w.json",
            {
                "records": [
                    {"id": 1, "name": "a", "geo": {"lat": 1.5}},
                    {"id": 2, "name": "b", "geo": {"lon": 3}},
                ]
            },
        ),
        ("h.json", [["id", "name", "geo.lat", "geo.lon"], [1, "a", 1.5, None], [2, "b", None, 3]]),
    ],
)
def test_json_shapes(tmp_path: Path, name: str, doc: object) -> None:
    path = write(tmp_path, name, json.dumps(doc).encode())
    assert data_rows(read(path)) == [
        {"id": r["id"], "name": r["name"], "geo_lat": r["geo.lat"], "geo_lon": r["geo.lon"]}
        for r in JSON_ROWS
    ]


@pytest.mark.parametrize("name", ["a.jsonl", "a.ndjson", "a.jsonl.gz"])
def test_jsonl_streams_and_unions_keys(tmp_path: Path, name: str) -> None:
    content = (
        b'\xef\xbb\xbf{"id": 1, "tags": ["x", "y"]}\n\n'
        b'{"id": 2, "extra": {"deep": true}}\n'
        b'{"id": "3"}\n'
    )
    raw, _ = read_raw(write(tmp_path, name, content))
    assert raw.format is Format.JSONL and raw.columns == ["id", "tags", "extra_deep"]
    table = read(write(tmp_path, name, content))
    assert data_rows(table) == [
        {"id": 1, "tags": '["x", "y"]', "extra_deep": None},
        {"id": 2, "tags": None, "extra_deep": True},
        {"id": 3, "tags": None, "extra_deep": None},
    ]


# ---------------------------------------------------------------------------------------------
# Workbooks


def test_xlsx_written_by_openpyxl(tmp_path: Path) -> None:
    rows = [
        ["Name", "Amount", "Count", "When", "OK", None],
        ["José", 1.5, 3, datetime(2024, 1, 2), True, None],
        [None, None, None, None, None, None],
        ["été €", -2.25, 4, datetime(2024, 3, 4, 5, 6, 7), False, None],
    ]
    path = write(tmp_path, "book.xlsx", xlsx_bytes(rows))
    raw, _ = read_raw(path)
    assert raw.format is Format.EXCEL and raw.columns == ["Name", "Amount", "Count", "When", "OK"]
    table = read(path)
    assert table.schema.field("when").type == pa.timestamp("us")
    assert table.to_pylist() == [
        {
            "name": "José",
            "amount": 1.5,
            "count": 3,
            "when": datetime(2024, 1, 2),
            "ok": True,
            "_file_id": 1,
            "_row": 1,
        },
        {
            "name": "été €",
            "amount": -2.25,
            "count": 4,
            "when": datetime(2024, 3, 4, 5, 6, 7),
            "ok": False,
            "_file_id": 1,
            "_row": 3,
        },
    ]


@pytest.mark.parametrize(
    ("sheet", "expected"), [("", "a"), ("0", "a"), ("1", "b"), ("Other", "b"), ("Data", "a")]
)
def test_excel_sheet_choice(tmp_path: Path, sheet: str, expected: str) -> None:
    path = write(tmp_path, "s.xlsx", xlsx_bytes([["a"], [1]], {"Other": [["b"], [2]]}))
    assert read(path, ReadOptions(excel_sheet=sheet)).column_names[0] == expected


def test_xls_fixture(tmp_path: Path) -> None:
    """sample.xls was written once with xlwt (not a dependency) and is kept as bytes."""
    path = tmp_path / "sample.xls"
    shutil.copy(DATA / "sample.xls", path)
    table = read(path)
    assert data_rows(table) == [
        {"name": "José", "amount": 1.5, "count": 3, "when": datetime(2024, 1, 2)},
        {"name": "Zoë", "amount": -2.25, "count": 4, "when": datetime(2024, 3, 4, 5, 6, 7)},
    ]


# ---------------------------------------------------------------------------------------------
# Parquet


def test_parquet_with_nested_struct(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"id": [1, 2], "geo": [{"lat": 1.0}, {"lat": None}]}), path)
    raw, _ = read_raw(path)
    assert raw.columns == ["id", "geo_lat"]
    assert data_rows(read(path)) == [{"id": 1, "geo_lat": 1.0}, {"id": 2, "geo_lat": None}]


# ---------------------------------------------------------------------------------------------
# Errors, exact

HEADER_ONLY = "the file has a header but no data rows; add at least one row below the header"
JSON_SHAPES = (
    'expected an array of objects (pandas orient="records"), {"columns": [...], "data": '
    '[[...]]} (orient="split"), {"column": {"row": value}} (orient="columns", pandas\' '
    'default), {"row": {"column": value}} with rows labelled 0, 1, 2... (orient="index"), '
    '{"schema": {...}, "data": [...]} (orient="table"), or an object holding one array of '
    "objects"
)


def _parquet_bytes(table: pa.Table) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


ERRORS = [
    (
        "e.csv",
        b"",
        EmptyFileError,
        "the file is empty (0 bytes); export it again with a header row and data",
    ),
    (
        "e.xlsx",
        b"",
        EmptyFileError,
        "the file is empty (0 bytes); export it again with a header row and data",
    ),
    (
        "b.csv",
        b"\n\n  \n",
        EmptyFileError,
        "the file holds no text (only blank lines); export it again with a header row",
    ),
    ("h.csv", b"a,b,c\n", NoRowsError, HEADER_ONLY),
    ("h.csv", b"a,b,c", NoRowsError, HEADER_ONLY),
    ("h.csv.gz", gzip.compress(b"a;b\n", mtime=0), NoRowsError, HEADER_ONLY),
    (
        "r.csv",
        b"a,b,c\n1,2,3\n4,5\n6,7,8\n",
        RaggedRowsError,
        "row 2 has 2 fields but the header has 3; give every row 3 fields (quote values that "
        "contain a comma)",
    ),
    (
        "r.csv",
        b"a;b\n1;2\n\n3;4;5\n",
        RaggedRowsError,
        "row 2 has 3 fields but the header has 2; give every row 2 fields (quote values that "
        "contain a semicolon)",
    ),
    (
        "r.tsv",
        b"a\tb\n1\t2\n3\t4\n5\n",
        RaggedRowsError,
        "row 3 has 1 field but the header has 2; give every row 2 fields (quote values that "
        "contain a tab)",
    ),
    (
        "w.csv",
        b"a,b,c,d\n1,2,3,4\n",
        TooManyColumnsError,
        "the file has 4 columns, more than the 3 allowed; remove unused columns or split the file",
    ),
    (
        "w.xlsx",
        xlsx_bytes([["a", "b", "c", "d"], [1, 2, 3, 4]]),
        TooManyColumnsError,
        "the file has 4 columns, more than the 3 allowed; remove unused columns or split the file",
    ),
    (
        "w.jsonl",
        b'{"a":1,"b":2,"c":3,"d":4}\n',
        TooManyColumnsError,
        "the file has 4 columns, more than the 3 allowed; remove unused columns or split the file",
    ),
    (
        "x.csv",
        b"PK\x03\x04\x14\x00\x00",
        FormatMismatchError,
        "x.csv is named .csv but its content is a ZIP archive (an .xlsx workbook or another zip "
        "file), not text; if it is an Excel workbook, rename it to .xlsx",
    ),
    (
        "j.json",
        b'[{"a": 1}, {"a": ',
        MalformedFileError,
        "the JSON is not valid at line 1, column 18: Expecting value; fix the syntax or export the "
        "file again",
    ),
    ("j.json", b"42", MalformedFileError, f"the JSON is a number, not a table; {JSON_SHAPES}"),
    (
        "j.json",
        b'{"a": 1, "b": 2}',
        MalformedFileError,
        f"the JSON is an object without a single array of records, not a table; {JSON_SHAPES}",
    ),
    (
        "j.json",
        b"[1, 2]",
        MalformedFileError,
        "record 1 of the JSON array is a number, not an object; every element must be an object "
        "of column: value",
    ),
    (
        "j.json",
        b'{"columns": ["a", "b"], "data": [[1, 2], [3]]}',
        RaggedRowsError,
        'row 2 has 1 value but "columns" names 2 columns; give every row 2 values',
    ),
    ("j.json", b"[]", NoRowsError, "the file has no records; add at least one record"),
    (
        "j.json",
        b"  \n",
        EmptyFileError,
        "the file holds only blank space; it needs a JSON array of records",
    ),
    (
        "l.jsonl",
        b'{"a": 1}\n{"a":\n',
        MalformedFileError,
        "line 2 is not valid JSON (Expecting value at column 1); each line must hold one complete "
        "JSON object",
    ),
    (
        "l.jsonl",
        b'{"a": 1}\n[1]\n',
        MalformedFileError,
        "line 2 is an array, not a JSON object; each line must hold one object of column: value",
    ),
    ("l.jsonl", b"\n\n", NoRowsError, "the file has no records; add at least one record"),
    (
        "t.xlsx",
        xlsx_bytes([["a", "b"], [1, 2]])[:300],
        MalformedFileError,
        "the workbook is damaged or truncated (File is not a zip file); save it again from Excel",
    ),
    ("s.xlsx", xlsx_bytes([["a"]]), NoRowsError, HEADER_ONLY),
    (
        "s.xlsx",
        xlsx_bytes([]),
        EmptyFileError,
        "the sheet is empty; put a header row and data on the first sheet (or set [ingest] "
        "excel_sheet)",
    ),
    (
        "bomb.xlsx",
        declared_size_bomb(),
        ZipBombError,
        "the workbook would unpack to 2,000,000,000 bytes, more than the 1,073,741,824 allowed; "
        "split it or save it as CSV",
    ),
    (
        "ratio.xlsx",
        ratio_bomb(),
        ZipBombError,
        "the workbook part xl/worksheets/sheet1.xml unpacks 1028 times its stored size (limit "
        "500); it is not a normal spreadsheet",
    ),
    (
        "p.parquet",
        b"PAR1garbage",
        MalformedFileError,
        "the Parquet file is damaged or truncated (Parquet magic bytes not found in footer. Either "
        "the file is corrupted or this is not a parquet file.); write it again",
    ),
    (
        "p.parquet",
        _parquet_bytes(pa.table({"a": pa.array([], pa.int64())})),
        NoRowsError,
        "the file has no rows; add at least one record",
    ),
    (
        "g.csv.gz",
        gzip.compress(b"a,b\n1,2\n" * 1000, mtime=0)[:50],
        MalformedFileError,
        "the gzip data is damaged or truncated (Compressed file ended before the end-of-stream "
        "marker was reached); compress the file again",
    ),
]


@pytest.mark.parametrize(("name", "content", "error", "message"), ERRORS)
def test_errors_are_typed_and_exact(
    tmp_path: Path, name: str, content: bytes, error: type[IngestError], message: str
) -> None:
    path = tmp_path / name  # written as given: truncated gzip and bombs must stay as built
    path.write_bytes(content)
    with pytest.raises(error) as info:
        read(path, ReadOptions(max_columns=3))
    assert info.value.message == message
    assert type(info.value) is error


def test_error_details(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", b"a,b,c\n1,2,3\n4,5\n")
    with pytest.raises(RaggedRowsError) as info:
        read(path)
    assert info.value.to_dict() == {
        "code": "ragged_rows",
        "message": "row 2 has 2 fields but the header has 3; give every row 3 fields (quote "
        "values that contain a comma)",
        "row": 2,
        "expected": "3 fields",
    }


def test_missing_sheet(tmp_path: Path) -> None:
    path = write(tmp_path, "s.xlsx", xlsx_bytes([["a"], [1]], {"Other": [["b"], [2]]}))
    with pytest.raises(SheetNotFoundError) as info:
        read(path, ReadOptions(excel_sheet="Nope"))
    assert info.value.message == (
        "the workbook has no sheet by the name or index asked for; its sheets are 'Data', 'Other'"
        " (name one of them, or a 0-based index, in [ingest] excel_sheet or /score-file's ?sheet=)"
    )


# ---------------------------------------------------------------------------------------------
# Fuzz: any bytes give rows or an IngestError, never another exception


def _valid_files() -> dict[str, bytes]:
    return {
        "f.csv": b"a,b,c\n1,x,2024-01-01\n2,y,2024-01-02\n",
        "f.csv.gz": gzip.compress(b"a;b\n1,5;x\n2,5;y\n"),
        "f.json": b'[{"a": 1, "b": {"c": "x"}}, {"a": 2}]',
        "f.jsonl": b'{"a": 1}\n{"a": 2, "b": "x"}\n',
        "f.xlsx": xlsx_bytes([["a", "b"], [1, "x"], [2, "y"]]),
        "f.xls": (DATA / "sample.xls").read_bytes(),
        "f.parquet": _parquet_bytes(pa.table({"a": [1, 2], "b": ["x", "y"]})),
    }


def _read_or_ingest_error(path: Path) -> None:
    with contextlib.suppress(IngestError):
        read(path)


@pytest.mark.parametrize("name", sorted(_valid_files()))
def test_fuzz_truncated_and_corrupted(tmp_path: Path, name: str) -> None:
    valid = _valid_files()[name]
    rng = random.Random(name)
    path = tmp_path / name
    cuts = sorted(
        {
            1,
            2,
            4,
            8,
            len(valid) // 2,
            len(valid) - 1,
            *(rng.randrange(1, len(valid)) for _ in range(8)),
        }
    )
    variants = [valid[:cut] for cut in cuts]
    for _ in range(12):
        flipped = bytearray(valid)
        for _ in range(rng.randint(1, 8)):
            flipped[rng.randrange(len(flipped))] = rng.randrange(256)
        variants.append(bytes(flipped))
    variants += [bytes(rng.randrange(256) for _ in range(rng.randint(1, 400))) for _ in range(6)]
    for content in variants:
        path.write_bytes(content)
        _read_or_ingest_error(path)
