"""The prediction log: a sample of live requests and their answers, as Parquet parts in the lake.

``[monitoring] log_fraction`` of the requests every protocol scores (``/predict``, MLflow's
``/invocations``, KServe, OIP) are kept: request id, row, time, model, version, protocol, the
features by name and the prediction, so labels that arrive later can be joined to what was
answered (``scoring.monitoring.labels``). With ``log_fraction = 0`` no observer is registered,
so the request path pays nothing.

The request's thread only appends a reference to its event to a bounded in-memory buffer (a
full buffer drops the request and counts the drop: a client never waits for the log). A
background thread lays what waits out as Arrow columns four times a second (so the process
does not hold thousands of events for the garbage collector to walk), and writes one Parquet
part per model and version every ``log_flush_rows`` rows or ``log_flush_seconds``, whichever
comes first, through the model's ``Lake`` (readers never see half a part), then removes the
oldest parts beyond ``log_max_mb`` or ``log_max_days``. A clean stop writes what is buffered.
Each process (a gunicorn worker) writes its own parts; under ``[storage] url`` every replica
writes to the bucket's log folder, the host and a random token in each part's name.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from scoring.inference.dataplane import Scored

if TYPE_CHECKING:
    from ingest.lake.store import Lake
    from scoring.settings import MonitoringSettings

log = logging.getLogger("dropscore.predlog")

# The routes whose answers are predictions (explanations and bulk files are not logged: bulk
# outputs are already kept in the outbox).
LOGGED = frozenset({"predict", "invocations", "kserve", "infer"})
# Rows the buffer holds at most; the requests' own matrices are kept, so memory is bounded in
# rows (a request may carry [server] max_rows_per_request), not only in requests.
MAX_BUFFERED_ROWS = 200_000
# How often the thread lays waiting requests out as columns (their events then go).
DRAIN_SECONDS = 0.25
PART_TIME = "%Y%m%dT%H%M%S%fZ"  # a part's name starts with its UTC time, so names sort by age
# The log's own columns; a feature of one of these names is written as feature_<name>.
REQUEST_ID, ROW, ROW_ID, TIME = "request_id", "row", "row_id", "time"
MODEL, VERSION, PROTOCOL, PREDICTION = "model", "version", "protocol", "prediction"
OWN = (REQUEST_ID, ROW, ROW_ID, TIME, MODEL, VERSION, PROTOCOL, PREDICTION)


@dataclass(frozen=True)
class LogOptions:
    """How much is logged, how often it is written and how much is kept."""

    fraction: float
    flush_rows: int
    flush_seconds: float
    max_bytes: int
    max_days: float

    @classmethod
    def of(cls, monitoring: MonitoringSettings) -> LogOptions:
        """Read the options from ``[monitoring]``."""
        return cls(
            monitoring.log_fraction,
            monitoring.log_flush_rows,
            monitoring.log_flush_seconds,
            int(monitoring.log_max_mb * 1024 * 1024),
            monitoring.log_max_days,
        )


def row_ids(request_id: str, rows: int) -> list[str]:
    """Name each row of a request as a label's id names it: the request id for a one-row
    request, ``<request id>:<row>`` for each row of a larger one."""
    if rows == 1:
        return [request_id]
    return [f"{request_id}:{i}" for i in range(rows)]


def part_name(at: datetime, pid: int, seq: int, host: str | None = None) -> str:
    """Name a log part by its UTC time, host, process, sequence and a random token: sorted by
    age, and unique even when replicas on several hosts write to one bucket (their pids and
    sequences repeat; the host alone is not enough when two containers share a name)."""
    where = re.sub(r"[^A-Za-z0-9.]+", "_", socket.gethostname() if host is None else host)[:64]
    token = secrets.token_hex(4)
    return f"{at.astimezone(UTC).strftime(PART_TIME)}-{where}-{pid}-{seq}-{token}.parquet"


def part_time(name: str) -> datetime | None:
    """Read a part's UTC time from its name; None for a file the log did not write."""
    try:
        return datetime.strptime(name.split("-", 1)[0], PART_TIME).replace(tzinfo=UTC)
    except ValueError:
        return None


def expired(sizes: Mapping[str, int], max_bytes: int, oldest: datetime) -> list[str]:
    """Choose the parts to remove: older than ``oldest``, then the oldest until the rest fit."""
    names = sorted(n for n in sizes if part_time(n) is not None)
    gone = [n for n in names if (part_time(n) or oldest) < oldest]
    kept = [n for n in names if n not in gone]
    total = sum(sizes[n] for n in kept)
    while kept and total > max_bytes:
        name = kept.pop(0)
        total -= sizes[name]
        gone.append(name)
    return gone


def log_table(events: Iterable[tuple[Scored, float]]) -> pa.Table:
    """Lay out one model version's logged events as one table: own columns, features, answer.

    Every event must carry the same feature schema (the flusher groups them so).
    """
    events = list(events)
    first = events[0][0]
    assert first.schema is not None
    requests: list[str] = []
    ids: list[str] = []
    rows: list[int] = []
    times: list[float] = []
    for event, stamp in events:
        rid = event.request_id or uuid.uuid4().hex  # a caller that gave none (not over HTTP)
        requests += [rid] * event.rows
        ids += row_ids(rid, event.rows)
        rows += range(event.rows)
        times += [stamp] * event.rows
    X = np.concatenate([np.atleast_2d(np.asarray(e.features)) for e, _ in events])
    predictions = np.concatenate([np.asarray(e.predictions).reshape(-1) for e, _ in events])
    columns: dict[str, Any] = {
        REQUEST_ID: pa.array(requests, pa.string()),
        ROW: pa.array(rows, pa.int32()),
        ROW_ID: pa.array(ids, pa.string()),
        TIME: pa.array((np.array(times) * 1e6).astype(np.int64)).cast(pa.timestamp("us", "UTC")),
        MODEL: pa.array([first.model] * len(ids), pa.string()),
        VERSION: pa.array([first.version] * len(ids), pa.string()),
        PROTOCOL: pa.array([e.protocol for e, _ in events for _ in range(e.rows)], pa.string()),
    }
    for j, name in enumerate(first.schema.names):
        columns[f"feature_{name}" if name in OWN else name] = _column(X[:, j])
    columns[PREDICTION] = _column(predictions)
    return pa.table(columns)


def _column(values: np.ndarray) -> pa.Array:
    """Make an Arrow column of one feature or the answers; mixed values are kept as text."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


class PredictionLog:
    """The dataplane observer that samples requests, and the thread that writes them."""

    def __init__(self, lake_of: Callable[[str], Lake], options: LogOptions) -> None:
        self._lake_of = lake_of  # a model's prediction-log folder, by name
        self.options = options
        self.capacity = MAX_BUFFERED_ROWS  # rows held at most: waiting and laid out
        self.drain_seconds = DRAIN_SECONDS
        self.dropped = 0  # requests dropped because the buffer was full
        self.written = 0  # rows written to parts
        self.lost = 0  # rows a failed write lost (logged)
        self._pending: list[tuple[Scored, float]] = []
        self._rows = 0  # rows in _pending
        self._laid: dict[tuple[str, str, tuple[str, ...]], list[pa.Table]] = {}
        self._laid_rows = 0  # rows in _laid
        self._last_write = time.monotonic()
        self._seq = 0
        self._lock = threading.Lock()  # guards _pending, the row counts, counters, _thread, _pid
        self._flush_lock = threading.Lock()  # one drain or write at a time
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def observe(self, event: Scored) -> None:
        """Keep a sampled request for the log: an append under a lock, never a wait."""
        if event.features is None or event.protocol not in LOGGED:
            return
        fraction = self.options.fraction
        if fraction < 1.0 and random.random() >= fraction:
            return
        self._start()
        stamp = time.time()
        with self._lock:
            if self._rows + self._laid_rows + event.rows > self.capacity:
                self.dropped += 1
                return
            self._pending.append((event, stamp))
            self._rows += event.rows
            full = self._rows >= self.options.flush_rows
        if full:
            self._wake.set()

    def flush(self) -> int:
        """Write every buffered request now, one part per model version; return rows written."""
        with self._flush_lock:
            self._drain()
            return self._write_all()

    def stop(self) -> None:
        """End the thread and write what is buffered (a clean stop, and tests)."""
        self._stopping.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout=60)
        self._thread = None
        self.flush()

    def _drain(self) -> None:
        """Lay the waiting requests out as columns, so the buffer holds a few arrays, not
        thousands of events for the garbage collector to walk."""
        with self._lock:
            batch, self._pending = self._pending, []
        groups: dict[tuple[str, str, tuple[str, ...]], list[tuple[Scored, float]]] = {}
        for event, stamp in batch:
            names = tuple(event.schema.names) if event.schema is not None else ()
            groups.setdefault((event.model, event.version, names), []).append((event, stamp))
        for key, events in groups.items():
            rows = sum(event.rows for event, _ in events)
            try:
                table = log_table(events)
            except Exception:  # an answer of a shape the log cannot lay out: lost, and said
                log.exception("prediction log rows not laid out", extra={"model": key[0]})
                table, self.lost = None, self.lost + rows
            with self._lock:
                self._rows -= rows
                if table is not None:
                    self._laid.setdefault(key, []).append(table)
                    self._laid_rows += rows

    def _due(self) -> bool:
        """Tell whether a part is due: enough rows laid out, or the time since the last one."""
        threshold = min(self.options.flush_rows, max(1, self.capacity // 2))
        late = time.monotonic() - self._last_write >= self.options.flush_seconds
        return self._laid_rows >= threshold or (late and self._laid_rows > 0)

    def _write_all(self) -> int:
        with self._lock:
            laid, self._laid, rows = self._laid, {}, self._laid_rows
        written = 0
        for (model, _, _), tables in laid.items():
            written += self._write(model, pa.concat_tables(tables))
        with self._lock:
            self._laid_rows -= rows
        self._last_write = time.monotonic()
        for model in {model for model, _, _ in laid}:
            self._rotate(model)
        return written

    def _write(self, model: str, table: pa.Table) -> int:
        rows = table.num_rows
        try:
            with self._lock:
                self._seq += 1
                name = part_name(datetime.now(UTC), os.getpid(), self._seq)
            lake = self._lake_of(model)
            lake.fs.create_dir(lake.root, recursive=True)  # the first part makes the folder
            lake.write(name, table.to_batches(), table.schema)
        except Exception:  # a removed model, a full disk: the rows are lost, and said so
            log.exception("prediction log part not written", extra={"model": model, "rows": rows})
            with self._lock:
                self.lost += rows
            return 0
        with self._lock:
            self.written += rows
        return rows

    def _rotate(self, model: str) -> None:
        try:
            lake = self._lake_of(model)
            oldest = datetime.now(UTC) - timedelta(days=self.options.max_days)
            for name in expired(lake.sizes(), self.options.max_bytes, oldest):
                lake.delete(name)
        except Exception:
            log.exception("prediction log not rotated", extra={"model": model})

    def _start(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():  # forked (gunicorn): the parent's thread is not here
                self._pid, self._thread = os.getpid(), None
                self._pending, self._rows, self._laid, self._laid_rows = [], 0, {}, 0
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(target=self._run, name="predlog", daemon=True)
                self._thread.start()
                atexit.register(self.stop)  # a worker's clean exit writes what it holds

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(min(self.drain_seconds, self.options.flush_seconds))
            self._wake.clear()
            if self._stopping.is_set():
                return
            with self._flush_lock:
                self._drain()
                if self._due():
                    self._write_all()
