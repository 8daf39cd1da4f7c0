"""Workbooks (.xlsx/.xlsm via a zip-bomb check first, legacy .xls): one sheet, read whole."""

from __future__ import annotations

import contextlib
import zipfile
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from ingest.base.config import ReadOptions
from ingest.base.errors import (
    EmptyFileError,
    IngestError,
    MalformedFileError,
    NoRowsError,
    SheetNotFoundError,
    ZipBombError,
)
from ingest.base.formats import Format
from ingest.readers.common import (
    NOT_OURS,
    RawTable,
    as_text,
    batches_from_rows,
    check_width,
    no_rows,
    renamed,
)

# Zip-based workbooks: refuse before inflating anything beyond these.
ZIP_MAX_MEMBERS = 10_000
ZIP_MAX_TOTAL_BYTES = 1 << 30  # 1 GiB uncompressed
ZIP_MAX_RATIO = 500  # per member, for members above ZIP_RATIO_FLOOR
ZIP_RATIO_FLOOR = 10 << 20


def read_xlsx(path: Path, options: ReadOptions, fmt: Format) -> RawTable:
    """Read a zip-based workbook, checking its unpacked size before anything is inflated."""
    check_zip(path)
    return read_workbook(path, options, fmt)


def check_zip(path: Path) -> None:
    """Refuse a zip whose members would inflate past safe limits, reading only its directory."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        raise MalformedFileError(
            f"the workbook is damaged or truncated ({exc}); save it again from Excel",
            expected="a complete .xlsx workbook",
        ) from exc
    if len(members) > ZIP_MAX_MEMBERS:
        raise ZipBombError(
            f"the workbook holds {len(members)} parts, more than {ZIP_MAX_MEMBERS}; "
            "it is not a normal spreadsheet",
            expected=f"at most {ZIP_MAX_MEMBERS} parts",
        )
    total = sum(m.file_size for m in members)
    if total > ZIP_MAX_TOTAL_BYTES:
        raise ZipBombError(
            f"the workbook would unpack to {total:,} bytes, more than the "
            f"{ZIP_MAX_TOTAL_BYTES:,} allowed; split it or save it as CSV",
            expected=f"at most {ZIP_MAX_TOTAL_BYTES:,} bytes unpacked",
        )
    for m in members:
        if m.file_size > ZIP_RATIO_FLOOR and m.file_size > ZIP_MAX_RATIO * max(m.compress_size, 1):
            raise ZipBombError(
                f"the workbook part {m.filename} unpacks {m.file_size // max(m.compress_size, 1)} "
                f"times its stored size (limit {ZIP_MAX_RATIO}); it is not a normal spreadsheet",
                expected=f"a compression ratio of at most {ZIP_MAX_RATIO}",
            )


def _excel_value(value: Any) -> Any:
    """Map a cell to a plain value: whole floats → int (Excel stores every number as a float)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, time | timedelta):
        return str(value)
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day)  # one column, one type
    return value


def _pick_sheet(workbook: Any, wanted: str) -> Any:
    """Return the configured sheet: first by default, else by name or 0-based index."""
    names = list(workbook.sheet_names)
    if not names:
        raise NoRowsError("the workbook has no sheets", expected="a sheet with a header row")
    if not wanted:
        return workbook.get_sheet_by_index(0)
    if wanted in names:
        return workbook.get_sheet_by_name(wanted)
    if wanted.isdigit() and int(wanted) < len(names):
        return workbook.get_sheet_by_index(int(wanted))
    raise SheetNotFoundError(
        "the workbook has no sheet by the name or index asked for; its sheets are"
        f" {', '.join(map(repr, names))} (name one of them, or a 0-based index, in [ingest]"
        " excel_sheet or /score-file's ?sheet=)",
        expected=", ".join(names),
    )


def _load_sheet(path: Path, options: ReadOptions) -> list[list[Any]]:
    """Load the sheet's cells with calamine; any parser failure means a damaged workbook."""
    import python_calamine

    try:
        workbook = python_calamine.CalamineWorkbook.from_path(str(path))
        try:
            sheet = _pick_sheet(workbook, str(options.excel_sheet).strip())
            return sheet.to_python(skip_empty_area=True)
        finally:
            with contextlib.suppress(Exception):
                workbook.close()
    except IngestError:
        raise
    except python_calamine.PasswordError as exc:
        raise MalformedFileError(
            "the workbook is password-protected; save an unprotected copy",
            expected="a workbook without a password",
        ) from exc
    except BaseException as exc:  # pyo3's PanicException (bad input) is a BaseException
        if isinstance(exc, NOT_OURS):
            raise
        raise MalformedFileError(
            f"the workbook is damaged or truncated ({str(exc)[:160]}); save it again from Excel",
            expected="a complete workbook",
        ) from exc


def _trim_grid(grid: list[list[Any]]) -> list[list[Any]]:
    """Drop trailing columns that have neither a header nor any value."""
    width = max((len(r) for r in grid), default=0)
    while width and all(len(r) < width or r[width - 1] in (None, "") for r in grid):
        width -= 1
    return [list(r[:width]) + [None] * (width - len(r)) for r in grid]


def read_workbook(path: Path, options: ReadOptions, fmt: Format) -> RawTable:
    """Read one sheet of a workbook (.xls as is; zip-based ones come through read_xlsx)."""
    grid = _trim_grid(_load_sheet(path, options))
    if not grid:
        raise EmptyFileError(
            "the sheet is empty; put a header row and data on the first sheet "
            "(or set [ingest] excel_sheet)",
            expected="a header row and at least one data row",
        )
    header = [_header_text(v) for v in grid[0]]
    check_width(header, options)
    rows = ([_excel_value(v) for v in row] for row in grid[1:])
    if len(grid) < 2:
        raise no_rows()
    batches = batches_from_rows(rows, len(header), options.batch_rows)
    return RawTable(fmt, None, None, header, renamed(batches, header))


def _header_text(value: Any) -> str:
    """Render a header cell as text (a year typed as a number stays ``2024``)."""
    value = _excel_value(value)
    return "" if value is None else (value if isinstance(value, str) else as_text(value) or "")
