"""Retrain runs: one record per attempt in ``state.db``, and the lock that allows one at a time.

Every retrain is recorded the same way — queued, running, then succeeded, skipped or failed, with
its metrics, decision and reason (``scoring.lifecycle.runner`` runs them) — and an OS file lock per
model (``retrain.lock``, ``flock``, non-blocking) refuses a second retrain while one runs, whichever
process starts it. A run left ``queued`` or ``running`` by a process that died (kill -9) is marked
failed, interrupted, by whoever next finds the retrain lock free: at start-up, or any reader of
the runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ingest.base.layout import DataLayout
from ingest.state.sqlite import Tables, transaction
from scoring.errors import NotFound
from scoring.lifecycle.registry import now

if TYPE_CHECKING:
    pass

log = logging.getLogger("dropscore.runs")

# Who started a run: the nightly job, POST /train (and the dashboard), `dropscore train`, the
# first start's sample file, or the first labelled drops reaching [training] min_rows.
TRIGGERS = ("schedule", "api", "cli", "bootstrap", "first_data")
STATES = ("queued", "running", "succeeded", "skipped", "failed")
# Why a run was skipped, for machines: the reason column says it in words.
SKIPS = ("refused", "no_new_data", "busy", "missed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    trigger          TEXT NOT NULL,
    state            TEXT NOT NULL,
    force            INTEGER NOT NULL DEFAULT 0,
    queued_at        TEXT NOT NULL,
    started_at       TEXT,
    finished_at      TEXT,
    rows             INTEGER,
    version          INTEGER,
    champion_version INTEGER,
    metrics          TEXT,
    champion_metrics TEXT,
    promoted         INTEGER,
    reason           TEXT,
    skip             TEXT,
    error            TEXT,
    pid              INTEGER,
    requested_by     TEXT
);
CREATE INDEX IF NOT EXISTS runs_state ON runs(state);
"""
# Columns added after the first release, brought into older state.db files when opened.
_ADDED = {
    "requested_by": "TEXT",
    "trainer_pid": "INTEGER",
    "peak_rss_mb": "REAL",
    "sampled_from": "INTEGER",
}
INTERRUPTED = "interrupted: the process running it stopped before it finished"


class RetrainBusy(Exception):
    """Another retrain holds the lock; this one is refused rather than run twice."""


@dataclass(frozen=True)
class RunRecord:
    """One retrain run's row: trigger, state, timings and what it decided."""

    id: int
    trigger: str
    state: str
    force: bool
    queued_at: str
    started_at: str | None
    finished_at: str | None
    rows: int | None
    version: int | None  # the version this run registered
    champion_version: int | None  # the champion it was compared with
    metrics: dict[str, float | None] | None
    champion_metrics: dict[str, float | None] | None
    promoted: bool | None
    reason: str | None
    skip: str | None
    error: str | None
    requested_by: str | None = None  # the API key's name (or CLI user) that asked for it
    trainer_pid: int | None = None  # the child process that trained
    peak_rss_mb: float | None = None  # the trainer's peak resident memory
    sampled_from: int | None = None  # labelled rows in the lake when rows is a sample

    @property
    def done(self) -> bool:
        """Tell whether the run has ended, whatever the result."""
        return self.state in ("succeeded", "skipped", "failed")

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape the API and ``dropscore runs`` show; versions are text."""
        out = asdict(self)
        for key in ("version", "champion_version"):
            out[key] = None if out[key] is None else str(out[key])
        return out


class RunStore:
    """The ``runs`` table; a connection per call keeps it safe across threads and forks."""

    def __init__(self, db_path: Path, retrain_lock: Path | None = None) -> None:
        self.db_path = db_path
        # the lock a live retrain holds (reap leaves its runs alone); the default model's if unset
        self.retrain_lock = retrain_lock or DataLayout(db_path.parent).retrain_lock
        self._db = Tables(db_path, _SCHEMA, {"runs": _ADDED}, check_same_thread=False).connect

    def create(
        self,
        trigger: str,
        force: bool = False,
        state: str = "queued",
        requested_by: str | None = None,
    ) -> int:
        """Insert a run, with who asked for it, and return its id."""
        if trigger not in TRIGGERS:
            raise ValueError(f"trigger {trigger!r}: expected one of {', '.join(TRIGGERS)}")
        with self._db() as conn:
            cur = conn.execute(
                "INSERT INTO runs (trigger, state, force, queued_at, pid, requested_by)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (trigger, state, int(force), now(), os.getpid(), requested_by),
            )
            return int(cur.lastrowid or 0)

    def update(self, run_id: int, **fields: Any) -> RunRecord:
        """Set columns of one run (dicts stored as JSON) and return the new record."""
        for key in ("metrics", "champion_metrics"):
            if key in fields and fields[key] is not None:
                fields[key] = json.dumps(fields[key])
        columns = ", ".join(f"{name}=?" for name in fields)
        with self._db() as conn:
            conn.execute(f"UPDATE runs SET {columns} WHERE id=?", (*fields.values(), run_id))
        return self.get(run_id)

    def get(self, run_id: int) -> RunRecord:
        """Return one run (after reaping dead ones), or raise NotFound (404)."""
        self.reap()
        with self._db() as conn:
            row = conn.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise NotFound(f"retrain run {run_id} does not exist")
        return _record(row)

    def list(self, limit: int = 50, offset: int = 0, state: str | None = None) -> list[RunRecord]:
        """Return runs newest first."""
        self.reap()
        where, args = ("WHERE state=?", [state]) if state else ("", [])
        with self._db() as conn:
            rows = conn.execute(
                f"SELECT * FROM runs {where} ORDER BY id DESC LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
        return [_record(r) for r in rows]

    def last(self) -> RunRecord | None:
        """Return the newest run, or None before the first."""
        runs = self.list(limit=1)
        return runs[0] if runs else None

    def running(self) -> RunRecord | None:
        """Return the queued or running run, or None when none is."""
        with self._db() as conn:
            row = conn.execute(
                "SELECT * FROM runs WHERE state IN ('queued', 'running') ORDER BY id DESC LIMIT 1"
            ).fetchone()
        return None if row is None else _record(row)

    def abandon_unfinished(self) -> int:
        """Mark runs left queued or running by a dead process as failed; call with the lock held."""
        with self._db() as conn, transaction(conn):
            cur = conn.execute(
                "UPDATE runs SET state='failed', finished_at=?, error=?, "
                "reason=COALESCE(reason, 'interrupted') WHERE state IN ('queued', 'running')",
                (now(), INTERRUPTED),
            )
            return cur.rowcount

    def reap(self) -> int:
        """Mark unfinished runs failed when no process holds the retrain lock: they died."""
        with self._db() as conn:
            if (
                conn.execute(
                    "SELECT 1 FROM runs WHERE state IN ('queued', 'running') LIMIT 1"
                ).fetchone()
                is None
            ):
                return 0
        lock = try_lock(self.retrain_lock)
        if lock is None:  # a live retrain holds it
            return 0
        try:
            reaped = self.abandon_unfinished()
        finally:
            release(lock)
        if reaped:
            log.warning("interrupted runs marked failed", extra={"runs": reaped})
        return reaped


def _record(row: sqlite3.Row) -> RunRecord:
    def loads(text: str | None) -> Any:
        return None if text is None else json.loads(text)

    return RunRecord(
        id=int(row["id"]),
        trigger=row["trigger"],
        state=row["state"],
        force=bool(row["force"]),
        queued_at=row["queued_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        rows=row["rows"],
        version=row["version"],
        champion_version=row["champion_version"],
        metrics=loads(row["metrics"]),
        champion_metrics=loads(row["champion_metrics"]),
        promoted=None if row["promoted"] is None else bool(row["promoted"]),
        reason=row["reason"],
        skip=row["skip"],
        error=row["error"],
        requested_by=row["requested_by"],
        trainer_pid=row["trainer_pid"],
        peak_rss_mb=row["peak_rss_mb"],
        sampled_from=row["sampled_from"],
    )


# -- the lock -------------------------------------------------------------------------------


def try_lock(lock_path: Path) -> IO[str] | None:
    """Take ``retrain.lock`` if it is free, else None; never waits."""
    fh = open(lock_path, "a+")  # noqa: SIM115 - released by the caller
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


def acquire(layout: DataLayout, runs: RunStore, patience: float = 2.0) -> IO[str]:
    """Take ``retrain.lock``, or raise RetrainBusy naming the run (in ``runs``) that holds it.

    A run is recorded as finished just before its lock is released; when no run is unfinished,
    the holder is finishing (or just starting), so wait up to ``patience`` seconds for it.
    """
    layout.retrain_lock.parent.mkdir(parents=True, exist_ok=True)
    fh = open(layout.retrain_lock, "a+")  # noqa: SIM115 - held until the run ends
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fh
        except BlockingIOError:
            holder = runs.running()
            if holder is None and time.monotonic() < deadline:
                time.sleep(0.02)
                continue
            fh.close()
            which = f"run {holder.id} ({holder.trigger})" if holder else "another retrain"
            raise RetrainBusy(
                f"a retrain is already running: {which}; retry when it ends"
            ) from None


@contextlib.contextmanager
def trainer_slot(
    layout: DataLayout, waiting: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the data folder's one trainer slot while a trainer process runs.

    Each model retrains under its own lock, so with several models on one schedule (every
    ``[models.*]`` inherits the 02:00 line) all their trainers would start at once, each as
    heavy as the machine allows. They take turns instead; the run stays ``running`` meanwhile,
    and ``waiting`` hears why. Predictions never wait for it: they run in the serving process.
    """
    path = layout.trainer_lock
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is not None:
                waiting("waiting for another model's trainer to finish")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def release(fh: IO[str]) -> None:
    """Let go of ``retrain.lock``."""
    with contextlib.suppress(OSError):
        fcntl.flock(fh, fcntl.LOCK_UN)
    fh.close()
