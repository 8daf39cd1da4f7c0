"""Bulk scoring where the Dask workers read, score and write the files themselves.

With ``[scoring] engine = "dask"`` a Parquet file (a user's, or a drop's lake file) is not shipped
through the client: the client reads only the footer and the first batch (to check the model's
columns and decide the column types exactly as the one-process path does), then cuts the rows
into parts aligned on the batches the local engine would read. Each part is a task: a worker
opens the file itself (a path the workers share, or an object-store URI), reads its rows batch by
batch, normalizes them with the ingest code, scores them with the model it loaded once from the
version's artifact (``scoring.bulk.worker_models``) and writes them, batch by batch as scored,
into Arrow files under a hidden scratch folder beside the output. When every part is done, one
commit task streams the parts in order through the output format's writer into the final file
(atomically on disk; one whole object on a store) and removes the scratch. A failed part
stops the rest (``scoring.bulk.stopping``) and, when they have ended, the scratch is removed:
nothing is ever published under the output's name half written, and nothing is left beside it.

Batches are the local engine's, boundary for boundary (a linear model's product may differ in
the last bit with the rows it is computed with), so both engines give the same rows, values and
errors. A worker holds a batch or two at a time: its memory follows ``batch_rows``.

A CSV file is parsed by the workers too, in byte ranges, before its parts are scored
(``scoring.bulk.csv_parts``). The ingest limits hold here as they do in one process: the
header's ``max_columns``, and ``max_file_mb`` on what a Parquet file decodes to (its pages
from the footer, the decoded bytes counted by each part and summed before the commit).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import logging
import secrets
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ingest.base.config import ReadOptions
from ingest.base.formats import OUTPUT_FORMATS, Format
from ingest.lake.remote import is_s3
from ingest.pipeline.normalize import fit_column, normalize_file, normalize_part
from ingest.readers.common import RawTable, check_width, flat_names
from ingest.readers.parquet import (
    Decoded,
    DecodedLimit,
    decoded_limit,
    decoded_slices,
    text_columns,
)
from scoring.bulk import csv_parts, stopping
from scoring.bulk.batch import (
    ScoreSummary,
    WholeNumbers,
    check_features,
    pinned_columns,
    score_batch,
    stage_rows,
    typed_read,
    write_atomic,
)
from scoring.bulk.csv_parts import ClientReads, TextSource
from scoring.bulk.filesystems import Store
from scoring.bulk.worker_models import ModelRef, current_models
from scoring.errors import ValidationFailed

if TYPE_CHECKING:
    from distributed import Client

    from scoring.bulk.engines import Engine
    from scoring.lifecycle.predictor import LoadedModel
    from scoring.monitoring.bulk import DriftWatch
    from scoring.settings import Settings

log = logging.getLogger("dropscore.score")

TABLE, LAKE = "table", "lake"  # a user's Parquet file (normalized on the worker), a lake file
CSV_SUFFIX = ".csv"  # a user's file of this name is parsed by the workers in byte ranges
PARTS_PER_THREAD = 2  # parts per worker thread: enough to balance, few enough to commit fast
PART_NAME = "part-{:05d}-{:03d}.arrow"
Progress = Callable[[int], None]


@dataclass(frozen=True)
class Plan:
    """Everything a part or the commit needs; small, and the same for every task of a file."""

    src: str  # a path the workers share, or an object-store URI
    dst: str
    fmt: str
    kind: str  # TABLE or LAKE
    batch_rows: int  # rows per batch: the local engine's, so the batches are the same
    parts: tuple[tuple[int, int], ...]  # (first row, rows) of each part, in order
    originals: dict[str, str]  # lake name -> the user's column name
    types: tuple[pa.DataType, ...] = ()  # TABLE: the column types the first batch decided
    scratch: str = ""  # the hidden folder beside dst holding the parts until the commit
    store: Store = field(default_factory=lambda: Store())
    text: TextSource | None = None  # a CSV file: its parsed blocks and batch boundaries
    limit: DecodedLimit = field(default_factory=DecodedLimit)  # TABLE: max_file_mb decoded


@dataclass(frozen=True)
class Done:
    """What a part reports: its rows, its drift, the bytes it decoded, the files it wrote."""

    index: int
    scored: int
    failed: int
    watch: DriftWatch | None = None
    decoded: int = 0  # bytes the part's Parquet rows decoded to
    files: tuple[str, ...] = ()  # its scored batches, as written: one file per run of a schema

    @property
    def rows(self) -> int:
        """Return the rows the part wrote."""
        return self.scored + self.failed


# -- the client side -----------------------------------------------------------------------


def score_lake_on_workers(
    engine: Engine | None,
    model: LoadedModel,
    lake_path: Path | str,
    dst: Path | str,
    *,
    column_map: dict[str, str],
    fmt: str,
    batch_rows: int,
    progress: Progress | None = None,
    observe: DriftWatch | None = None,
) -> ScoreSummary | None:
    """Score a drop's lake file on the workers when the engine's cluster reaches both files.

    What a score drop calls before ``batch.score_lake_file``: None when the engine is not
    Dask, a worker could not open the files, or the registry does not hold the model's version
    (then the one-process path runs, with the model sent once per file).
    """
    from scoring.bulk.engines import DaskEngine
    from scoring.bulk.filesystems import workers_reach

    if not isinstance(engine, DaskEngine):
        return None
    if not (
        workers_reach(str(lake_path), engine.address) and workers_reach(str(dst), engine.address)
    ):
        return None
    ref = engine.ref(model)
    if ref is None:
        return None
    return score_remote(
        engine.client,
        str(lake_path),
        str(dst),
        ref,
        batch_rows=batch_rows,
        fmt=fmt,
        kind=LAKE,
        column_map=column_map,
        progress=progress,
        store=engine.store,
        observe=observe,
    )


def score_on_workers(
    settings: Settings,
    src: str,
    dst: str,
    ref: ModelRef,
    *,
    fmt: str,
    observe: DriftWatch | None = None,
) -> ScoreSummary | None:
    """Score a user's file on the settings' cluster, the workers reading it; None: read it here.

    What a batch job and ``dropscore score`` call when the workers reach both locations, with
    the ingest limits of the settings. None (the reason logged) when the file is a CSV the
    workers cannot read as the local reader would: the caller then reads it in its process.
    """
    from scoring.bulk.engines import dask_client
    from scoring.ingest_options import read_options

    try:
        return score_remote(
            dask_client(settings.scoring.dask_address),
            src,
            dst,
            ref,
            batch_rows=settings.scoring.batch_rows,
            fmt=fmt,
            store=Store.of(settings),
            observe=observe,
            read=read_options(settings),
        )
    except ClientReads as why:
        log.info("the client reads the file", extra={"file": src, "reason": str(why)})
        return None


def score_remote(
    client: Client,
    src: str,
    dst: str,
    ref: ModelRef,
    *,
    batch_rows: int,
    fmt: str,
    kind: str = TABLE,
    column_map: dict[str, str] | None = None,
    progress: Progress | None = None,
    store: Store | None = None,
    observe: DriftWatch | None = None,
    read: ReadOptions | None = None,
) -> ScoreSummary:
    """Score a Parquet or CSV file on the cluster: workers read, score and write; one commit.

    With ``observe`` (a run's drift watch) each part accumulates its own rows' drift on its
    worker and returns it; the client merges them in order, so no row travels back for it.
    ``read`` carries the ingest limits (``read_options``); a CSV file the workers cannot read
    as the local reader would raises ``ClientReads`` before anything is written.
    """
    started = time.perf_counter()
    if fmt not in OUTPUT_FORMATS:
        raise ValidationFailed(f"format {fmt!r} is not one of {', '.join(OUTPUT_FORMATS)}")
    store = store or Store()
    read = replace(read or ReadOptions(), batch_rows=stage_rows(batch_rows))
    args = (client, src, dst, ref, read, fmt, kind, column_map or {}, store)
    plan = _plan_csv(*args) if _is_csv(src, kind) else _plan(*args)
    output = None if is_s3(dst) else Path(dst)
    summary = ScoreSummary(model_version=ref.version, output=output, format=fmt)
    futures = [
        client.submit(score_part, plan, i, ref, observe, pure=False) for i in range(len(plan.parts))
    ]
    done: list[Done] = []
    try:
        for future in futures:  # in order: progress follows the file
            part: Done = future.result()
            if observe is not None and part.watch is not None:
                observe.merge(part.watch)
            summary.rows_scored += part.scored
            summary.rows_failed += part.failed
            done.append(part)
            if progress is not None:
                progress(part.rows)
        plan.limit.check(sum(part.decoded for part in done))  # none published past it
        files = [name for part in done for name in part.files]
        client.submit(commit_parts, plan, files, pure=False).result()
    except BaseException:
        _abandon(client, futures, plan.store, plan.scratch)
        raise
    summary.seconds = time.perf_counter() - started
    return summary


def _is_csv(src: str, kind: str) -> bool:
    """Tell whether a user's file is CSV (parsed in byte ranges) rather than Parquet."""
    return kind == TABLE and src.lower().endswith(CSV_SUFFIX)


def _plan(
    client: Client,
    src: str,
    dst: str,
    ref: ModelRef,
    read: ReadOptions,
    fmt: str,
    kind: str,
    column_map: dict[str, str],
    store: Store,
) -> Plan:
    """Read the footer (and, for a user's file, the first batch) and cut the rows into parts."""
    from scoring.lifecycle.schema import FeatureSchema

    size = read.batch_rows
    schema = FeatureSchema.from_dict(ref.card["schema"])
    parquet = _open_parquet(store, src)
    rows = parquet.metadata.num_rows
    scratch = _scratch(store, dst)
    threads = max(1, sum(client.nthreads().values()))
    batches = max(1, -(-rows // size))
    per_part = max(1, -(-batches // (PARTS_PER_THREAD * threads)))
    parts = tuple(
        (first * size, min(per_part * size, rows - first * size))
        for first in range(0, batches, per_part)
    )
    base = Plan(src, dst, fmt, kind, size, parts, {}, (), scratch, store)
    if kind == LAKE:
        originals = {new: old for old, new in column_map.items()}
        check_features(parquet.schema_arrow.names, schema, originals)
        return replace(base, originals=originals)
    base = replace(base, limit=_check_stored(parquet, store, src, read))
    first = normalize_file(_raw(parquet, base, 0, min(size, rows), Decoded(base.limit)), file_id=0)
    originals = {new: old for old, new in first.column_map.items()}
    check_features(first.schema.names, schema, originals)
    types = tuple(first.schema.field(i).type for i in range(len(first.schema) - 2))
    return replace(base, originals=originals, types=types)


def _plan_csv(
    client: Client,
    src: str,
    dst: str,
    ref: ModelRef,
    read: ReadOptions,
    fmt: str,
    kind: str,
    column_map: dict[str, str],
    store: Store,
) -> Plan:
    """Have the workers parse the CSV file in byte ranges; cut its batches into parts.

    Raises ``ClientReads`` (the scratch removed) when the file is not one the local reader
    cuts in chunks, or a range does not parse.
    """
    from scoring.lifecycle.schema import FeatureSchema

    size = read.batch_rows
    schema = FeatureSchema.from_dict(ref.card["schema"])
    layout, length = csv_parts.layout_of(store, src, typed_read(read, schema))
    scratch = _scratch(store, dst)
    threads = max(1, sum(client.nthreads().values()))
    ranges = tuple(csv_parts.byte_ranges(store, src, length, threads))
    job = csv_parts.RangeJob(src, scratch, layout, ranges, store, read.max_line_bytes)

    def again(index: int, types: pa.Schema) -> csv_parts.Parsed:
        parsed: csv_parts.Parsed = client.submit(
            csv_parts.parse_range, job, index, types, pure=False
        ).result()
        return parsed

    futures = [
        client.submit(csv_parts.parse_range, job, i, layout.schema, pure=False)
        for i in range(len(job.ranges))
    ]
    try:
        parsed = csv_parts.fixed([f.result() for f in futures], layout.schema, again)
        cuts = csv_parts.batch_cuts(csv_parts.blocks_of(parsed), size)
        if not cuts:
            raise ClientReads("no rows were parsed")
        pinned = pinned_columns(Format.CSV, layout.columns, schema)
        text = TextSource(layout, tuple(s for p in parsed for s in p.segments), cuts)
        first = normalize_file(_text_raw(text, store, 0, cuts[0]), file_id=0)
        originals = {new: old for old, new in first.column_map.items()}
        check_features(first.schema.names, schema, originals)
    except csv_parts.RangeUnreadable as exc:
        _abandon(client, futures, store, scratch)
        raise ClientReads(exc.message) from exc
    except BaseException:
        _abandon(client, futures, store, scratch)
        raise
    text = replace(text, pinned=tuple(originals.get(name, name) for name in pinned))
    per_part = max(1, -(-len(cuts) // (PARTS_PER_THREAD * threads)))
    edges = [0, *cuts[per_part - 1 :: per_part]]
    if edges[-1] != cuts[-1]:
        edges.append(cuts[-1])
    parts = tuple((a, b - a) for a, b in itertools.pairwise(edges))
    types = tuple(first.schema.field(i).type for i in range(len(first.schema) - 2))
    return Plan(src, dst, fmt, TABLE, size, parts, originals, types, scratch, store, text=text)


def _scratch(store: Store, dst: str) -> str:
    """Name a fresh hidden scratch folder beside the output."""
    fs, path = store.open(dst)
    return _join(fs, path, f".{Path(path).name}.{secrets.token_hex(6)}.parts", dst)


def _check_stored(
    parquet: pq.ParquetFile, store: Store, src: str, read: ReadOptions
) -> DecodedLimit:
    """Refuse a file wider than ``max_columns`` or whose pages exceed ``max_file_mb`` unpacked.

    The Parquet reader's own checks, from the footer alone; return the decoded-bytes limit the
    parts count against. The file's stored size comes from its filesystem's file info (a
    bucket's object has no size on local disk), for the refusal's words.
    """
    check_width(flat_names(parquet.schema_arrow), read)
    fs, path = store.open(src)
    packed = fs.get_file_info(path).size or 0
    return decoded_limit(parquet.metadata, read, src.rsplit("/", 1)[-1], packed)


def _join(fs: pafs.FileSystem, path: str, name: str, uri: str) -> str:
    """Name a sibling of ``path`` in the form its URI was given (a URI stays a URI)."""
    sibling = f"{path.rsplit('/', 1)[0]}/{name}"
    if "://" not in uri:
        return sibling
    return f"{uri.split('://', 1)[0]}://{sibling}"


def _abandon(client: Client, futures: list[Any], store: Store, scratch: str) -> None:
    """Stop a failed file's tasks, wait until each has ended, then remove its scratch.

    Only when no task runs can nothing write into the scratch after it is gone
    (``scoring.bulk.stopping``).
    """
    ended = stopping.stop_tasks(client, futures, scratch)
    _remove(store, scratch)
    if ended:  # else a task may still run: its event stays set (one scheduler entry)
        stopping.forget(client, scratch)


def _remove(store: Store, uri: str) -> None:
    """Remove a scratch folder, if it is there (best effort: a failure already speaks)."""
    try:
        fs, path = store.open(uri)
        fs.delete_dir(path)
    except (OSError, pa.ArrowException):
        pass


# -- the worker side -----------------------------------------------------------------------


def score_part(plan: Plan, index: int, ref: ModelRef, observe: DriftWatch | None = None) -> Done:
    """Score one part on this worker into its scratch file; say what it wrote.

    With ``observe`` the part's scored batches feed a watch of its own (numbered from the
    part's first row, so the sample is the one a single pass keeps), returned for the merge.
    """
    stopping.Look(plan.scratch)()  # a failed file's part ends before loading anything
    model = current_models().get(ref, plan.store.read_bytes)
    first, rows = plan.parts[index]
    watch = None if observe is None else observe.part(first)
    counts = [0, 0]
    decoded = Decoded(plan.limit)
    if plan.text is not None:
        raw = _text_raw(plan.text, plan.store, first, first + rows)
        batches = normalize_part(raw, 0, plan.types, first_row=first + 1)
    elif plan.kind == LAKE:
        batches = _aligned(_open_parquet(plan.store, plan.src), plan.batch_rows, first, rows)
    else:
        raw = _raw(_open_parquet(plan.store, plan.src), plan, first, rows, decoded)
        batches = normalize_part(raw, 0, plan.types, first_row=first + 1)
    score = functools.partial(score_batch, model=model, originals=plan.originals)

    def scored() -> Iterator[pa.RecordBatch]:
        for batch in batches:
            out, failed = score(batch)
            counts[0] += out.num_rows - failed
            counts[1] += failed
            if watch is not None:
                watch(out, plan.originals)
            yield out

    files = _write_part(scored(), plan, index)
    return Done(index, counts[0], counts[1], watch, decoded.bytes, files)


def _write_part(batches: Iterator[pa.RecordBatch], plan: Plan, index: int) -> tuple[str, ...]:
    """Write one part's scored batches into the scratch folder as they are; name the files.

    Arrow IPC, a file per run of batches of one schema (``csv_parts.write_segments``): each
    batch comes back at the commit with its own rows and types. (One Parquet file per part
    widened a column turned to text in a later batch on the rows before it too, which one
    pass writes as numbers.)
    """
    named = functools.partial(PART_NAME.format, index)
    segments = csv_parts.write_segments(batches, plan.store, plan.scratch, named)
    return tuple(segment.uri for segment in segments)


def commit_parts(plan: Plan, files: list[str]) -> None:
    """Stream the parts' batches in order through the format's writer; drop the scratch.

    Each batch as it was scored: the types one pass carries (``Widening``), and a CSV file's
    whole-number columns back as integers (``WholeNumbers``, the one-pass writer's own rule).
    """
    widen = Widening(plan.originals.values() if plan.kind == TABLE else ())
    whole = WholeNumbers(plan.text.pinned if plan.text is not None else ())

    def batches() -> Iterator[pa.RecordBatch]:
        for uri in files:
            fs, path = plan.store.open(uri)
            with fs.open_input_file(path) as fh:
                reader = pa.ipc.open_file(fh)
                for i in range(reader.num_record_batches):
                    yield whole(widen(reader.get_batch(i)))

    try:
        out_fs, out_path = plan.store.open(plan.dst)
        if isinstance(out_fs, pafs.LocalFileSystem):
            write_atomic(batches(), Path(out_path), plan.fmt)
        else:  # one whole object appears at the end of its upload, never half of one
            with tempfile.TemporaryDirectory(prefix="dropscore-commit-") as tmp:
                local = Path(tmp) / "out"
                write_atomic(batches(), local, plan.fmt)
                pafs.copy_files(str(local), out_path, destination_filesystem=out_fs)
    finally:
        _remove(plan.store, plan.scratch)


class Widening:
    """Carry a column widened in one part into the parts after it, as one pass carries it.

    The one-process reader widens a column from the batch that needs it on (decimals after
    whole numbers, text after numbers) and keeps the wider type for every later batch; a part
    starts again from the types of the file's first batch. The commit applies the same rule
    (``fit_column``) to what the parts wrote, so each output column has the type it has locally.
    """

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)
        self.types: dict[str, pa.DataType] = {}

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Give this batch's input columns the widest type seen so far (widening it further)."""
        for i, name in enumerate(batch.schema.names):
            if name not in self.names:
                continue
            column, running = batch.column(i), self.types.get(name)
            if running is not None and not column.type.equals(running):
                column, running = fit_column(column, running, ".")
                batch = batch.set_column(i, batch.schema.field(i).with_type(running), column)
            self.types[name] = running if running is not None else column.type
        return batch


# -- reading a part's rows as the local engine reads them ---------------------------------


def _open_parquet(store: Store, uri: str) -> pq.ParquetFile:
    """Open a Parquet file for streaming; text read as dictionaries, as the ingest reader does."""
    from ingest.base.errors import MalformedFileError

    fs, path = store.open(uri)
    try:
        source = fs.open_input_file(path)
        plain = pq.ParquetFile(source, pre_buffer=False, buffer_size=1 << 20)
        texts = text_columns(plain)
        if not texts:
            return plain
        return pq.ParquetFile(source, pre_buffer=False, buffer_size=1 << 20, read_dictionary=texts)
    except FileNotFoundError:
        problem = [{"field": "input", "problem": "not found"}]
        raise ValidationFailed(f"no file at {uri}", problem) from None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise MalformedFileError(
            f"the Parquet file is damaged or truncated ({str(exc)[:160]}); write it again",
            expected="a complete Parquet file",
        ) from exc


def _text_raw(text: TextSource, store: Store, first: int, stop: int) -> RawTable:
    """Give rows [first, stop) of a CSV file as its reader gives them: named, batched alike."""
    layout = text.layout
    return RawTable(
        Format.CSV,
        layout.encoding,
        layout.delimiter,
        list(layout.columns),
        csv_parts.rows_between(text, store, first, stop),
        layout.decimal,
    )


def _raw(
    parquet: pq.ParquetFile, plan: Plan, first: int, rows: int, decoded: Decoded
) -> RawTable:
    """Give a part's rows as the Parquet reader gives them: flattened, named, decoded.

    ``decoded`` adds up the bytes the rows decode to; past the plan's ``limit`` the part stops
    with the reader's own refusal, before it holds more.
    """
    columns = flat_names(parquet.schema_arrow)
    slices = _aligned(parquet, plan.batch_rows, first, rows)
    return RawTable(Format.PARQUET, None, None, columns, decoded.flattened(slices, columns))


def _aligned(parquet: pq.ParquetFile, size: int, first: int, rows: int) -> Iterator[pa.RecordBatch]:
    """Yield rows [first, first+rows) cut where the one-process reader cuts them.

    ``iter_batches(size)`` over the whole file cuts every ``size`` rows from row 0 and, when
    text is read as dictionaries, at each row group's end too (measured on pyarrow 26). Reading
    starts at the row group holding ``first`` (earlier ones are never read); the rows are cut
    again at those same places, and each batch is decoded in the reader's slices.
    """
    meta = parquet.metadata
    groups = range(meta.num_row_groups)
    ends = list(itertools.accumulate(meta.row_group(g).num_rows for g in groups))
    group = bisect.bisect_right(ends, first)  # the first row group ending after ``first``
    stop = first + rows
    cuts = set(range(first + size, stop, size)) | {stop}
    if any(pa.types.is_dictionary(t) for t in parquet.schema_arrow.types):
        cuts |= {end for end in ends if first < end < stop}
    wanted = iter(sorted(cuts))
    cut = next(wanted)
    held: list[pa.RecordBatch] = []
    at = ends[group - 1] if group else 0  # the row the held rows start at
    count = 0
    for batch in parquet.iter_batches(batch_size=size, row_groups=list(groups[group:])):
        held.append(batch)
        count += batch.num_rows
        if at < first:  # the rows of the first row group before this part
            table = pa.Table.from_batches(held)
            drop = min(first - at, count)
            held, at, count = table.slice(drop).to_batches(), at + drop, count - drop
        while count and at + count >= cut:
            table = pa.Table.from_batches(held)
            yield from decoded_slices(_one(table.slice(0, cut - at)))
            held, count, at = table.slice(cut - at).to_batches(), count - (cut - at), cut
            if cut == stop:
                return
            cut = next(wanted)


def _one(table: pa.Table) -> pa.RecordBatch:
    """Make one record batch of a table's rows (its chunks concatenated)."""
    return table.combine_chunks().to_batches(max_chunksize=max(1, table.num_rows))[0]
