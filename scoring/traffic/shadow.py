"""The one background thread that scores the shadow and writes every figure in batches.

A request thread only puts a reference to its event in a bounded queue (``offer``) and counts
its own answer (``count``); a full queue drops the shadow and counts the drop, so a client never
waits for the challenger. The thread takes what has gathered in the queue, predicts the rows of
each model in one vectorized call (per-request calls would take the interpreter's lock from the
request threads once per request), compares with the champion's answers, and adds every figure
to the model's rows at most once a second (``flush``): the database sees batches, never a write
per request.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import NamedTuple

import numpy as np

from scoring.inference.core import predict_many
from scoring.inference.dataplane import Scored
from scoring.lifecycle.predictor import LoadedModel
from scoring.traffic.figures import SERVED, SHADOW, DayFigures
from scoring.traffic.store import DayKey, TrafficStore

log = logging.getLogger("dropscore.shadow")

QUEUE_SIZE = 1024  # requests waiting for the challenger; beyond it, shadows are dropped
# Rows held for the challenger, at most: the queue keeps the requests' own matrices alive, so
# its memory is bounded in rows (a request may carry [server] max_rows_per_request), not only in
# requests.
MAX_QUEUED_ROWS = 100_000
BATCH = 256  # requests the challenger predicts in one call, at most
# A pause after each batch, so that requests gather: the thread then takes the interpreter's
# lock a few times a second, for one vectorized call, instead of once per request.
BATCH_PAUSE = 0.05
FLUSH_SECONDS = 1.0  # how often the figures are written


class ShadowWork(NamedTuple):
    """One champion answer to repeat with a challenger (references, never copies)."""

    event: Scored
    challenger: int


def today() -> str:
    """Name the UTC day a figure counts for."""
    return datetime.now(UTC).date().isoformat()


class ShadowWorker:
    """A bounded queue, one thread, and the figures waiting to be written, for every model."""

    def __init__(
        self,
        stores: Callable[[str], TrafficStore],
        versions: Callable[[str, int], LoadedModel],
        size: int = QUEUE_SIZE,
    ) -> None:
        self._stores = stores  # a model's traffic store, by name
        self._versions = versions  # a model's version, loaded once and cached
        self._queue: queue.Queue[ShadowWork | None] = queue.Queue(maxsize=size)
        self._pending: dict[tuple[str, DayKey], DayFigures] = {}
        self._queued_rows = 0  # rows of the requests in the queue
        self._lock = threading.Lock()  # guards _pending, _queued_rows, _thread and _pid
        self._flush_lock = threading.Lock()  # one flush at a time
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def offer(self, event: Scored, challenger: int) -> None:
        """Queue a shadow for the challenger; a full queue drops it and counts the drop."""
        self._start()
        with self._lock:
            room = self._queued_rows + event.rows <= MAX_QUEUED_ROWS
            if room:
                self._queued_rows += event.rows
        try:
            if not room:
                raise queue.Full
            self._queue.put_nowait(ShadowWork(event, challenger))
        except queue.Full:
            with self._lock:
                self._queued_rows -= event.rows if room else 0
                self._figures(event.model, DayKey(challenger, today(), SHADOW)).dropped += 1

    def count(self, model: str, version: int, rows: int, seconds: float) -> None:
        """Count one request a version answered (champion or canary)."""
        self._start()
        with self._lock:
            self._figures(model, DayKey(version, today(), SERVED)).served(rows, seconds)

    def error(self, model: str, version: int, kind: str = SERVED) -> None:
        """Count a request a version failed to answer."""
        self._start()
        with self._lock:
            self._figures(model, DayKey(version, today(), kind)).errors += 1

    def flush(self) -> None:
        """Write every pending figure now (the thread does it each second; a reader first)."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, {}
            by_model: dict[str, dict[DayKey, DayFigures]] = {}
            for (model, key), figures in batch.items():
                by_model.setdefault(model, {})[key] = figures
            for model, figures_by_key in by_model.items():
                try:
                    self._stores(model).add(figures_by_key)
                except Exception:  # a model removed, a locked disk: the figures are lost, logged
                    log.exception("could not write traffic figures", extra={"model": model})

    def stop(self) -> None:
        """End the thread after a last flush (tests, and a server stopping)."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(timeout=30)
        self._thread = None
        self.flush()

    def _figures(self, model: str, key: DayKey) -> DayFigures:
        found = self._pending.get((model, key))
        if found is None:
            found = self._pending[(model, key)] = DayFigures()
        return found

    def _start(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():  # forked (gunicorn): the parent's thread is not here
                self._pid, self._thread = os.getpid(), None
                self._queue = queue.Queue(maxsize=self._queue.maxsize)
                self._queued_rows = 0
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        last = time.monotonic()
        while True:
            try:
                work = self._queue.get(timeout=FLUSH_SECONDS / 2)
            except queue.Empty:
                pass  # nothing to shadow: only flush, if due
            else:
                batch, stop = self._drain(work)
                with self._lock:
                    self._queued_rows -= sum(w.event.rows for w in batch)
                for group in _groups(batch).values():
                    self._shadow(group)
                if stop:
                    return
                time.sleep(BATCH_PAUSE)  # let work gather: fewer, larger batches
            if time.monotonic() - last >= FLUSH_SECONDS:
                self.flush()
                last = time.monotonic()

    def _drain(self, first: ShadowWork | None) -> tuple[list[ShadowWork], bool]:
        """Take what waits in the queue (at most ``BATCH``); say whether ``stop`` came."""
        batch: list[ShadowWork] = []
        work = first
        while work is not None:
            batch.append(work)
            if len(batch) >= BATCH:
                return batch, False
            try:
                work = self._queue.get_nowait()
            except queue.Empty:
                return batch, False
        return batch, True

    def _shadow(self, group: list[ShadowWork]) -> None:
        """Predict a group's rows (one model, champion and challenger) in one call, compare."""
        first = group[0].event
        challenger = group[0].challenger
        key = DayKey(challenger, today(), SHADOW)
        rows = sum(work.event.rows for work in group)
        try:
            model = self._versions(first.model, challenger)
            X = np.vstack([w.event.features for w in group if w.event.features is not None])
            started = time.perf_counter()
            out = predict_many(model, X)
            seconds = time.perf_counter() - started
            champion = [value for work in group for value in work.event.predictions]
            classes = bool(model.classes)
        except Exception:
            log.warning(
                "shadow challenger failed",
                exc_info=True,
                extra={"model": first.model, "version": challenger},
            )
            with self._lock:
                self._figures(first.model, key).errors += len(group)
            return
        with self._lock:
            figures = self._figures(first.model, key)
            figures.batch(len(group), rows, seconds)
            figures.compare(champion, out.values, classes=classes)


def _groups(batch: list[ShadowWork]) -> dict[tuple[str, str, int], list[ShadowWork]]:
    """Group queued work that one call can predict: one model, champion and challenger."""
    groups: dict[tuple[str, str, int], list[ShadowWork]] = {}
    for work in batch:
        if work.event.features is not None:
            key = (work.event.model, work.event.version, work.challenger)
            groups.setdefault(key, []).append(work)
    return groups
