"""Read the training lake for a retrain: only the model's columns, at most ``max_rows`` rows.

The lake is reached through ``ingest.lake.store.Lake`` (its files, footers and batches), never
as local Parquet files, so a lake on another filesystem trains the same way.

A lake file that lacks the target or one of the model's features is left out (and named on the
card), so an odd drop can never add or remove features. Row counts come from Parquet footers;
when the labelled rows exceed ``max_rows``, a reproducible sample (seeded by ``random_state``,
stratified by class for classifiers) is drawn file by file, batch by batch, so memory stays
bounded by the sample and one batch, never by the lake. A column the files hold as different
kinds (text in some, numbers in others) refuses the run, naming the column and the files.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ingest.lake.store import Lake, lake_conflicts, unify_schemas
from scoring.lifecycle.schema import TrainingDataError

FILE_ID = "_file_id"
PROVENANCE = ("_file_id", "_row")
BATCH_ROWS = 65_536


@dataclass
class TrainingData:
    """The frame a retrain fits on, and which lake files it came from."""

    frame: pd.DataFrame
    file_ids: list[int]
    lake_files: list[str]  # every lake file looked at, used or left out
    sampled_from: int = 0  # labelled rows in the files used, before sampling
    skipped_files: dict[str, str] = field(default_factory=dict)  # lake file -> why left out
    dropped_nonfinite: dict[str, int] = field(default_factory=dict)  # column -> rows left out


@dataclass(frozen=True)
class LakeFile:
    """A lake file's footer facts, read without loading its rows."""

    lake: Lake
    name: str
    columns: tuple[str, ...]
    schema: pa.Schema
    rows: int  # from the footer, labelled or not


def scan(lake_dir: Lake | Path) -> list[LakeFile]:
    """Read each lake file's footer (a few KB); a file removed meanwhile is simply absent."""
    lake = Lake.of(lake_dir)
    out = []
    for name in lake.names():
        try:
            footer = lake.footer(name)
        except FileNotFoundError:  # quarantined between listing and reading
            continue
        out.append(LakeFile(lake, name, tuple(footer.schema.names), footer.schema, footer.rows))
    return out


def usable_files(
    files: Sequence[LakeFile], target: str, features: Sequence[str] | None
) -> tuple[list[LakeFile], dict[str, str]]:
    """Keep the files holding the target and every feature; say why each other one is left out."""
    keep, skipped = [], {}
    for lf in files:
        missing = [c for c in (target, *(features or ())) if c not in lf.columns]
        if missing:
            skipped[lf.name] = f"lacks {', '.join(missing)}"
        else:
            keep.append(lf)
    return keep, skipped


def labelled_rows(lake_dir: Lake | Path, target: str, features: Sequence[str] | None) -> int:
    """Count the rows a retrain could fit on (usable files, target set), reading only the target,
    so a caller can tell whether ``[training] min_rows`` is reached without loading the lake."""
    files, _ = usable_files(scan(lake_dir), target, features)
    return sum(_label_counts(files, target, stratify=False).values())


def common_columns(files: Sequence[LakeFile]) -> list[str]:
    """Columns every file holds, in the first file's order: no drop adds a column on its own."""
    if not files:
        return []
    shared = set.intersection(*(set(lf.columns) for lf in files))
    return [c for c in files[0].columns if c in shared]


def load_training_data(
    lake_dir: Lake | Path,
    *,
    target: str,
    features: Sequence[str] | None = None,
    max_rows: int | None = None,
    stratify: bool = False,
    random_state: int = 0,
) -> TrainingData:
    """Read the model's columns from the usable lake files, sampled down to ``max_rows``.

    ``features`` None means the first model with none configured: every column all usable
    files share is read, and the schema inference decides which of them are features.
    """
    scanned = scan(lake_dir)
    every = [lf.name for lf in scanned]  # the card lists all, so "no new data" stays true
    files, skipped = usable_files(scanned, target, features)
    if not files:
        return TrainingData(pd.DataFrame(), [], every, 0, skipped)
    shared = common_columns(files)
    own = [c for c in shared if c not in PROVENANCE] if features is None else [*features, target]
    names = list(dict.fromkeys([*own, *([FILE_ID] if FILE_ID in shared else [])]))
    refuse_conflicts(files, names)
    schema = _unified(files, names)
    keep, counts = None, Counter[object]()
    if max_rows is not None and sum(lf.rows for lf in files) > max_rows:  # footers say maybe
        counts = _label_counts(files, target, stratify)
        if sum(counts.values()) > max_rows:
            keep = _choose(counts, max_rows, random_state)
    tables = list(_read(files, names, target, schema, keep, stratify))
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    table, dropped = drop_nonfinite(table, [n for n in names if n not in PROVENANCE])
    frame = table.to_pandas()
    total = sum(counts.values()) if keep is not None else len(frame)
    file_ids = sorted(int(i) for i in frame[FILE_ID].dropna().unique()) if FILE_ID in frame else []
    return TrainingData(frame, file_ids, every, total, skipped, dropped)


def drop_nonfinite(table: pa.Table, names: Sequence[str]) -> tuple[pa.Table, dict[str, int]]:
    """Leave out rows holding an infinite number, counting them per column.

    The intake refuses such a training drop, but a lake an older version filled may hold one;
    scikit-learn would fail the whole run on it, so the row goes and the run says so.
    """
    bad: pa.ChunkedArray | None = None
    counts: dict[str, int] = {}
    for name in names:
        column = table.column(name)
        if not pa.types.is_floating(column.type):
            continue
        infinite = pc.fill_null(pc.is_inf(column), False)
        count = int(pc.sum(pc.cast(infinite, pa.int64())).as_py() or 0)
        if count:
            counts[name] = count
            bad = infinite if bad is None else pc.or_(bad, infinite)
    if bad is None:
        return table, counts
    return table.filter(pc.invert(bad)), counts


def refuse_conflicts(files: Sequence[LakeFile], names: Sequence[str]) -> None:
    """Refuse to train on a column the lake's files hold as different kinds, naming the files.

    Reading it anyway would turn the numbers to text and one-hot encode every distinct value
    (a MemoryError, or a numeric feature trained as a category); a person must remove the
    files an older version let in with the wrong kind of values.
    """
    wanted = set(names)
    conflicts = lake_conflicts(
        (lf.name, pa.schema([f for f in lf.schema if f.name in wanted])) for lf in files
    )
    if conflicts:
        raise TrainingDataError("; ".join(c.message for c in conflicts))


def _unified(files: Sequence[LakeFile], names: Sequence[str]) -> pa.Schema:
    """The lake's unified schema (int/float drift reconciled) restricted to ``names``."""
    schema = unify_schemas(lf.schema for lf in files)
    assert schema is not None
    return pa.schema([schema.field(n) for n in names])


def _label_counts(files: Sequence[LakeFile], target: str, stratify: bool) -> Counter[object]:
    """Count labelled rows per stratum (its class for a classifier), reading only the target."""
    counts: Counter[object] = Counter()
    for lf in files:
        for batch in _batches(lf, [target]):
            labels = batch.column(target).drop_null()
            if not stratify:
                counts[None] += len(labels)
                continue
            for item in pc.value_counts(labels).to_pylist():
                counts[item["values"]] += item["counts"]
    return counts


def _choose(counts: Counter[object], max_rows: int, seed: int) -> dict[object, np.ndarray]:
    """Pick, per stratum, which labelled rows (by ordinal within the stratum) to keep."""
    total = sum(counts.values())
    strata = sorted(counts, key=repr)
    exact = {s: counts[s] * max_rows / total for s in strata}
    quota = {s: min(counts[s], max(int(exact[s]), min(2, counts[s]))) for s in strata}
    by_remainder = sorted(strata, key=lambda s: (-(exact[s] - int(exact[s])), repr(s)))
    while sum(quota.values()) < max_rows:  # hand out what rounding down left over
        grew = False
        for s in by_remainder:
            if sum(quota.values()) < max_rows and quota[s] < counts[s]:
                quota[s] += 1
                grew = True
        if not grew:
            break
    while sum(quota.values()) > max_rows:  # the per-class minimum overshot: trim the largest
        biggest = max(strata, key=lambda s: (quota[s], repr(s)))
        quota[biggest] -= 1
    rng = np.random.default_rng(seed)
    return {s: np.sort(rng.choice(counts[s], quota[s], replace=False)) for s in strata}


def _read(
    files: Sequence[LakeFile],
    names: Sequence[str],
    target: str,
    schema: pa.Schema,
    keep: dict[object, np.ndarray] | None,
    stratify: bool,
) -> Iterator[pa.Table]:
    """Yield each file's labelled rows (or its chosen ones) cast to the unified schema."""
    seen: Counter[object] = Counter()
    for lf in files:
        for batch in _batches(lf, names):
            labelled = batch.filter(pc.is_valid(batch.column(target)))
            if keep is not None:
                labelled = labelled.take(pa.array(_picks(labelled, target, stratify, keep, seen)))
            if len(labelled):
                yield pa.Table.from_batches([labelled]).select(schema.names).cast(schema)


def _picks(
    batch: pa.RecordBatch,
    target: str,
    stratify: bool,
    keep: dict[object, np.ndarray],
    seen: Counter[object],
) -> np.ndarray:
    """Positions in this batch of the rows whose per-stratum ordinal was chosen."""
    labels = batch.column(target).to_numpy(zero_copy_only=False)
    picked = []
    for stratum, chosen in keep.items():
        rows = np.nonzero(labels == stratum)[0] if stratify else np.arange(len(labels))
        ordinals = seen[stratum] + np.arange(len(rows))
        seen[stratum] += len(rows)
        j = np.minimum(np.searchsorted(chosen, ordinals), max(len(chosen) - 1, 0))
        hit = chosen[j] == ordinals if len(chosen) else np.zeros(len(rows), dtype=bool)
        picked.append(rows[hit])
    return np.sort(np.concatenate(picked)) if picked else np.empty(0, dtype=np.int64)


def _batches(lf: LakeFile, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
    """Stream one file's columns in order, a bounded batch at a time."""
    yield from lf.lake.batches(lf.name, columns, BATCH_ROWS)
