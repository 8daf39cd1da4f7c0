"""Delimited text parsed on every core: byte chunks cut at line ends, parsed side by side, in order.

pyarrow's streaming CSV reader is single-threaded; its table reader parses the blocks of one
buffer in parallel but wants the whole input, and parsing one chunk at a time on the thread pool
leaves the cores waiting at every chunk's end (the last block, the read of the next chunk).
Instead the file is read in chunks of about ``chunk_bytes`` cut at the last line end, and up to
``workers`` chunks are parsed at once, each whole on a thread of its own (pyarrow releases the
GIL while parsing), with every column's type pinned. Results are handed out in file order, one
batch per block of ``BLOCK_BYTES``, cut exactly where pyarrow's own threaded parse cuts them:
the batches, and so the predictions to the last bit, are those of one thread. Memory stays
bounded: at most ``workers + 1`` chunks of bytes and their tables at a time.

Only for what can be cut at a line feed safely: UTF-8 text (a multi-byte character never holds
a ``\\n`` byte), with line feeds, and no quoted values spanning lines (pyarrow splits its own
blocks on the same assumption). The types are those of the first block (the caller's pinned
ones, pyarrow's inferred ones for the rest); a value that does not parse turns its column to
text from that chunk on, as the streaming path does from the failing block on. A chunk parsed
ahead with the types before such a turn is parsed again with the new ones, so the batches (and
so the output) never depend on how many threads parsed them.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.csv as pacsv

from ingest.base.errors import IngestError

CHUNK_BYTES = 4 << 20  # bytes a thread parses at once, in blocks of BLOCK_BYTES
BLOCK_BYTES = 1 << 20  # one batch each (as before: the batches, so the predictions, are unchanged)
# Chunks in flight cost about three times their bytes (the text, its parse, the table): 8 threads
# hold ~110 MiB, however many cores the machine has (bulk scoring promises memory by batch_rows).
MAX_WORKERS = 8
THREAD_NAME = "dropscore-csv"  # the parsing threads' name prefix (tests look for leftovers)

_COLUMN_IN_ERROR = re.compile(r"In CSV column #(\d+)")

Types = dict[str, pa.DataType]
Failure = Callable[[pa.ArrowInvalid], IngestError]


def parallel_batches(
    source: pa.NativeFile,
    schema: pa.Schema,
    *,
    delimiter: str,
    decimal: str,
    failure: Failure,
    chunk_bytes: int = CHUNK_BYTES,
    workers: int | None = None,
    rest: bytes = b"",
    skip: int = 1,
    max_line: int | None = None,
) -> Iterator[pa.RecordBatch]:
    """Yield the batches of a delimited stream (header first), chunks parsed side by side, in order.

    ``workers`` threads parse (default: pyarrow's CPU count, at most ``MAX_WORKERS``); the
    batches are the same for any number. Closing the iterator early waits for the chunks being
    parsed and ends the threads. A byte range of a file (``scoring.bulk.ranges``) passes the
    bytes before the stream's first chunk boundary as ``rest`` and ``skip=0`` (no header), so
    its chunks are the ones a read of the whole file cuts. ``max_line`` refuses (``failure``)
    a line longer than that many bytes rather than holding it (a Dask worker's memory).
    """
    parser = _Parser(schema.names, {f.name: f.type for f in schema}, delimiter, decimal, failure)
    workers = max(1, workers or min(pa.cpu_count(), MAX_WORKERS))
    pool = ThreadPoolExecutor(workers, thread_name_prefix=THREAD_NAME)
    pending: deque[_Job] = deque()
    try:
        with source:
            for chunk, skipped in _chunks(source, chunk_bytes, rest, skip, max_line, failure):
                pending.append(parser.submit(pool, chunk, skipped))
                if len(pending) > workers:  # one more waits parsed while the caller works
                    yield from parser.take(pending.popleft())
            while pending:
                yield from parser.take(pending.popleft())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _chunks(
    source: pa.NativeFile,
    chunk_bytes: int,
    rest: bytes = b"",
    skip: int = 1,
    max_line: int | None = None,
    failure: Failure | None = None,
) -> Iterator[tuple[pa.Buffer, int]]:
    """Read the stream in chunks cut after their last line feed; say how many lines to skip.

    ``rest``: the partial line after the last line feed of the previous chunk; ``skip``: the
    header line, in the first chunk only; past ``max_line`` bytes a line is refused.
    """
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
            if max_line is not None and failure is not None and len(rest) > max_line:
                raise failure(pa.ArrowInvalid(f"a line is longer than {max_line} bytes"))
            continue
        rest = bytes(buffer[cut:end])
        yield pa.py_buffer(memoryview(buffer)[:cut]), skip
        skip = 0
        if not got:
            return


@dataclass(frozen=True)
class _Job:
    """One chunk on its way through the pool, with the types it was submitted with."""

    chunk: pa.Buffer
    skip: int
    types: Types
    parsed: Future[tuple[pa.Table, Types]]


class _Parser:
    """Parse chunks with the types decided so far, in file order as their results are taken."""

    def __init__(
        self, names: list[str], types: Types, delimiter: str, decimal: str, failure: Failure
    ) -> None:
        self.names = names
        self.types = types  # as of the last chunk taken: what the next chunk is parsed with
        self.delimiter = delimiter
        self.decimal = decimal
        self.failure = failure

    def submit(self, pool: ThreadPoolExecutor, chunk: pa.Buffer, skip: int) -> _Job:
        """Start parsing a chunk on the pool with (a copy of) the types known now."""
        types = dict(self.types)
        return _Job(chunk, skip, types, pool.submit(self.parse, chunk, skip, dict(types)))

    def take(self, job: _Job) -> list[pa.RecordBatch]:
        """Wait for a chunk (its parse error raises here, in order); re-parse it if types moved."""
        table, types = job.parsed.result()
        if job.types != self.types:  # an earlier chunk turned a column to text meanwhile
            table, types = self.parse(job.chunk, job.skip, dict(self.types))
        self.types = types
        return table.to_batches()

    def parse(self, chunk: pa.Buffer, skip: int, types: Types) -> tuple[pa.Table, Types]:
        """Parse one chunk in this thread; a column whose value does not parse becomes text."""
        for _ in range(len(self.names) + 1):
            try:
                table = pacsv.read_csv(
                    pa.BufferReader(chunk),
                    read_options=pacsv.ReadOptions(
                        column_names=self.names,
                        skip_rows=skip,
                        block_size=BLOCK_BYTES,
                        use_threads=False,  # this thread is one of the pool's
                    ),
                    parse_options=pacsv.ParseOptions(delimiter=self.delimiter),
                    convert_options=pacsv.ConvertOptions(
                        column_types=types, strings_can_be_null=True, decimal_point=self.decimal
                    ),
                )
                return table, types
            except pa.ArrowInvalid as exc:
                match = _COLUMN_IN_ERROR.search(str(exc))
                if match is None or "conversion error" not in str(exc):
                    raise self.failure(exc) from exc
                types[self.names[int(match.group(1))]] = pa.string()  # this chunk and the rest
        raise self.failure(pa.ArrowInvalid("a column's values could not be read"))  # not reached
