"""Which names are skipped, and which format a name plus its first bytes make."""

from __future__ import annotations

import pytest

from ingest.base.errors import FormatMismatchError, UnsupportedFormatError
from ingest.base.formats import (
    ACCEPTED as ACCEPTED_SUFFIXES,
)
from ingest.base.formats import (
    FORMATS,
    OUTPUT_FORMATS,
    Format,
    detect_format,
    format_for_content_type,
    format_for_name,
    is_unfinished_name,
    output_spec,
    spec_for,
)


@pytest.mark.parametrize(
    ("name", "unfinished"),
    [
        ("data.csv", False),
        ("Data Final (2).xlsx", False),
        ("inbox/data.csv", False),
        (".data.csv", True),
        (".hidden", True),
        ("~$budget.xlsx", True),
        (".~lock.budget.xlsx#", True),
        ("data.csv.tmp", True),
        ("data.csv.TMP", True),
        ("data.csv.part", True),
        ("data.csv.partial", True),
        ("data.csv.crdownload", True),
        (".data.csv.swp", True),
        ("data.swp", True),
        ("Thumbs.db", True),
        ("desktop.ini", True),
        ("DESKTOP.INI", True),
        ("", True),
        ("temperature.csv", False),  # "tmp" inside a name is fine
    ],
)
def test_is_unfinished_name(name: str, unfinished: bool) -> None:
    assert is_unfinished_name(name) is unfinished


@pytest.mark.parametrize(
    ("name", "head", "expected"),
    [
        ("a.csv", b"a,b\n1,2\n", Format.CSV),
        ("a.CSV", b"a,b\n", Format.CSV),
        ("a.txt", b"a\tb\n", Format.CSV),
        ("a.tsv", b"a\tb\n", Format.TSV),
        ("a.csv.gz", b"\x1f\x8b\x08\x00", Format.CSV),
        ("a.tsv.gz", b"\x1f\x8b\x08\x00", Format.TSV),
        ("a.xlsx", b"PK\x03\x04rest", Format.EXCEL),
        ("a.xlsm", b"PK\x03\x04rest", Format.EXCEL),
        ("a.xls", b"\xd0\xcf\x11\xe0\xa1\xb1", Format.XLS),
        ("a.json", b'[{"a": 1}]', Format.JSON),
        ("a.jsonl", b'{"a": 1}\n', Format.JSONL),
        ("a.ndjson", b'{"a": 1}\n', Format.JSONL),
        ("a.ndjson.gz", b"\x1f\x8b\x08\x00", Format.JSONL),
        ("a.parquet", b"PAR1\x15\x04", Format.PARQUET),
        ("a.csv", b"", Format.CSV),  # empty: the reader reports it
        ("a.csv", b"\xff\xfea\x00,\x00b\x00", Format.CSV),  # UTF-16 with BOM is text
        ("a.csv", "é;€\n".encode("cp1252"), Format.CSV),
    ],
)
def test_detect_format(name: str, head: bytes, expected: Format) -> None:
    assert detect_format(name, head) is expected


@pytest.mark.parametrize(
    ("name", "head", "message"),
    [
        (
            "report.csv",
            b"PK\x03\x04\x14\x00",
            "report.csv is named .csv but its content is a ZIP archive (an .xlsx workbook or "
            "another zip file), not text; if it is an Excel workbook, rename it to .xlsx",
        ),
        (
            "report.csv",
            b"%PDF-1.7\n%\xe2\xe3",
            "report.csv is named .csv but its content is a PDF document, not text",
        ),
        (
            "report.json",
            b"\x00\x01\x02\x03binary",
            "report.json is named .json but its content is binary data, not text",
        ),
        (
            "book.xlsx",
            b"a,b\n1,2\n",
            "book.xlsx is named .xlsx but its content is text, not a ZIP-based workbook",
        ),
        (
            "book.xls",
            b"PK\x03\x04",
            "book.xls is named .xls but its content is a ZIP archive (an .xlsx workbook or "
            "another zip file), not a legacy (OLE2) .xls workbook; if it is an Excel workbook, "
            "rename it to .xlsx",
        ),
        (
            "book.xlsx",
            b"\xd0\xcf\x11\xe0\xa1\xb1",
            "book.xlsx is named .xlsx but its content is a legacy Office (OLE2) document such as "
            "an .xls workbook, not a ZIP-based workbook; if it is an Excel workbook, rename it "
            "to .xls",
        ),
        (
            "t.parquet",
            b"a,b\n",
            "t.parquet is named .parquet but its content is text, not a Parquet file",
        ),
        (
            "t.csv.gz",
            b"a,b\n",
            "t.csv.gz is named .csv.gz but its content is text, not gzip-compressed data",
        ),
        (
            "t.csv",
            b"\x1f\x8b\x08\x00",
            "t.csv is named .csv but its content is gzip-compressed data, not text; if it is a "
            "compressed CSV, rename it to .csv.gz",
        ),
        (
            "t.jsonl",
            b"PAR1\x00",
            "t.jsonl is named .jsonl but its content is a Parquet file, not text; rename it to "
            ".parquet",
        ),
    ],
)
def test_detect_format_mismatch(name: str, head: bytes, message: str) -> None:
    with pytest.raises(FormatMismatchError) as info:
        detect_format(name, head)
    assert info.value.message == message
    assert info.value.code == "format_mismatch"


ACCEPTED = (
    "save it as one of: .csv, .txt, .tsv (optionally .gz), .xlsx, .xlsm, .xls, .json, "
    ".jsonl, .ndjson (optionally .gz), .parquet"
)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "notes.pdf",
            f"notes.pdf has the extension .pdf, which dropscore does not read; {ACCEPTED}",
        ),
        ("README", f"README has no extension, which dropscore does not read; {ACCEPTED}"),
        (
            "a.xlsx.gz",
            f"a.xlsx.gz has the extension .xlsx.gz, which dropscore does not read; {ACCEPTED}",
        ),
        (
            "a.json.gz",
            f"a.json.gz has the extension .json.gz, which dropscore does not read; {ACCEPTED}",
        ),
        ("x.gz", f"x.gz has no extension, which dropscore does not read; {ACCEPTED}"),
    ],
)
def test_unsupported_extension(name: str, message: str) -> None:
    with pytest.raises(UnsupportedFormatError) as info:
        detect_format(name, b"whatever")
    assert info.value.message == message
    assert info.value.to_dict()["code"] == "unsupported_format"


# ---------------------------------------------------------------------------------------------
# The format table: one entry per format, complete, and the source of every list of formats


def test_every_format_has_one_entry_with_a_loadable_reader() -> None:
    assert sorted(spec.format.value for spec in FORMATS) == sorted(f.value for f in Format)
    for spec in FORMATS:
        assert spec.suffixes, spec.format
        assert spec.content_types, spec.format
        assert callable(spec.read_function()), f"{spec.format} names no reader it can load"


def test_every_output_format_has_a_writer_and_every_answer_is_an_output() -> None:
    assert OUTPUT_FORMATS == ("csv", "json", "jsonl", "parquet")
    for spec in FORMATS:
        if spec.output:
            assert callable(spec.write_function()), f"{spec.format} is an output without writer"
        else:
            with pytest.raises(LookupError):
                spec.write_function()
        assert spec_for(spec.answer).output, f"{spec.format} answers in a non-output format"
    assert spec_for(Format.EXCEL).answer is Format.CSV  # DESIGN: CSV for Excel


def test_suffixes_and_content_types_name_one_format_each() -> None:
    suffixes = [s for spec in FORMATS for s in spec.suffixes]
    types = [t for spec in FORMATS for t in spec.content_types]
    assert len(suffixes) == len(set(suffixes)) and len(types) == len(set(types))
    for spec in FORMATS:
        for suffix in spec.suffixes:
            assert format_for_name(f"a{suffix}") == (spec.format, False)
            if spec.gzip:
                assert format_for_name(f"A{suffix.upper()}.gz") == (spec.format, True)
            else:
                with pytest.raises(UnsupportedFormatError):
                    format_for_name(f"a{suffix}.gz")
        for content_type in spec.content_types:
            assert format_for_content_type(content_type.upper()) is spec.format
    assert format_for_content_type("application/pdf") is None


def test_the_accepted_list_names_every_suffix_and_only_those() -> None:
    listed = ACCEPTED_SUFFIXES.replace(" (optionally .gz)", "").split(", ")
    assert listed == [s for spec in FORMATS for s in spec.suffixes]
    assert output_spec("parquet").format is Format.PARQUET
