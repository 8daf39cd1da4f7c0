"""A CSV file read by the Dask workers: byte ranges parsed as the local reader parses them.

Two rounds of tasks. First each worker parses one byte range of whole lines
(``scoring.bulk.ranges``), chunk by chunk and block by block exactly as the one-process
reader (``ingest.readers.csv_chunks``) parses the whole file, and keeps the parsed blocks in
Arrow IPC files in the output's scratch folder (one file per run of blocks of one schema),
returning only their row counts and schemas. The client then fixes a range parsed with types
an earlier range turned (a value that is not a number turns its column to text from that chunk
on, as the local reader does: such a range is parsed again, rarely), and replays the local
reader's batching (``merge_batches`` and ``cut_batches``, the reader's own functions) over
the row counts alone, so it knows every batch boundary without reading a row. Then the usual parts
(``scoring.bulk.remote``) read their rows from the scratch, cut at those boundaries, and
normalize, score and write them: same batches, same types, so the same bytes as the local
engine.

When the file is not what the local reader cuts in chunks (quoted values spanning lines,
text not UTF-8, a lone ``\\r`` for line ends, no column of known type, a compressed file) or a
range does not parse (a ragged row, a quote left open, a line longer than ``max_line_bytes``,
which a worker refuses rather than holds), ``ClientReads`` says why and the
caller reads the file in its own process, as before, where the local reader gives its own
words for a bad file. Nothing is lost: the scratch is removed first.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.fs as pafs

from ingest.base.config import ReadOptions
from ingest.base.errors import IngestError
from ingest.readers.csv_chunks import CHUNK_BYTES, parallel_batches
from ingest.readers.delimited import CutLayout, cut_layout, merge_batches
from ingest.readers.table import cut_batches
from scoring.bulk.filesystems import Store
from scoring.bulk.ranges import chunk_start, line_ranges_in
from scoring.bulk.stopping import Look
from scoring.errors import ValidationFailed

HEAD_BYTES = 2 << 20  # bytes copied for the client's sniffing: the sample and the first block
CHUNKS_PER_RANGE = 4  # local chunks per range: 16 MiB, parsed by one task
RAW_NAME = "raw-{:05d}-{:03d}.arrow"


class ClientReads(Exception):
    """The workers cannot read this file as the local reader would: the client reads it."""


class RangeUnreadable(IngestError):
    """A range's text did not parse as the layout says: the client reads the file instead."""


@dataclass(frozen=True)
class Segment:
    """Parsed blocks of one schema in one scratch IPC file: each block's rows, in order."""

    uri: str
    schema: pa.Schema
    rows: tuple[int, ...]


@dataclass(frozen=True)
class Parsed:
    """What a worker says about its range: the types it started and ended with, its blocks."""

    index: int
    start: pa.Schema
    end: pa.Schema
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class TextSource:
    """A CSV file as the parts read it: its layout, the parsed blocks, the batch boundaries."""

    layout: CutLayout
    segments: tuple[Segment, ...] = ()
    cuts: tuple[int, ...] = ()  # the row each batch ends at, in order (the last: every row)
    pinned: tuple[str, ...] = ()  # output columns parsed as float64 that may go out whole

    @property
    def rows(self) -> int:
        """Return the file's rows (every parsed row, empty ones included)."""
        return self.cuts[-1] if self.cuts else 0


# -- the client side -----------------------------------------------------------------------


def layout_of(store: Store, src: str, options: ReadOptions) -> tuple[CutLayout, int]:
    """Sniff the file as the local reader does (``cut_layout``) from its first bytes; size it.

    Raises ``ClientReads`` when the local reader would not cut it; the header's limits
    (``max_columns``) refuse it here with the reader's own error.
    """
    if src.lower().endswith(".gz"):
        raise ClientReads("a compressed file cannot be cut into ranges")
    fs, path = store.open(src)
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.File:
        problem = [{"field": "input", "problem": "not found"}]
        raise ValidationFailed(f"no file at {src}", problem)
    length = info.size
    with tempfile.TemporaryDirectory(prefix="dropscore-head-") as tmp:
        head = Path(tmp) / PurePosixPath(path).name
        with fs.open_input_file(path) as fh:
            data = fh.read(min(length, HEAD_BYTES))
        if length > len(data):  # whole lines only: the sniffers see a sample cut at a line end
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                raise ClientReads(f"no line ends in the first {HEAD_BYTES >> 20} MiB")
            data = data[:cut]
        head.write_bytes(data)
        found = cut_layout(head, options)
    if isinstance(found, str):
        raise ClientReads(found)
    return found, length


def byte_ranges(store: Store, src: str, length: int, threads: int) -> list[tuple[int, int]]:
    """Cut the file into ranges of whole local chunks: a few per worker thread, 16 MiB or more."""
    chunks = max(1, -(-length // CHUNK_BYTES))
    per = max(CHUNKS_PER_RANGE, -(-chunks // (2 * threads)))
    fs, path = store.open(src)
    with fs.open_input_file(path) as fh:
        return line_ranges_in(lambda at, n: fh.read_at(n, at), length, per * CHUNK_BYTES)


def blocks_of(parsed: Sequence[Parsed]) -> list[tuple[int, pa.Schema]]:
    """List every parsed block's rows and schema, in file order."""
    return [(rows, s.schema) for p in parsed for s in p.segments for rows in s.rows]


def batch_cuts(blocks: Sequence[tuple[int, pa.Schema]], batch_rows: int) -> tuple[int, ...]:
    """Replay the local reader's batching over row counts: the row each batch ends at.

    The reader merges blocks of one schema up to ``batch_rows`` (``merge_batches``) and cuts
    what is longer (``cut_batches``); the same two functions run here over rowless stand-ins (a null
    column per block, named for its schema), so the boundaries are the reader's by construction.
    """
    keys: list[pa.Schema] = []
    stand_ins = []
    for rows, schema in blocks:
        key = next((i for i, known in enumerate(keys) if known.equals(schema)), None)
        if key is None:
            keys.append(schema)
            key = len(keys) - 1
        stand_ins.append(pa.RecordBatch.from_arrays([pa.nulls(rows)], names=[str(key)]))
    cuts, at = [], 0
    for batch in cut_batches(merge_batches(iter(stand_ins), batch_rows), batch_rows):
        at += batch.num_rows
        cuts.append(at)
    return tuple(cuts)


def rows_between(
    source: TextSource, store: Store, first: int, stop: int
) -> Iterator[pa.RecordBatch]:
    """Yield rows [first, stop) as the local reader's batches: cut at ``source.cuts``.

    Batches carry the header's cleaned names, as the reader's do.
    """
    columns = source.layout.columns
    blocks = _blocks_from(source, store, first)
    held: pa.RecordBatch | None = None
    at = first
    for cut in (c for c in source.cuts if first < c <= stop):
        pieces = []
        while at < cut:
            if held is None or not held.num_rows:
                held = next(blocks)
            take = min(cut - at, held.num_rows)
            pieces.append(held.slice(0, take))
            held, at = held.slice(take), at + take
        batch = pieces[0] if len(pieces) == 1 else _one(pieces)
        yield batch.rename_columns(columns) if batch.schema.names != columns else batch


def _one(pieces: list[pa.RecordBatch]) -> pa.RecordBatch:
    """Join consecutive slices into one batch, as the reader merges its blocks."""
    return pa.Table.from_batches(pieces).combine_chunks().to_batches()[0]


def _blocks_from(source: TextSource, store: Store, first: int) -> Iterator[pa.RecordBatch]:
    """Yield the parsed blocks from row ``first`` on (the first one sliced to start there)."""
    at = 0
    for segment in source.segments:
        if at + sum(segment.rows) <= first:
            at += sum(segment.rows)
            continue
        fs, path = store.open(segment.uri)
        with fs.open_input_file(path) as fh:
            reader = pa.ipc.open_file(fh)
            for i, rows in enumerate(segment.rows):
                if rows and at + rows > first:
                    block = reader.get_batch(i)
                    yield block.slice(max(0, first - at))
                at += rows


# -- the worker side -----------------------------------------------------------------------


@dataclass(frozen=True)
class RangeJob:
    """One range of the file to parse into the scratch folder: the same for every range."""

    src: str
    scratch: str
    layout: CutLayout
    ranges: tuple[tuple[int, int], ...]
    store: Store
    max_line: int | None = None  # longest line a worker holds (ReadOptions.max_line_bytes)


def parse_range(job: RangeJob, index: int, schema: pa.Schema) -> Parsed:
    """Parse one range with the columns' types as they stand at its start; keep the blocks.

    Each run of blocks of one schema goes to one IPC file in the scratch folder; what comes
    back is only their row counts and schemas. A parse failure raises ``RangeUnreadable``.
    """
    Look(job.scratch)()  # a failed file's range ends before reading anything
    start, end = job.ranges[index]
    resume = chunk_start(start)
    fs, path = job.store.open(job.src)
    with fs.open_input_file(path) as fh:
        rest = fh.read_at(resume - start, start) if start else b""
        stream = fh.get_stream(resume, end - resume) if start else fh.get_stream(0, end)
        batches = parallel_batches(
            stream,
            schema,
            delimiter=job.layout.delimiter,
            decimal=job.layout.decimal,
            failure=_unreadable,
            rest=rest,
            skip=0 if start else 1,
            max_line=job.max_line,
        )
        named = functools.partial(RAW_NAME.format, index)
        segments = write_segments(batches, job.store, job.scratch, named)
    end_schema = segments[-1].schema if segments else schema
    return Parsed(index, schema, end_schema, segments)


def _unreadable(exc: pa.ArrowInvalid) -> IngestError:
    """Say a range did not parse (the client then reads the file and says why in its words)."""
    return RangeUnreadable(f"a range of the file did not parse ({str(exc)[:200]})")


def write_segments(
    batches: Iterable[pa.RecordBatch], store: Store, scratch: str, named: Callable[[int], str]
) -> tuple[Segment, ...]:
    """Write batches as they come into the scratch folder: a new IPC file at each schema change.

    The one writer of a worker's scratch files, for a range's parsed blocks and a part's scored
    batches alike: each batch comes back with its own rows and types. ``named`` names the n-th
    file; the folder is made before the first one (none when there is no batch). Before each
    batch it looks for the file's stop signal (``stopping``): a failed file's scratch is not
    written after the client removed it.
    """
    segments: list[Segment] = []
    writer: SegmentWriter | None = None
    look = Look(scratch)
    try:
        for batch in batches:
            look()
            if writer is None or not writer.schema.equals(batch.schema):
                if writer is not None:
                    segments.append(writer.close())
                else:
                    fs, folder = store.open(scratch)
                    fs.create_dir(folder, recursive=True)
                uri = f"{scratch.rstrip('/')}/{named(len(segments))}"
                writer = SegmentWriter(store, uri, batch.schema)
            writer.write(batch)
    finally:
        if writer is not None:
            segments.append(writer.close())
    return tuple(segments)


class SegmentWriter:
    """Append batches of one schema to one IPC file in the scratch folder, as they are."""

    def __init__(self, store: Store, uri: str, schema: pa.Schema) -> None:
        fs, path = store.open(uri)
        self.uri, self.schema = uri, schema
        self.rows: list[int] = []
        self._sink = fs.open_output_stream(path)
        self._writer = pa.ipc.new_file(self._sink, schema)

    def write(self, batch: pa.RecordBatch) -> None:
        """Append one batch (empty ones too: block numbers stay the reader's)."""
        self._writer.write_batch(batch)
        self.rows.append(batch.num_rows)

    def close(self) -> Segment:
        """Finish the file; describe it."""
        self._writer.close()
        self._sink.close()
        return Segment(self.uri, self.schema, tuple(self.rows))


def fixed(
    parsed: Sequence[Parsed], first: pa.Schema, again: Callable[[int, pa.Schema], Parsed]
) -> list[Parsed]:
    """Parse again each range whose start types an earlier range's end types contradict."""
    carried = first
    out = []
    for one in parsed:
        if not one.start.equals(carried):
            one = again(one.index, carried)
        out.append(one)
        carried = one.end
    return out
