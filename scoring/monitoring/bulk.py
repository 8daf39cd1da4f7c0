"""Drift while bulk scoring: the scorer hands each scored batch to a watch; the run's end records.

Every bulk path (a scored drop, ``/score-file``, ``dropscore score``, a job) asks ``BulkDrift``
for a ``DriftWatch`` before scoring and passes it to the scorer as its batch hook
(``scoring.bulk.batch``'s ``observe``); the watch adds each batch to a ``DriftAccumulator``
(bounded memory: features × bins and a sample), and ``record`` stores the report with the
version that scored. Drift is a view of the scoring, never part of it: a version without a
profile is recorded as ``not_compared`` with the reason, and a failure while accumulating or
recording is logged and leaves the scored output as it is.

A watch accumulates on a thread of its own (``dropscore-drift``): the scorer's writing thread
only hands it the batch, so the counting (about 3 ms of CPU per 50,000 rows of eleven columns)
runs beside the Parquet writing and reading, which release the GIL, instead of after each
batch's write. At most ``AHEAD`` batches wait for it, so memory stays bounded; ``settle`` waits
for them and ends the thread (``report``, ``merge`` and a watch sent to a Dask worker or back
settle first).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from scoring.lifecycle.schema import lake_columns
from scoring.monitoring import stats
from scoring.monitoring.accumulate import DriftAccumulator
from scoring.monitoring.profile import PREDICTION
from scoring.monitoring.reference import reference
from scoring.monitoring.report import DriftReport, Thresholds

if TYPE_CHECKING:
    from scoring.lifecycle.predictor import LoadedModel
    from scoring.models.model import Model
    from scoring.monitoring.records_protocol import DriftRecord

log = logging.getLogger("dropscore.drift")

AHEAD = 2  # scored batches handed to a watch's thread and not yet accumulated


class DriftWatch:
    """One scoring run's drift: fed every scored batch, reported once at the end."""

    def __init__(
        self,
        version: int,
        thresholds: Thresholds,
        accumulator: DriftAccumulator | None,
        reason: str | None = None,
        first_row: int = 0,
        reports: bool = True,
    ) -> None:
        self.version = version
        self.thresholds = thresholds
        self.accumulator = accumulator
        self.reason = reason  # why there is nothing to compare (no profile), or what failed
        self.first_row = first_row  # a Dask part's first row in the file: the sample follows it
        self.reports = reports  # False for a Dask part: its counts are reported by the parent
        self.rows = 0
        self._thread: ThreadPoolExecutor | None = None  # started by the first batch
        self._handed: deque[Future[None]] = deque()

    def __call__(self, batch: pa.RecordBatch, originals: Mapping[str, str]) -> None:
        """Hand one scored batch (its columns under the input's names) to the drift thread."""
        start = self.first_row + self.rows
        self.rows += batch.num_rows
        if self.accumulator is None:
            return
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="dropscore-drift")
            if self.reports:
                stats.preload()  # the report's scipy, imported beside the scoring
        while len(self._handed) >= AHEAD:
            self._handed.popleft().result()
        try:
            self._handed.append(self._thread.submit(self._accumulate, batch, originals, start))
        except RuntimeError:  # the interpreter is shutting down: no new thread work, count here
            self.settle()
            self._accumulate(batch, originals, start)

    def _accumulate(self, batch: pa.RecordBatch, originals: Mapping[str, str], start: int) -> None:
        """Add one batch to the accumulator (on the drift thread, in the order handed)."""
        accumulator = self.accumulator
        if accumulator is None:  # an earlier batch failed: the run's drift is not computed
            return
        try:
            features = {}
            for name, column in _feature_columns(accumulator.profile.features, batch, originals):
                features[name] = batch.column(column)
            i = batch.schema.get_field_index(PREDICTION)
            accumulator.update(features, batch.column(i) if i >= 0 else None, start=start)
        except Exception as exc:  # a view of the scoring: the scored file must not suffer
            log.exception("drift not computed", extra={"version": self.version})
            self.accumulator, self.reason = None, f"drift could not be computed: {exc}"

    def settle(self) -> None:
        """Wait until every batch handed over is accumulated, and end the drift thread."""
        while self._handed:
            self._handed.popleft().result()
        if self._thread is not None:
            self._thread.shutdown()
            self._thread = None

    def __getstate__(self) -> dict[str, Any]:
        """Settle before travelling (to a Dask worker and back): a thread does not travel."""
        self.settle()
        return dict(self.__dict__)

    def part(self, first_row: int) -> DriftWatch:
        """Give a fresh watch of the same profile for a part starting at ``first_row``."""
        current = self.accumulator
        accumulator = None if current is None else DriftAccumulator(current.profile)
        return DriftWatch(
            self.version, self.thresholds, accumulator, self.reason, first_row, reports=False
        )

    def merge(self, part: DriftWatch) -> None:
        """Add a part's rows and counts; a part that failed to accumulate fails the whole."""
        self.settle()
        part.settle()
        self.rows += part.rows
        if self.accumulator is None:
            return
        if part.accumulator is None:
            self.accumulator, self.reason = None, part.reason
            return
        self.accumulator.merge(part.accumulator)

    def report(self) -> DriftReport:
        """Compare what was scored with the reference; say why when there is nothing to."""
        self.settle()
        if self.accumulator is None:
            reason = self.reason or "no reference"
            return DriftReport.not_compared(reason, self.rows, self.thresholds)
        return self.accumulator.report(self.thresholds)


def _feature_columns(
    features: Iterable[str], batch: pa.RecordBatch, originals: Mapping[str, str]
) -> list[tuple[str, int]]:
    """Pair each profiled feature with its column's index in a scored batch (input's names).

    Found as the scorer found it (``lake_columns``), so a model whose features are not lake
    names is watched on the columns it scored; a feature the batch lacks is left out.
    """
    lake = {shown: name for name, shown in originals.items()}
    names = batch.schema.names
    found = lake_columns(list(features), [lake.get(n, n) for n in names], originals).found
    indices = [
        (name, batch.schema.get_field_index(originals.get(c, c))) for name, c in found.items()
    ]
    return [(name, i) for name, i in indices if i >= 0]


class BulkDrift:
    """One model's drift on bulk scoring: a watch per run, a record at its end."""

    def __init__(self, model: Model) -> None:
        self.model = model

    def watch(self, loaded: LoadedModel) -> DriftWatch | None:
        """Start watching a run scored by ``loaded``; None when ``drift_on_scoring`` is off."""
        return self.watch_version(int(loaded.version))

    def watch_version(self, version: int) -> DriftWatch | None:
        """Start watching a run scored by ``version`` (on workers, the model is not loaded here)."""
        monitoring = self.model.settings.monitoring
        if not monitoring.drift_on_scoring:
            return None
        thresholds = Thresholds.of(monitoring)
        found = reference(self.model, version)
        if found.profile is None:
            return DriftWatch(version, thresholds, None, found.reason)
        return DriftWatch(version, thresholds, DriftAccumulator(found.profile))

    def record(
        self,
        watch: DriftWatch | None,
        *,
        source: str,
        file_id: int | None = None,
        ref: str | None = None,
    ) -> DriftRecord | None:
        """Store the run's report with the version that scored; None when not watched or failed."""
        if watch is None:
            return None
        try:
            report = watch.report()
            return self.model.drift.add(
                model_version=watch.version,
                source=source,
                rows=report.rows,
                verdict=report.verdict,
                report=report.to_dict(),
                file_id=file_id,
                ref=ref,
            )
        except Exception:  # the scoring succeeded; its drift record is what is lost, and said
            log.exception("drift not recorded", extra={"source": source, "file_id": file_id})
            return None
