"""Sniffing delimited text: its encoding, delimiter, decimal mark, and quoted line breaks.

All from a sample of the first megabyte, cut at a line end so a half line never misleads; the
reader in ``ingest.readers.delimited`` then streams the whole file with what was found.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import io
import re
import zlib
from collections.abc import Iterable
from pathlib import Path

from ingest.base.errors import MalformedFileError
from ingest.readers.common import open_bytes

SAMPLE_BYTES = 1 << 20  # decoded text looked at to pick encoding, delimiter and decimal mark
DELIMITERS = (",", ";", "\t", "|")
SNIFF_LINES = 50


def read_sample(path: Path, limit: int | None = None) -> tuple[bytes, bool]:
    """Return the first decompressed bytes and whether they are the whole file."""
    try:
        with open_bytes(path, limit) as fh:
            sample = fh.read(SAMPLE_BYTES)
            complete = not fh.read(1)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise MalformedFileError(
            f"the gzip data is damaged or truncated ({exc}); compress the file again"
        ) from exc
    return sample, complete


def trim_partial(sample: bytes, complete: bool) -> bytes:
    """Cut a sample at its last line end, so a half line never misleads the sniffers."""
    if complete:
        return sample
    cut = max(sample.rfind(b"\n"), sample.rfind(b"\r"))
    return sample[: cut + 1] if cut > 0 else sample


def choose_encoding(sample: bytes, fallbacks: Iterable[str]) -> tuple[str, str]:
    """Return (codec for decoding, name to record) for text: UTF-8 first, then fallbacks."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", "utf-16"
    for name in ("utf-8", *fallbacks):
        try:
            sample.decode(name)
        except (UnicodeDecodeError, LookupError):
            continue
        return name, name
    raise MalformedFileError(
        "the text is not UTF-8 and not in any configured fallback encoding "
        f"({', '.join(fallbacks) or 'none'}); save the file as UTF-8",
        expected="UTF-8 text",
    )


def _sample_rows(text: str, delimiter: str, limit: int = SNIFF_LINES) -> list[list[str]]:
    """Parse the first rows of a sample with one delimiter; blank lines are not rows."""
    rows: list[list[str]] = []
    with contextlib.suppress(csv.Error):
        for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
            if row:
                rows.append(row)
            if len(rows) >= limit:
                break
    return rows


def sniff_delimiter(text: str, preferred: str = ",") -> str:
    """Pick the delimiter giving the same field count (> 1) on every sampled row.

    Ties go to the most fields, then to ``preferred`` (tab for .tsv), then to the order of
    ``DELIMITERS``. A single-column file gets ``preferred``.
    """
    order = sorted(DELIMITERS, key=lambda d: d != preferred)
    best: tuple[int, int, int, str] | None = None  # (consistent, fields, -rank, delimiter)
    for rank, delimiter in enumerate(order):
        rows = _sample_rows(text, delimiter)
        if not rows or len(rows[0]) < 2:
            continue
        score = (int(len({len(r) for r in rows}) == 1), len(rows[0]), -rank, delimiter)
        if best is None or score[:3] > best[:3]:
            best = score
    return best[3] if best else preferred


_COMMA_DECIMAL = re.compile(r"^[+-]?(\d{1,3}(\.\d{3})+|\d+),\d+$")
_DOT_DECIMAL = re.compile(r"^[+-]?\d*\.\d+$")
_DOT_GROUPS = re.compile(r"^[+-]?\d{1,3}(\.\d{3}){2,}$")  # 1.234.567: dots can only group


def sniff_decimal(text: str, delimiter: str) -> str:
    """Tell whether numbers in this file use a decimal comma (only possible without ',')."""
    if delimiter == ",":
        return "."
    comma = dot = 0
    for row in _sample_rows(text, delimiter, limit=500)[1:]:
        for value in row:
            value = value.strip()
            if _COMMA_DECIMAL.match(value) or _DOT_GROUPS.match(value):
                comma += 1
            elif _DOT_DECIMAL.match(value):
                dot += 1
    return "," if comma > dot else "."


def has_multiline_values(text: str, delimiter: str) -> bool:
    """Tell whether quoted values span lines, which needs pyarrow's slower parsing mode."""
    if '"' not in text:
        return False
    rows = _sample_rows(text, delimiter, limit=10_000)
    return any("\n" in v or "\r" in v for row in rows for v in row)
