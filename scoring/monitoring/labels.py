"""Late labels: join a labelled drop to the answers given for the same rows, and measure them.

When a training drop reaches the lake carrying the model's ``[model] id_columns`` and its
target, its rows are joined by id to the answers the model gave: the prediction log's rows
(``scoring.monitoring.predlog``: a row's id is its request id, ``<request id>:<row>`` in a
request of many) and the scored drops' outbox files (their id columns, as the ledger points to
them). Each joined row is kept once (``scoring.monitoring.outcomes``), and the realized metrics
of every (version, UTC day) that got new rows are measured again with the very function the
trainer measures its hold-out with (``scoring.lifecycle.training.task_metrics``).

Memory is bounded by the batch, not the files: the labels are read ``BATCH_ROWS`` at a time,
and each batch is matched against the answers streamed a batch at a time too (a batch of
labels costs one pass over the answers). Several id columns make one key, their values joined
by ``|``. When the champion's realized primary metric on a day falls below its hold-out's by
``[monitoring] performance_margin``, the reaction queues a ``performance`` retrain.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from ingest.base.logs import bound
from ingest.lake.remote import StorageRoot
from ingest.lake.store import Lake
from ingest.state.records import FileRecord
from scoring.lifecycle.estimators import PRIMARY
from scoring.lifecycle.schema import FeatureSchema, normalize_name
from scoring.models.model import Model
from scoring.monitoring.outcomes import Joined
from scoring.monitoring.predlog import PREDICTION, ROW_ID, TIME, VERSION
from scoring.monitoring.reaction import Reaction
from scoring.storage import storage_root

log = logging.getLogger("dropscore.labels")

BATCH_ROWS = 65_536  # labels matched per pass over the answers
LOG_SOURCE = "log"
KEY_SEPARATOR = "|"


def text(value: Any) -> str | None:
    """Spell a label, an answer or an id one way whatever its type (1, 1.0 and "1" alike)."""
    if value is None:
        return None
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            return None
        if float(value).is_integer():
            return str(int(value))
    return str(value)


def keys(columns: list[pa.Array]) -> list[str | None]:
    """Make each row's join key from its id columns' values (None when one is missing)."""
    values = [c.to_pylist() for c in columns]
    out: list[str | None] = []
    for row in zip(*values, strict=True):
        parts = [text(v) for v in row]
        out.append(None if any(p is None for p in parts) else KEY_SEPARATOR.join(parts))  # type: ignore[arg-type]
    return out


def label_batches(
    model: Model, record: FileRecord, batch_rows: int = BATCH_ROWS
) -> Iterator[dict[str, str]]:
    """Yield a labelled drop's rows as ``{key: label}``, a bounded batch at a time."""
    settings = model.settings
    ids = [normalize_name(c) for c in settings.model.id_columns]
    target = normalize_name(settings.model.target)
    if not ids or not record.lake_path:
        return
    # The model's lake, not the ledger's local path: under [storage] url the file is only in
    # the bucket; its name is the same in either place.
    lake = model.lake("train")
    name = Path(record.lake_path).name
    if not {*ids, target} <= set(lake.schema(name).names):
        return
    for batch in lake.batches(name, [*ids, target], batch_rows):
        found = keys([batch.column(i) for i in ids])
        labels = [text(v) for v in batch.column(target).to_pylist()]
        yield {k: y for k, y in zip(found, labels, strict=True) if k is not None and y is not None}


def log_matches(model: Model, labels: Mapping[str, str]) -> Iterator[Joined]:
    """Join labels to the prediction log's rows with the same id."""
    lake = model.prediction_log()
    for name in lake.names():
        for batch in _log_batches(lake, name):
            rows = batch.to_pydict()
            for rid, version, at, answer in zip(
                rows[ROW_ID], rows[VERSION], rows[TIME], rows[PREDICTION], strict=True
            ):
                label = labels.get(rid)
                if label is not None and text(answer) is not None:
                    day = at.astimezone(UTC).date().isoformat()
                    yield Joined(LOG_SOURCE, rid, int(version), day, label, str(text(answer)))


def _log_batches(lake: Lake, name: str) -> Iterator[pa.RecordBatch]:
    """Stream one log part's join columns; a part rotated away meanwhile holds nothing."""
    try:
        yield from lake.batches(name, [ROW_ID, VERSION, TIME, PREDICTION])
    except (FileNotFoundError, KeyError, pa.ArrowInvalid):
        return


def drop_matches(model: Model, labels: Mapping[str, str]) -> Iterator[Joined]:
    """Join labels to the scored drops' outbox rows with the same ids."""
    ids = [normalize_name(c) for c in model.settings.model.id_columns]
    outbox = _Outbox(model)
    for record in model.ledger.list(kind="score", limit=None):
        out = outbox.find(record.output_path)
        if out is None or record.model_version is None:
            continue
        day = (record.scored_at or record.updated_at)[:10]
        for batch in _outbox_batches(*out, ids):
            found = keys([batch.column(i) for i in ids])
            answers = batch.column(PREDICTION).to_pylist()
            for key, answer in zip(found, answers, strict=True):
                label = labels.get(key) if key is not None else None
                if label is not None and text(answer) is not None:
                    version = int(record.model_version)
                    yield Joined(f"file:{record.id}", str(key), version, day, label,
                                 str(text(answer)))  # fmt: skip


class _Outbox:
    """Find scored outputs where they are: the local outbox, else the bucket's.

    Under ``[storage] url`` a scored file is uploaded and its local copy removed
    (``scoring.bulk.drops.publish_output``); one whose upload failed stays local, so the local
    file is looked for first. The bucket is opened once, on the first output not on disk.
    """

    def __init__(self, model: Model) -> None:
        self.model = model
        self._root: StorageRoot | None = None

    def find(self, stored: str | None) -> tuple[pafs.FileSystem, str] | None:
        """Return an output's filesystem and path, or None when it is nowhere (removed)."""
        out = self.model.ledger.resolve(stored)
        if out is None:
            return None
        if out.is_file():
            return pafs.LocalFileSystem(), str(out)
        settings = self.model.settings
        if not settings.storage.url:
            return None
        if self._root is None:
            self._root = storage_root(settings)
        path = self._root.join(settings.layout.key(out))
        if self._root.fs.get_file_info(path).type != pafs.FileType.File:
            return None
        return self._root.fs, path


def _outbox_batches(fs: pafs.FileSystem, path: str, ids: list[str]) -> Iterator[pa.RecordBatch]:
    """Stream an outbox file's id columns and answers under their normalized names.

    Parquet and CSV outputs are read; a JSON answer (to a JSON drop) is not joined.
    """
    folder, _, name = path.rpartition("/")
    if name.endswith(".parquet"):
        lake = Lake(fs, folder)
        names = {normalize_name(n): n for n in lake.schema(name).names}
        if not all(i in names for i in ids) or PREDICTION not in names:
            return
        for batch in lake.batches(name, [names[i] for i in ids] + [PREDICTION]):
            yield batch.rename_columns([*ids, PREDICTION])
    elif name.endswith(".csv"):
        import pyarrow.csv as pacsv

        with fs.open_input_stream(path) as source, pacsv.open_csv(source) as reader:
            names = {normalize_name(n): n for n in reader.schema.names}
            if not all(i in names for i in ids) or PREDICTION not in names:
                return
            for batch in reader:
                table = pa.Table.from_batches([batch]).select(
                    [names[i] for i in ids] + [PREDICTION]
                )
                yield from table.rename_columns([*ids, PREDICTION]).to_batches()


def join_drop(
    model: Model, record: FileRecord, batch_rows: int = BATCH_ROWS
) -> set[tuple[int, str]]:
    """Join a labelled drop to every answer with the same ids; return the (version, day) pairs
    that got new rows."""
    touched: set[tuple[int, str]] = set()
    for labels in label_batches(model, record, batch_rows):
        if not labels:
            continue
        for matches in (log_matches(model, labels), drop_matches(model, labels)):
            chunk: list[Joined] = []
            for joined in matches:
                chunk.append(joined)
                if len(chunk) >= batch_rows:
                    touched |= model.outcomes.add(chunk)
                    chunk = []
            touched |= model.outcomes.add(chunk)
    return touched


def realized_metrics(
    schema: FeatureSchema, labels: list[str], answers: list[str]
) -> dict[str, Any]:
    """Measure joined rows with the hold-out's metric function; unmeasurable metrics are null."""
    from scoring.lifecycle.training import task_metrics  # scikit-learn: only when measuring

    if schema.task == "regression":
        y, pred = np.array(labels, dtype=float), np.array(answers, dtype=float)
        classes: list[Any] = []
    else:
        y, pred = np.array(labels, dtype=object), np.array(answers, dtype=object)
        classes = [text(c) for c in schema.classes]
    try:
        found = task_metrics(schema.task, classes, y, pred)
    except ValueError as exc:  # a label the version never knew, one class only
        log.info("realized metrics not measured", extra={"error": str(exc)})
        return {}
    return {k: (v if math.isfinite(v) else None) for k, v in found.items()}


def measure(model: Model, touched: set[tuple[int, str]]) -> list[tuple[int, str, dict[str, Any]]]:
    """Measure again every (version, day) that got new rows; return what was stored."""
    stored = []
    for version, day in sorted(touched):
        schema = FeatureSchema.from_dict(model.registry.card(version)["schema"])
        labels, answers = model.outcomes.pairs(version, day)
        metrics = realized_metrics(schema, labels, answers)
        model.outcomes.measured(version, day, len(labels), metrics)
        stored.append((version, day, metrics))
    return stored


def fallen(
    task: str, holdout: Mapping[str, Any], realized: Mapping[str, Any], margin: float
) -> str | None:
    """Say how the realized primary metric fell below the hold-out's by more than ``margin``,
    or None when it did not (or either is unmeasured)."""
    metric, bigger_better = PRIMARY[task]
    ours, promised = realized.get(metric), holdout.get(metric)
    if ours is None or promised is None:
        return None
    drop = (promised - ours) if bigger_better else (ours - promised)
    if drop <= margin:
        return None
    return f"realized {metric} {ours:.4f} vs hold-out {promised:.4f} (margin {margin})"


def on_labels(model: Model, reaction: Reaction) -> Callable[[FileRecord], None]:
    """Build the intake hook that joins each labelled drop and reacts to fallen metrics."""

    def hook(record: FileRecord) -> None:
        if record.kind != "train" or not model.settings.model.id_columns:
            return
        with bound(model=model.name, file_id=record.id):
            try:
                handle(record)
            except Exception:  # the drop is in the lake whatever happens here
                log.exception("labels not joined")

    def handle(record: FileRecord) -> None:
        stored = measure(model, join_drop(model, record))
        if stored:
            log.info("labels joined", extra={"days": [f"{v}/{d}" for v, d, _ in stored]})
        champion = model.registry.champion_version()
        rows = model.settings.monitoring.min_rows
        for version, day, metrics in stored:
            if version != champion or len(model.outcomes.pairs(version, day)[0]) < rows:
                continue
            card = model.registry.card(version)
            why = fallen(card["schema"]["task"], card.get("metrics") or {}, metrics,
                         model.settings.monitoring.performance_margin)  # fmt: skip
            if why:
                reaction.underperformed(model, f"version {version} on {day}: {why}")

    return hook
