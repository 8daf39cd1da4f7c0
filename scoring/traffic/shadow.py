"""The one background thread that scores the shadow and writes every figure in batches.

A request thread only appends a reference to its event to a bounded list (``offer``) and counts
its own answer (``count``); a full list drops the shadow and counts the drop, so a client never
waits for the challenger. The thread wakes on its own clock (``CADENCE`` seconds), takes what has
gathered, predicts the rows of each model in one vectorized call (per-request calls would take
the interpreter's lock from the request threads once per request), compares with the champion's
answers, and adds every figure to the model's rows at most once a second (``flush``): the
database sees batches, never a write per request.

Nothing a request does wakes the thread: a ``queue.Queue`` notified its consumer on every put,
so the thread woke for a batch of one right after each pause and asked for the interpreter's
lock once more from the request threads. (At c=16 on two cores the shadow's paired p99 ratio
was ×1.07–×1.19 with the queue.)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
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
# Rows held for the challenger, at most: the list keeps the requests' own matrices alive, so
# its memory is bounded in rows (a request may carry [server] max_rows_per_request), not only in
# requests.
MAX_QUEUED_ROWS = 100_000
BATCH = 256  # requests the challenger predicts in one call, at most
# How often the thread takes what gathered: it takes the interpreter's lock a few times a
# second, for one vectorized call each, instead of once per request. At 2,000 requests a second
# that is ~200 requests a turn, under QUEUE_SIZE.
CADENCE = 0.1
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
        self._size = size
        self._waiting: deque[ShadowWork] = deque()  # appended and popped without a lock
        self._pending: dict[tuple[str, DayKey], DayFigures] = {}
        self._queued_rows = 0  # rows of the requests waiting
        self._lock = threading.Lock()  # guards _pending, _queued_rows, _thread and _pid
        self._flush_lock = threading.Lock()  # one flush at a time
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._day = (-1, "")  # (monotonic second, UTC day): the day looked up once a second

    def offer(self, event: Scored, challenger: int) -> None:
        """Hold a shadow for the challenger; a full list drops it and counts the drop."""
        self._start()
        with self._lock:
            room = (
                len(self._waiting) < self._size
                and self._queued_rows + event.rows <= MAX_QUEUED_ROWS
            )
            if room:
                self._queued_rows += event.rows
                self._waiting.append(ShadowWork(event, challenger))
            else:
                self._figures(event.model, DayKey(challenger, self._today(), SHADOW)).dropped += 1

    def count(self, model: str, version: int, rows: int, seconds: float) -> None:
        """Count one request a version answered (champion or canary)."""
        self._start()
        with self._lock:
            self._figures(model, DayKey(version, self._today(), SERVED)).served(rows, seconds)

    def error(self, model: str, version: int, kind: str = SERVED) -> None:
        """Count a request a version failed to answer."""
        self._start()
        with self._lock:
            self._figures(model, DayKey(version, self._today(), kind)).errors += 1

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
        with self._lock:
            thread, stopping = self._thread, self._stopping
            # A thread started from now on waits on a fresh event; the old one sees its own.
            self._thread, self._stopping = None, threading.Event()
        if thread is not None and thread.is_alive():
            stopping.set()  # the thread shadows what is waiting, then ends
            thread.join(timeout=30)
        self.flush()

    def _today(self) -> str:
        """Return the UTC day, looked up at most once a second (under ``_lock``)."""
        second = int(time.monotonic())
        if self._day[0] != second:
            self._day = (second, today())
        return self._day[1]

    def _figures(self, model: str, key: DayKey) -> DayFigures:
        found = self._pending.get((model, key))
        if found is None:
            found = self._pending[(model, key)] = DayFigures()
        return found

    def _start(self) -> None:
        thread = self._thread
        if thread is not None and self._pid == os.getpid() and thread.is_alive():
            return
        with self._lock:
            if self._pid != os.getpid():  # forked (gunicorn): the parent's thread is not here
                self._pid, self._thread = os.getpid(), None
                self._waiting = deque()
                self._queued_rows = 0
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, args=(self._stopping,), name="shadow", daemon=True
                )
                self._thread.start()

    def _run(self, stopping: threading.Event) -> None:
        last = time.monotonic()
        while True:
            stop = stopping.wait(CADENCE)  # its own clock: no request wakes it
            # What waits now, not what keeps coming: under a challenger slower than the
            # traffic the list never empties, and the figures must still be written each second.
            for _ in range(-(-len(self._waiting) // BATCH)):
                batch = self._take()
                with self._lock:
                    self._queued_rows -= sum(w.event.rows for w in batch)
                for group in _groups(batch).values():
                    self._shadow(group)
            if stop:
                return
            if time.monotonic() - last >= FLUSH_SECONDS:
                self.flush()
                last = time.monotonic()

    def _take(self) -> list[ShadowWork]:
        """Take what waits, oldest first, at most ``BATCH`` (appends may go on meanwhile)."""
        batch: list[ShadowWork] = []
        while len(batch) < BATCH:
            try:
                batch.append(self._waiting.popleft())
            except IndexError:
                break
        return batch

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
