"""Long CSV lines: read past pyarrow's block size, refused in plain words past the stated limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.base.config import ReadOptions
from ingest.base.errors import MalformedFileError
from ingest.readers import open_table

MIB = 1 << 20


def _rows(path: Path, options: ReadOptions) -> list[dict[str, object]]:
    """Read a file through the real reader and return its rows."""
    raw = open_table(path, options)
    rows = [row for batch in raw.batches for row in batch.to_pylist()]
    close = getattr(raw, "close", None)
    if callable(close):
        close()
    return rows


def _write_long(path: Path, before: int, long_bytes: int) -> None:
    """Write a CSV with ``before`` short rows, one line of ``long_bytes``, then a short row."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("id,text,x\n")
        for i in range(before):
            fh.write(f"{i},short,{i}.5\n")
        fh.write(f"{before},{'y' * long_bytes},1.5\n")
        fh.write(f"{before + 1},tail,2.5\n")


@pytest.mark.parametrize("before", [0, 200_000])
def test_a_3_mib_line_is_read(tmp_path: Path, before: int) -> None:
    """A 3 MiB line, first or deep in the file (past the first block), reads whole."""
    path = tmp_path / "long.csv"
    _write_long(path, before, 3 * MIB)
    rows = _rows(path, ReadOptions())
    assert len(rows) == before + 2
    assert rows[before]["text"] == "y" * (3 * MIB)
    assert rows[-1] == {"id": before + 1, "text": "tail", "x": 2.5}
    assert [r["id"] for r in rows] == list(range(before + 2))


@pytest.mark.parametrize("before", [0, 100_000])
def test_a_line_over_the_limit_is_refused_in_plain_words(tmp_path: Path, before: int) -> None:
    """Past ``max_line_bytes`` the message states the limit, not pyarrow's internals."""
    path = tmp_path / "toolong.csv"
    _write_long(path, before, 5 * MIB)
    with pytest.raises(MalformedFileError) as caught:
        _rows(path, ReadOptions(max_line_bytes=2 * MIB))
    message = str(caught.value)
    assert "a line is longer than 2 MiB; dropscore reads lines up to 2 MiB" in message
    assert "straddling" not in message
