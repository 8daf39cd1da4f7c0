"""Small builders shared by the reader/normalize/lake tests: files from in-memory values."""

from __future__ import annotations

import gzip
import io
import struct
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pyarrow as pa

from ingest.base.config import ReadOptions
from ingest.pipeline.normalize import normalize_file
from ingest.readers import RawTable, open_table

DATA = Path(__file__).parent / "data"


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    """Write bytes under tmp_path, gzip-compressing when the name ends in .gz."""
    path = tmp_path / name
    if name.endswith(".gz"):
        content = gzip.compress(content)
    path.write_bytes(content)
    return path


def xlsx_bytes(rows: list[list[Any]], sheets: dict[str, list[list[Any]]] | None = None) -> bytes:
    """Build a real workbook with openpyxl: ``rows`` on the first sheet, then ``sheets``."""
    book = openpyxl.Workbook()
    first = book.active
    first.title = "Data"
    for row in rows:
        first.append(row)
    for title, more in (sheets or {}).items():
        sheet = book.create_sheet(title)
        for row in more:
            sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def declared_size_bomb() -> bytes:
    """A tiny zip whose one member claims to unpack to 2 GB, built without inflating anything."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", b"\0" * 1024)
    data = bytearray(out.getvalue())
    huge = struct.pack("<I", 2_000_000_000)
    local = data.find(b"PK\x03\x04")
    data[local + 22 : local + 26] = huge  # uncompressed size, local header
    central = data.find(b"PK\x01\x02")
    data[central + 24 : central + 28] = huge  # uncompressed size, central directory
    return bytes(data)


def ratio_bomb() -> bytes:
    """A zip whose one 20 MB member of zeros is stored in a few KB (ratio ≈ 1000)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", b"\0" * (20 << 20))
    return out.getvalue()


def read(path: Path, options: ReadOptions | None = None, file_id: int = 1) -> pa.Table:
    """Read and normalize a file fully, as the intake would before writing it to the lake."""
    table = normalize_file(open_table(path, options or ReadOptions()), file_id)
    batches = list(table.batches)  # .schema is final (maybe widened) only after this
    return pa.Table.from_batches([b.cast(table.schema) for b in batches], schema=table.schema)


def read_raw(path: Path, options: ReadOptions | None = None) -> tuple[RawTable, pa.Table]:
    """Open a file and collect its raw batches, to check what the reader itself produced."""
    raw = open_table(path, options or ReadOptions())
    batches = list(raw.batches)
    return raw, pa.Table.from_batches(batches)


def data_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Return rows without the provenance columns."""
    keep = [n for n in table.column_names if not n.startswith("_")]
    return table.select(keep).to_pylist()
