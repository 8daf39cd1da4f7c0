"""Cutting a delimited file into byte ranges of whole lines, where the local reader cuts it.

The one-process reader (``ingest.readers.csv_chunks``) reads a file in windows ending at every
multiple of ``CHUNK_BYTES`` and cuts each after its last line feed. A range here is a run of
those same chunks: it starts just after the last line feed before a multiple of its nominal
size (itself a multiple of ``CHUNK_BYTES``) and ends just after the last line feed before the
next one (the file's end for the last range). So every line is in exactly one range, and a
worker parsing its range chunk by chunk parses the chunks, blocks and type turns of the
whole-file read, which is what makes the Dask output the local engine's, bit for bit. (This is
``dask.dataframe.read_csv``'s rule seen from the other side: dask starts a range after the
first line feed at or after its offset; starting after the last one before it gives the same
partition of lines and keeps the local reader's chunks.) A line longer than a range leaves the
range before it empty: empty ranges are dropped.

Pure: the bytes before an offset come from a function, so the same code cuts a ``bytes`` value
(the property tests) and a file on disk or in a bucket (``line_ranges_in``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from ingest.readers.csv_chunks import CHUNK_BYTES

LOOK_BACK = 64 << 10  # bytes read at a time while looking back for a line feed
ReadAt = Callable[[int, int], bytes]  # (offset, size) -> the bytes there (fewer at the end)


def line_ranges(data: bytes, size: int) -> list[tuple[int, int]]:
    """Cut ``data`` into [start, end) ranges of whole lines, about ``size`` bytes each."""
    return line_ranges_in(lambda offset, n: data[offset : offset + n], len(data), size)


def line_ranges_in(read_at: ReadAt, length: int, size: int) -> list[tuple[int, int]]:
    """Cut a file of ``length`` bytes read through ``read_at`` into ranges of whole lines."""
    if size <= 0:
        raise ValueError("a range holds at least one byte")
    cuts = [after_last_line_feed(read_at, offset) for offset in range(size, length, size)]
    edges = [0, *cuts, length]
    return [(a, b) for a, b in itertools.pairwise(edges) if b > a]


def after_last_line_feed(read_at: ReadAt, offset: int) -> int:
    """Return the position just after the last line feed before ``offset`` (0 if none)."""
    end = offset
    while end > 0:
        start = max(0, end - LOOK_BACK)
        found = read_at(start, end - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0


def chunk_start(start: int, chunk_bytes: int = CHUNK_BYTES) -> int:
    """Return the first chunk window's end at or after ``start``: where a range's reading resumes.

    The bytes of a range before it hold no line feed, so the whole-file read carries them as
    the partial line in front of that window (``parallel_batches(rest=...)``).
    """
    return -(-start // chunk_bytes) * chunk_bytes
