"""Delimited text parsed on every core: large byte chunks cut at line ends, each parsed whole.

pyarrow's streaming CSV reader is single-threaded; its table reader parses the blocks of one
buffer in parallel but wants the whole input. Reading the file in chunks of ``CHUNK_BYTES`` cut
at the last line end, and handing each chunk to the table reader with every column's type
pinned, gets the parallel parse in bounded memory (one chunk of bytes and its table at a time).

Only for what can be cut at a line feed safely: UTF-8 text (a multi-byte character never holds
a ``\\n`` byte), with line feeds, and no quoted values spanning lines (pyarrow splits its own
blocks on the same assumption). The types are those of the first block (the caller's pinned
ones, pyarrow's inferred ones for the rest); a value that does not parse turns its column to
text from that chunk on, as the streaming path does from the failing block on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.csv as pacsv

from ingest.base.errors import IngestError

CHUNK_BYTES = 4 << 20  # bytes parsed at once: 4 x 1 MiB blocks for the thread pool
BLOCK_BYTES = 1 << 20

_COLUMN_IN_ERROR = re.compile(r"In CSV column #(\d+)")


def parallel_batches(
    source: pa.NativeFile,
    schema: pa.Schema,
    *,
    delimiter: str,
    decimal: str,
    failure: Callable[[pa.ArrowInvalid], IngestError],
    chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[pa.RecordBatch]:
    """Yield the batches of a delimited stream (header first) parsed chunk by chunk, in order."""
    names = schema.names
    types = {f.name: f.type for f in schema}
    rest = b""  # the partial line after the last line feed of the previous chunk
    skip = 1  # the header line, in the first chunk only
    with source:
        while True:
            # One copy per chunk: the partial line, then the file's bytes read in behind it.
            buffer = bytearray(len(rest) + chunk_bytes)
            buffer[: len(rest)] = rest
            got = source.readinto(memoryview(buffer)[len(rest) :])
            end = len(rest) + got
            if end == 0:
                return
            cut = buffer.rfind(b"\n", 0, end) + 1 if got else end
            if cut == 0:  # one line longer than a chunk: read on until it ends
                rest = bytes(buffer[:end])
                continue
            rest = bytes(buffer[cut:end])
            chunk = pa.py_buffer(memoryview(buffer)[:cut])
            table = _parse(chunk, names, types, skip, delimiter, decimal, failure)
            skip = 0
            yield from table.to_batches()
            if not got:
                return


def _parse(
    buffer: pa.Buffer,
    names: list[str],
    types: dict[str, pa.DataType],
    skip: int,
    delimiter: str,
    decimal: str,
    failure: Callable[[pa.ArrowInvalid], IngestError],
) -> pa.Table:
    """Parse one chunk on the thread pool; a column whose value does not parse becomes text."""
    for _ in range(len(names) + 1):
        try:
            return pacsv.read_csv(
                pa.BufferReader(buffer),
                read_options=pacsv.ReadOptions(
                    column_names=names, skip_rows=skip, block_size=BLOCK_BYTES, use_threads=True
                ),
                parse_options=pacsv.ParseOptions(delimiter=delimiter),
                convert_options=pacsv.ConvertOptions(
                    column_types=types, strings_can_be_null=True, decimal_point=decimal
                ),
            )
        except pa.ArrowInvalid as exc:
            match = _COLUMN_IN_ERROR.search(str(exc))
            if match is None or "conversion error" not in str(exc):
                raise failure(exc) from exc
            types[names[int(match.group(1))]] = pa.string()  # for this chunk and the rest
    raise failure(pa.ArrowInvalid("a column's values could not be read"))  # not reached
