"""The bulk scorer: a file of any accepted format in, a scored file out, in bounded memory.

One Flask-free core serves ``POST /score-file``, ``dropscore score``, on-arrival scoring of drops
and the sweep. Input is read batch by batch with the ingest readers and normalization (so names
and types match what the model was trained on), each batch is checked against the model's
feature schema and predicted, and the output is written incrementally under a temporary name
and renamed at the end. Peak memory follows ``batch_rows``, not the file size. The model is
passed in once, so a file is scored by one version even if a promotion lands half-way.

Reading, scoring and writing run on three threads joined by small queues
(``scoring.bulk.pipeline``), so every core works and the output is the same, in the same order,
as scoring in one thread. The model's numeric features are parsed from text as numbers
directly (``ReadOptions.column_types``) rather than inferred; the ones holding whole numbers go
back out as integers (``WholeNumbers``), so every input column keeps its type in every output
and only the added columns are new.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from threadpoolctl import ThreadpoolController, threadpool_limits

from ingest.base import atomic
from ingest.base.arrays import floats, repeated_text, to_bools, to_floats
from ingest.base.config import ReadOptions
from ingest.base.errors import IngestError
from ingest.base.formats import OUTPUT_FORMATS, Format, format_for_name, output_spec, spec_for
from ingest.pipeline.normalize import FILE_ID, ROW, normalize_file, normalize_names
from ingest.readers import open_table
from ingest.readers.parquet import bounded_batches
from scoring.bulk.engines import Engine, LocalEngine
from scoring.bulk.pipeline import Stage, close_stages
from scoring.errors import ValidationFailed
from scoring.inference.core import NON_FINITE
from scoring.lifecycle.predictor import LoadedModel
from scoring.lifecycle.schema import FeatureSchema

PROVENANCE = (FILE_ID, ROW)
Progress = Callable[[int], None]
# Sees each scored batch (input columns under the input's names) with the lake → input name map,
# in order, on the scoring thread (never the writer's): the drift monitor's hook
# (``scoring.monitoring.bulk``).
BatchHook = Callable[[pa.RecordBatch, Mapping[str, str]], None]
T = TypeVar("T")
PIPELINE_SPLIT = 2  # bulk batches are batch_rows cut in this many (see stage_rows)


class MissingFeatures(ValidationFailed):
    """The file lacks columns the model needs: refused before any row is scored."""


class TooManyRows(ValidationFailed):
    """An uploaded file has more rows than one request may score."""

    status, code = 413, "too_large"


@dataclass
class ScoreSummary:
    """What one bulk scoring produced: row counts, model version, output path."""

    rows_scored: int = 0
    rows_failed: int = 0
    model_version: str = ""
    output: Path | None = None
    format: str = ""
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        """Return every row read, scored or not."""
        return self.rows_scored + self.rows_failed


def default_format(fmt: Format) -> str:
    """Answer in the input's family (the format table's choice: CSV for Excel)."""
    return spec_for(fmt).answer.value


# Format names as people read them, for the words below.
FORMAT_WORDS = {
    Format.CSV: "CSV",
    Format.TSV: "TSV",
    Format.EXCEL: "Excel",
    Format.XLS: "Excel",
    Format.JSON: "JSON",
    Format.JSONL: "JSON Lines",
    Format.PARQUET: "Parquet",
}


def default_format_words() -> str:
    """Say what comes back without a format: "same as the input (CSV for TSV and Excel files)".

    Read from the format table, so the score page, the API's ``?format=`` description and the
    README (a test compares) say what ``default_format`` does, never less.
    """
    others: dict[str, list[str]] = {}
    for fmt in Format:
        answer = spec_for(fmt).answer
        if answer is not fmt and FORMAT_WORDS[fmt] not in others.get(FORMAT_WORDS[answer], []):
            others.setdefault(FORMAT_WORDS[answer], []).append(FORMAT_WORDS[fmt])
    if not others:
        return "same as the input"
    parts = [f"{answer} for {' and '.join(inputs)} files" for answer, inputs in others.items()]
    return f"same as the input ({'; '.join(parts)})"


def score_path(
    src: Path,
    dst: Path,
    model: LoadedModel,
    *,
    read: ReadOptions,
    fmt: str | None = None,
    progress: Progress | None = None,
    max_rows: int | None = None,
    engine: Engine | None = None,
    pipelined: bool = True,
    observe: BatchHook | None = None,
) -> ScoreSummary:
    """Score a file as a user gave it (any accepted format); output keeps their column names."""
    started = time.perf_counter()
    read = replace(read, batch_rows=stage_rows(read.batch_rows))
    raw = open_table(src, typed_read(read, model.schema))
    normalized = normalize_file(raw, file_id=0)
    originals = {new: old for old, new in normalized.column_map.items()}
    fmt = fmt or default_format(raw.format)
    pinned = pinned_columns(raw.format, raw.columns, model.schema)
    summary = _score_stream(
        normalized.batches,
        normalized.schema,
        originals,
        model,
        dst,
        fmt,
        progress,
        max_rows,
        engine,
        pipelined,
        WholeNumbers(originals.get(name, name) for name in pinned),
        observe,
    )
    summary.seconds = time.perf_counter() - started
    return summary


def score_lake_file(
    lake_path: Path,
    dst: Path,
    model: LoadedModel,
    *,
    column_map: dict[str, str],
    fmt: str,
    batch_rows: int,
    progress: Progress | None = None,
    engine: Engine | None = None,
    pipelined: bool = True,
    observe: BatchHook | None = None,
) -> ScoreSummary:
    """Score a normalized drop straight from its lake file, restoring the original names."""
    started = time.perf_counter()
    # Bounded in rows and in decoded bytes: a text value repeated on every row is stored once.
    schema, batches = bounded_batches(lake_path, stage_rows(batch_rows))
    originals = {new: old for old, new in column_map.items()}
    summary = _score_stream(
        batches,
        schema,
        originals,
        model,
        dst,
        fmt,
        progress,
        None,
        engine,
        pipelined,
        observe=observe,
    )
    summary.seconds = time.perf_counter() - started
    return summary


def _score_stream(
    batches: Iterator[pa.RecordBatch],
    schema: pa.Schema,
    originals: dict[str, str],
    model: LoadedModel,
    dst: Path,
    fmt: str,
    progress: Progress | None,
    max_rows: int | None,
    engine: Engine | None,
    pipelined: bool,
    retype: Callable[[pa.RecordBatch], pa.RecordBatch] | None = None,
    observe: BatchHook | None = None,
) -> ScoreSummary:
    """Score batches into dst: read, score and write on their own threads unless not pipelined.

    ``retype`` gives input columns back their own types just before writing (see
    ``WholeNumbers``); it runs in this thread, in order, so it may keep state across batches.
    ``observe`` sees each scored batch in order on the scoring thread (``_observed``).
    """
    if fmt not in OUTPUT_FORMATS:
        raise ValidationFailed(f"format {fmt!r} is not one of {', '.join(OUTPUT_FORMATS)}")
    check_features(schema.names, model.schema, originals)
    summary = ScoreSummary(model_version=model.version, output=dst, format=fmt)

    engine = engine or LocalEngine()
    # Only a local engine shares this process's libraries (a controller does not travel).
    blas = ThreadpoolController() if isinstance(engine, LocalEngine) else None
    score_one = functools.partial(score_batch, originals=originals, blas=blas)
    stages: list[Stage[Any]] = []
    source: Iterable[pa.RecordBatch] = batches
    if pipelined:
        source = _stage(stages, batches, "dropscore-read")
    results = engine.map_batches(score_one, source, model)
    if observe is not None:
        results = _observed(results, observe, originals)
    done: Iterable[tuple[pa.RecordBatch, int]] = results
    if pipelined:
        done = _stage(stages, results, "dropscore-score")  # closes results in its thread

    def scored() -> Iterator[pa.RecordBatch]:
        for out, failed in done:
            summary.rows_scored += out.num_rows - failed
            summary.rows_failed += failed
            if max_rows is not None and summary.rows > max_rows:
                raise TooManyRows(
                    f"the file has more than {max_rows} rows; [server] max_rows_per_request"
                    " caps one request (use `dropscore score` or a drop for bigger files)"
                )
            if progress is not None:
                progress(out.num_rows)
            yield out if retype is None else retype(out)

    try:
        write_atomic(scored(), dst, fmt)  # in this thread: progress and the row cap too
    finally:
        # Stop what is still in flight when writing stopped early (an error, the row cap):
        # the stage threads, or else the engine's generator here.
        close_stages(*stages)
        if not pipelined:
            results.close()
    return summary


def _observed(
    results: Generator[tuple[pa.RecordBatch, int], None, None],
    observe: BatchHook,
    originals: dict[str, str],
) -> Generator[tuple[pa.RecordBatch, int], None, None]:
    """Hand each scored batch to ``observe`` in order, in the thread that scores it.

    The writer is the one stage that cannot be split across cores (one Parquet file, written
    in order), so it does nothing but write: the drift monitor's work on every batch (about
    as much CPU as writing, measured at 5M rows) runs beside it, not in turn with it.
    """
    try:
        for out, failed in results:
            observe(out, originals)
            yield out, failed
    finally:
        results.close()  # stops the engine's generator (a Dask run's futures) with this one


def stage_rows(batch_rows: int) -> int:
    """Rows per batch: half of batch_rows, so the pipeline's memory is what batch_rows promises.

    The three stages hold about twice as many batches at once as one thread does (measured:
    peak RSS 428 MiB at 100,000 rows per batch, 404 MiB at 50,000, 387 MiB in one thread).
    The one-thread path cuts the same batches: a linear model's prediction can differ in the
    last bit with the batch it is computed in, and both paths must give the same bytes.
    """
    return max(1, -(-batch_rows // PIPELINE_SPLIT))


def _stage(stages: list[Stage[T]], source: Iterator[T], name: str) -> Stage[T]:
    """Start source on a thread of its own, remembered in stages so the run can close it."""
    stage = Stage(source, name)
    stages.append(stage)
    return stage


def typed_read(read: ReadOptions, schema: FeatureSchema) -> ReadOptions:
    """Parse the model's numeric features as numbers, no inference: about half the CSV work."""
    if all(f.kind != "numeric" for f in schema.features):
        return read
    return replace(read, column_types=functools.partial(_numeric_columns, schema))


def _numeric_columns(schema: FeatureSchema, names: Sequence[str]) -> Mapping[str, pa.DataType]:
    """Map the header names whose columns feed numeric features to float64."""
    lake = normalize_names(names)
    originals = dict(zip(lake, names, strict=True))
    return {originals[new]: pa.float64() for new in _numeric_lake_columns(schema, lake, originals)}


def _numeric_lake_columns(
    schema: FeatureSchema, lake: Sequence[str], originals: Mapping[str, str]
) -> list[str]:
    """Name the lake columns that feed numeric features, in the file's order."""
    numeric = {f.name for f in schema.features if f.kind == "numeric"}
    found = schema.lake_columns(lake, originals).found
    columns = {column for name, column in found.items() if name in numeric}
    return [name for name in lake if name in columns]


# The formats whose numbers are parsed from text, where ``typed_read`` pins numeric features.
PARSED_FROM_TEXT = frozenset({Format.CSV, Format.TSV})


def pinned_columns(fmt: Format, header: Sequence[str], schema: FeatureSchema) -> list[str]:
    """Name the lake columns ``typed_read`` had parsed as float64 (none outside CSV and TSV)."""
    if fmt not in PARSED_FROM_TEXT:
        return []
    lake = normalize_names(header)
    return _numeric_lake_columns(schema, lake, dict(zip(lake, header, strict=True)))


class WholeNumbers:
    """Give integer columns back their type after a read parsed them as float64 for speed.

    Text has no types: a column of ``3`` and ``12`` is read as int64 when inferred, but a numeric
    feature is pinned to float64 (half the CSV work), which turned ``3`` into ``3.0`` in Parquet
    and JSON. Decided as the lake decides a type, from the first batch: a column whose values all
    fit int64 exactly goes out as int64; one that stops fitting goes out as float64 from that
    batch on (the Parquet writer then widens the rows it already wrote, as for the lake).
    """

    def __init__(self, names: Iterable[str]) -> None:
        self.names = list(names)  # the columns still written as integers

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Cast this batch's whole-number columns to int64; drop a column that has a fraction."""
        for name in list(self.names):
            i = batch.schema.get_field_index(name)
            column = batch.column(i) if i >= 0 else None
            if column is None or not pa.types.is_float64(column.type):
                self.names.remove(name)  # read as text after a bad value, or absent: as it is
                continue
            try:
                whole = pc.cast(column, pa.int64(), safe=True)  # refuses 2.5, NaN, ±inf, 1e300
            except pa.ArrowInvalid:
                self.names.remove(name)
                continue
            batch = batch.set_column(i, batch.schema.field(i).with_type(pa.int64()), whole)
        return batch


def check_features(
    columns: list[str], schema: FeatureSchema, originals: dict[str, str] | None = None
) -> None:
    """Refuse a file missing any feature column, naming each, before scoring a row.

    A column two features would both read (``A`` and ``a`` over a file with one of them) is
    refused too: scoring one of them from the other's column would be a wrong answer.
    """
    originals = originals or {}
    resolved = schema.lake_columns(columns, originals)
    if resolved.missing:
        missing = resolved.missing
        shown = [originals.get(c, c) for c in columns if c not in PROVENANCE]
        raise MissingFeatures(
            f"the file lacks the model's feature columns: {', '.join(missing)}"
            f" (it has: {', '.join(shown[:30])}{'…' if len(shown) > 30 else ''})",
            [{"field": name, "problem": "missing column"} for name in missing],
        )
    if resolved.shared:
        clashes = [
            f"{' and '.join(names)} would all read the column {originals.get(c, c)!r}"
            for c, names in resolved.shared.items()
        ]
        raise MissingFeatures(
            f"the file's columns do not tell the model's features apart: {'; '.join(clashes)}"
            " (head each feature's column exactly as the model names it)",
            [
                {"field": name, "problem": f"shares the column {originals.get(c, c)!r}"}
                for c, names in resolved.shared.items()
                for name in names
            ],
        )


def score_batch(
    batch: pa.RecordBatch,
    model: LoadedModel,
    originals: dict[str, str],
    blas: ThreadpoolController | None = None,
) -> tuple[pa.RecordBatch, int]:
    """Predict one batch; rows that cannot be scored get a null prediction and an error."""
    n = batch.num_rows
    X, errors = features_from_batch(batch, model.schema, originals)
    ok = np.array([e is None for e in errors], dtype=bool) if errors else np.ones(n, dtype=bool)
    columns: dict[str, pa.Array] = {}
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if name not in PROVENANCE:
            columns[originals.get(name, name)] = column
    # One BLAS thread: a multi-threaded gemv splits rows between threads and the rows at the
    # split can differ in the last bit, so a value would depend on the core count where the
    # batch runs (this process, a Dask worker). Prediction here is gemv-sized: no speed lost.
    # ``blas``: a controller made once per run (finding the loaded libraries costs ~8 ms, paid
    # per batch otherwise); without one (a Dask worker) the libraries are found per batch.
    with (blas.limit if blas is not None else threadpool_limits)(limits=1, user_api="blas"):
        columns.update(_predict(model, X, ok))
    lost = ok & to_bools(columns["prediction"].is_null())
    if lost.any():  # a non-finite prediction (inputs far out of range) fails its row
        errors = errors or [None] * n
        for row in np.flatnonzero(lost):
            errors[row] = NON_FINITE
        ok = ok & ~lost
    # Built by Arrow, not from n Python objects: ~13 ms per 100,000 rows saved.
    columns["model_version"] = repeated_text(model.version, n)
    columns["error"] = pa.array(errors, pa.string()) if errors else pa.nulls(n, pa.string())
    failed = int(n - ok.sum())
    return pa.RecordBatch.from_pydict(columns), failed


def features_from_batch(
    batch: pa.RecordBatch, schema: FeatureSchema, originals: Mapping[str, str] | None = None
) -> tuple[np.ndarray, list[str | None]]:
    """Lay a batch out as the model's input; collect one error message per bad row.

    Each feature is read from the lake column ``FeatureSchema.lake_columns`` finds for it
    (``originals``: lake name -> the user's header), so a model whose features are not lake
    names scores the file as its headers were written.
    """
    n = batch.num_rows
    found = schema.lake_columns(batch.schema.names, originals).found
    errors: list[str | None] = []
    dtype = np.float64 if schema.numeric_only else object
    X = np.empty((n, len(schema.features)), dtype=dtype)
    for i, feat in enumerate(schema.features):
        column = batch.column(found[feat.name])  # check_features saw that each has one
        if feat.kind == "numeric":
            values, bad, infinite = _numeric(column)
            X[:, i] = values
            if bad is not None:
                errors = errors or [None] * n
                raw = column.to_pylist()
                for row in np.flatnonzero(bad):
                    problem = (
                        "expected a finite number"
                        if infinite is not None and infinite[row]
                        else f"expected a number, got {raw[row]!r}"
                    )
                    message = f"{feat.name}: {problem}"
                    errors[row] = message if errors[row] is None else f"{errors[row]}; {message}"
        else:
            import pandas as pd  # only for text features: `serve` starts without pandas

            text = pc.cast(column, pa.string()) if column.type != pa.string() else column
            values = np.array(text.to_pylist(), dtype=object)
            values[pd.isna(values)] = np.nan
            X[:, i] = values
    return X, errors


def _numeric(column: pa.Array) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Return float values, a mask of rows that cannot be scored, and which of them are infinite.

    An infinite number (``inf``, or ``1e400`` read as one) fails its row, as text does; NaN and
    empty cells are missing values the model imputes.
    """
    t = column.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        values = to_floats(column.cast(pa.float64()))
        infinite = np.isinf(values)
        if not infinite.any():
            return values, None, None
        return np.where(infinite, np.nan, values), infinite, infinite
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        import pandas as pd  # only for numbers written as text: `serve` starts without pandas

        series = pd.Series(column.to_pylist(), dtype=object)
        stripped = series.str.strip()
        values = pd.to_numeric(stripped, errors="coerce").to_numpy(dtype=np.float64, copy=True)
        blank = series.isna() | (stripped == "")
        infinite = np.isinf(values)
        bad = ~blank.to_numpy() & ~np.isfinite(values)
        values[~np.isfinite(values)] = np.nan
        return values, (bad if bad.any() else None), (infinite if infinite.any() else None)
    # dates and anything else cannot feed a numeric feature
    bad = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    return np.full(len(column), np.nan), (bad if bad.any() else None), None


def _predict(model: LoadedModel, X: np.ndarray, ok: np.ndarray) -> dict[str, pa.Array]:
    """Predict the good rows in one call; failed rows get nulls."""
    n = len(ok)
    good = X if ok.all() else X[ok]
    out: dict[str, pa.Array] = {}
    if model.schema.task == "regression":
        pred = np.full(n, np.nan)
        if len(good):
            pred[ok] = model.fast(good) if model.fast is not None else model.pipeline.predict(good)
        out["prediction"] = floats(pred, ok & np.isfinite(pred))
        return out
    labels = model.pipeline.predict(good) if len(good) else np.array([])
    full = np.empty(n, dtype=object)
    full[ok] = labels
    out["prediction"] = pa.array(full.tolist(), mask=~ok)
    if hasattr(model.pipeline, "predict_proba"):
        proba = model.pipeline.predict_proba(good) if len(good) else np.empty((0, 0))
        for j, label in enumerate(model.classes):
            column = np.full(n, np.nan)
            if len(good):
                column[ok] = proba[:, j]
            out[f"probability_{label}"] = pa.array(column, pa.float64(), mask=~ok)
    return out


def write_atomic(batches: Iterator[pa.RecordBatch], dst: Path, fmt: str) -> None:
    """Write batches under a temporary name beside dst with the format's writer, then rename."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    writer = output_spec(fmt).write_function()
    with atomic.replacing(dst) as tmp:
        if not writer(batches, tmp):
            raise ValidationFailed("the file holds no rows to score")


def output_name(original: str, file_id: int, fmt: str) -> str:
    """Name an outbox file from the drop's name and ledger id: readable and collision-free."""
    stem = Path(original).name
    if stem.lower().endswith(".gz"):
        stem = stem[:-3]
    stem = Path(stem).stem
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip("._") or "file"
    return f"{safe[:100]}.{file_id}.scored{output_spec(fmt).suffixes[0]}"


def estimate_rows(src: Path) -> int | None:
    """Guess the row count for a progress bar: exact for Parquet, from line length for text."""
    try:
        fmt, gzipped = format_for_name(src.name)
        if fmt is Format.PARQUET:
            return pq.ParquetFile(src).metadata.num_rows
        if spec_for(fmt).row_per_line and not gzipped:
            with open(src, "rb") as fh:
                sample = fh.read(1 << 20)
            lines = sample.count(b"\n")
            if lines > 1:
                return max(1, int(src.stat().st_size / (len(sample) / lines)) - 1)
    except (OSError, pa.ArrowException, IngestError):
        return None
    return None
