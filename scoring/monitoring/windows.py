"""Drift on live traffic: every protocol's scored rows, judged in windows against the reference.

The request's thread only appends a reference to its event to a bounded buffer (a full buffer
drops the request and counts it: the client never waits). A background thread adds what has
gathered to one open window per model and version (a ``DriftAccumulator`` of the version's
reference profile: features × bins and a sample, whatever the traffic), and closes a window
once it holds ``[monitoring] window_rows`` rows or is ``window_seconds`` old: its report is
stored as a drift record with source ``window`` (``scoring.monitoring.records``), beside the
scored drops' records, and a drifted window asks the reaction for a ``drift`` retrain. A
version without a profile gets a ``not_compared`` record saying why, never an error. Each
serving process (a gunicorn worker) keeps its own windows; a clean stop closes them.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from scoring.inference.dataplane import Scored
from scoring.monitoring.accumulate import DriftAccumulator
from scoring.monitoring.predlog import LOGGED
from scoring.monitoring.records_protocol import WINDOW
from scoring.monitoring.report import DRIFTED, DriftReport, Thresholds

if TYPE_CHECKING:
    from scoring.models.model import Model
    from scoring.monitoring.profile import Profile
    from scoring.monitoring.reaction import Reaction
    from scoring.monitoring.records_protocol import DriftRecord
    from scoring.settings import MonitoringSettings

log = logging.getLogger("dropscore.drift")

MAX_BUFFERED_ROWS = 200_000  # rows waiting for the thread, at most (the requests' own arrays)
# How long the thread lets requests gather once one arrived, so a pass is one vectorized update
# per version; without traffic and open windows it sleeps until a request wakes it.
TICK_SECONDS = 1.0


@dataclass(frozen=True)
class WindowOptions:
    """When a window closes and what makes it drifted."""

    rows: int
    seconds: float
    thresholds: Thresholds

    @classmethod
    def of(cls, monitoring: MonitoringSettings) -> WindowOptions:
        """Read the options from ``[monitoring]``."""
        return cls(monitoring.window_rows, monitoring.window_seconds, Thresholds.of(monitoring))


@dataclass
class Window:
    """One model version's open window: its accumulator, or why there is none."""

    version: int
    opened: float  # time.monotonic() at its first row
    opened_at: str  # the same, as UTC ISO text, for the record
    accumulator: DriftAccumulator | None
    reason: str | None = None  # no reference: why
    rows: int = 0

    def add(self, names: list[str], X: np.ndarray, predictions: np.ndarray) -> None:
        """Add rows of many requests at once (features by name, and the answers): one
        vectorized update per pass, not one per request."""
        self.rows += len(X)
        if self.accumulator is None or not len(X):
            return
        columns = {name: X[:, j] for j, name in enumerate(names)}
        self.accumulator.update(columns, predictions)

    def report(self, thresholds: Thresholds) -> DriftReport:
        """Compare the window's rows with the reference; say why when there is nothing to."""
        if self.accumulator is None:
            return DriftReport.not_compared(self.reason or "no reference", self.rows, thresholds)
        return self.accumulator.report(thresholds)


class LiveWindows:
    """The dataplane observer that keeps live events, and the thread that judges windows."""

    def __init__(
        self,
        model_of: Callable[[str], Model],
        options: WindowOptions,
        reaction: Reaction | None = None,
    ) -> None:
        self._model_of = model_of
        self.options = options
        self.reaction = reaction
        self.capacity = MAX_BUFFERED_ROWS
        self.dropped = 0  # requests dropped because the buffer was full
        self.closed = 0  # windows recorded
        self._pending: list[Scored] = []
        self._rows = 0
        self._open: dict[tuple[str, int], Window] = {}
        # each model version's reference profile (or why there is none), read once per process
        self._profiles: dict[tuple[str, int], tuple[Profile | None, str | None]] = {}
        self._lock = threading.Lock()  # guards _pending, _rows, dropped, _thread, _pid
        self._work_lock = threading.Lock()  # one pass over the windows at a time
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def observe(self, event: Scored) -> None:
        """Keep a scored request for its window: an append under a lock, never a wait."""
        if event.features is None or event.protocol not in LOGGED:
            return
        self._start()
        with self._lock:
            if self._rows + event.rows > self.capacity:
                self.dropped += 1
                return
            first = not self._pending
            self._pending.append(event)
            self._rows += event.rows
            full = self._rows >= self.options.rows
        if first or full:  # the first since the last pass, or enough to close a window
            self._wake.set()

    def tick(self, closing: bool = False) -> int:
        """Add what gathered to the open windows and close the full or old ones (all of them
        when ``closing``); return how many were recorded."""
        with self._work_lock:
            with self._lock:
                batch, self._pending, self._rows = self._pending, [], 0
            groups: dict[tuple[str, int, tuple[str, ...]], list[Scored]] = {}
            for event in batch:
                names = tuple(event.schema.names) if event.schema is not None else ()
                groups.setdefault((event.model, int(event.version), names), []).append(event)
            for (model, version, names), events in groups.items():
                self._fill(model, version, list(names), events)
            now = time.monotonic()
            for (model, _), window in list(self._open.items()):
                if closing or now - window.opened >= self.options.seconds:
                    self._close(model, window)
            return len(batch)

    def _fill(self, model: str, version: int, names: list[str], events: list[Scored]) -> None:
        """Add one version's gathered rows to its windows, closing each at exactly
        ``window_rows`` rows and opening the next with the rest."""
        X = np.concatenate([np.atleast_2d(np.asarray(e.features)) for e in events])
        answers = np.concatenate([np.asarray(e.predictions).reshape(-1) for e in events])
        start = 0
        while start < len(X):
            window = self._window(model, version)
            end = start + min(len(X) - start, self.options.rows - window.rows)
            try:
                window.add(names, X[start:end], answers[start:end])
            except Exception as exc:  # a view of the traffic: the answers never suffer
                log.exception("window drift not computed", extra={"model": model})
                window.accumulator, window.reason = None, f"drift could not be computed: {exc}"
            start = end
            if window.rows >= self.options.rows:
                self._close(model, window)

    def stop(self) -> None:
        """End the thread and record every open window (a clean stop, and tests)."""
        self._stopping.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout=60)
        self._thread = None
        self.tick(closing=True)

    def _window(self, model: str, version: int) -> Window:
        found = self._open.get((model, version))
        if found is None:
            profile, reason = self._reference(model, version)
            accumulator = DriftAccumulator(profile) if profile is not None else None
            stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
            found = Window(version, time.monotonic(), stamp, accumulator, reason)
            self._open[(model, version)] = found
        return found

    def _reference(self, model: str, version: int) -> tuple[Profile | None, str | None]:
        key = (model, version)
        if key not in self._profiles:
            from scoring.monitoring.reference import reference  # the lake, on first need only

            try:
                found = reference(self._model_of(model), version)
                self._profiles[key] = (found.profile, found.reason)
            except Exception as exc:
                log.exception("no reference for live drift", extra={"model": model})
                return None, f"version {version}'s reference could not be read: {exc}"
        return self._profiles[key]

    def _close(self, model: str, window: Window) -> None:
        self._open.pop((model, window.version), None)
        if window.rows == 0:
            return
        try:
            found = self._model_of(model)
            report = window.report(self.options.thresholds)
            record = found.drift.add(
                model_version=window.version,
                source=WINDOW,
                rows=report.rows,
                verdict=report.verdict,
                report=report.to_dict(),
                ref=f"{window.opened_at}/{os.getpid()}",
            )
        except Exception:  # a removed model, a locked database: the window is lost, and said
            log.exception("window not recorded", extra={"model": model, "rows": window.rows})
            return
        self.closed += 1
        facts = {"model": model, "version": window.version, "rows": report.rows}
        log.info("drift window", extra={**facts, "verdict": report.verdict})
        if report.verdict == DRIFTED and self.reaction is not None:
            why = f"live window {record.id} drifted: {', '.join(report.drifted_features[:5])}"
            self.reaction.drifted(found, why)

    def _start(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():  # forked (gunicorn): the parent's thread is not here
                self._pid, self._thread = os.getpid(), None
                self._pending, self._rows, self._open = [], 0, {}
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(target=self._run, name="drift-windows", daemon=True)
                self._thread.start()
                atexit.register(self.stop)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._until_due())
            self._wake.clear()
            if self._stopping.wait(TICK_SECONDS):  # let a second's requests gather
                return
            try:
                self.tick()
            except Exception:
                log.exception("drift windows failed a pass")

    def _until_due(self) -> float | None:
        """Seconds until the oldest open window is due to close; None: none is open."""
        with self._work_lock:
            opened = [w.opened for w in self._open.values()]
        if not opened:
            return None
        return max(0.0, min(opened) + self.options.seconds - time.monotonic())


def summary(record: DriftRecord) -> dict[str, Any]:
    """Give a drift record's timeline entry: where, when, how many rows, the verdict."""
    report = record.report
    return {
        "id": record.id,
        "source": record.source,
        "file_id": record.file_id,
        "ref": record.ref,
        "created_at": record.created_at,
        "model_version": str(record.model_version),
        "rows": record.rows,
        "verdict": record.verdict,
        "drifted_features": report.get("drifted_features", []),
    }
