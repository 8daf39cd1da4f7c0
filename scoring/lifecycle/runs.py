"""Retrain runs: one record per attempt, kept in the model's state database.

Every retrain is recorded the same way — queued, running, then succeeded, skipped or failed, with
its metrics, decision and reason (``scoring.lifecycle.runner`` runs them; its locks are
``scoring.lifecycle.run_locks``). A run left ``queued`` or ``running`` by a process that died
(kill -9) is marked failed, interrupted, by whoever next finds the model's retrain lock free: at
start-up, or any reader of the runs. That lock is kept with the runs (``RunStore.locks``), so
every process that reads them can tell a dead run from a live one.

The store writes SQLAlchemy Core through ``ingest.state.db``: the ``runs`` table keeps the names,
columns and types of earlier releases, so an existing ``state.db`` reads unchanged.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy import (
    REAL,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    RowMapping,
    Table,
    Text,
    func,
    select,
    text,
)

from ingest.base.layout import RETRAIN_LOCK_FILE
from ingest.state.db import WIDE_INTEGER, Migration, StateDB, add_column, create_tables
from ingest.state.locks import Locks, locks_beside
from scoring.errors import NotFound
from scoring.lifecycle.registry import now

log = logging.getLogger("dropscore.runs")

# Who started a run: the nightly job, POST /train (and the dashboard), `dropscore train`, the
# first start's sample file, the first labelled drops reaching [training] min_rows, or the
# monitoring's reaction (scoring.monitoring.reaction): drifted data, realized metrics falling.
TRIGGERS = ("schedule", "api", "cli", "bootstrap", "first_data", "drift", "performance")
STATES = ("queued", "running", "succeeded", "skipped", "failed")
UNFINISHED = ("queued", "running")
# Why a run was skipped, for machines: the reason column says it in words.
SKIPS = ("refused", "no_new_data", "busy", "missed")
INTERRUPTED = "interrupted: the process running it stopped before it finished"
T = TypeVar("T")

METADATA = MetaData()
RUNS = Table(
    "runs",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trigger", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("force", Integer, nullable=False, server_default=text("0")),
    Column("queued_at", Text, nullable=False),
    Column("started_at", Text),
    Column("finished_at", Text),
    Column("rows", WIDE_INTEGER),
    Column("version", Integer),  # the version this run registered
    Column("champion_version", Integer),  # the champion it was compared with
    Column("metrics", Text),  # JSON
    Column("champion_metrics", Text),  # JSON
    Column("promoted", Integer),
    Column("reason", Text),
    Column("skip", Text),
    Column("error", Text),
    Column("pid", Integer),  # the process that queued it
    Column("requested_by", Text),
    Column("trainer_pid", Integer),
    Column("peak_rss_mb", Float().with_variant(REAL(), "sqlite")),  # REAL, as it always was
    Column("sampled_from", WIDE_INTEGER),
    Index("runs_state", "state"),
    sqlite_autoincrement=True,  # ids are never reused, as with the AUTOINCREMENT of old
)
# Columns added after the first release, as an older state.db got them when opened.
_ADDED = {
    "requested_by": "TEXT",
    "trainer_pid": "INTEGER",
    "peak_rss_mb": "REAL",
    "sampled_from": "INTEGER",
}


def _add_later_columns(conn: Connection) -> None:
    for column, decl in _ADDED.items():
        add_column(RUNS.name, column, decl)(conn)


MIGRATIONS = [
    Migration(1, "the runs table and its state index", create_tables(METADATA, RUNS.name)),
    Migration(2, "who asked, the trainer's pid and memory, the sampled rows", _add_later_columns),
]


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


class Runs(Protocol):
    """One model's retrain runs, whatever database keeps them."""

    @property
    def locks(self) -> Locks:
        """The locks kept with these runs, the model's retrain lock among them."""
        ...

    def create(
        self,
        trigger: str,
        force: bool = False,
        state: str = "queued",
        requested_by: str | None = None,
    ) -> int:
        """Insert a run, with who asked for it, and return its id."""
        ...

    def update(self, run_id: int, **fields: Any) -> RunRecord:
        """Set columns of one run and return the new record."""
        ...

    def get(self, run_id: int) -> RunRecord:
        """Return one run, or raise NotFound (404)."""
        ...

    def list(self, limit: int = 50, offset: int = 0, state: str | None = None) -> list[RunRecord]:
        """Return runs newest first."""
        ...

    def last(self) -> RunRecord | None:
        """Return the newest run, or None before the first."""
        ...

    def running(self) -> RunRecord | None:
        """Return the queued or running run, or None when none is."""
        ...

    def last_queued_at(self, trigger: str) -> str | None:
        """Return when the newest run of one trigger was queued, or None before the first."""
        ...

    def abandon_unfinished(self) -> int:
        """Mark unfinished runs failed; call with the retrain lock held."""
        ...

    def reap(self) -> int:
        """Mark unfinished runs failed when no process holds the retrain lock."""
        ...


class RunStore:
    """The ``runs`` table of one state database, reached a transaction at a time (``StateDB``)."""

    def __init__(self, db: StateDB, locks: Locks | None = None) -> None:
        self.db = db
        # where the retrain lock is (reap leaves the runs of a live retrain alone)
        self._locks = locks or locks_beside(db)

    @property
    def locks(self) -> Locks:
        """The locks kept with these runs, the model's retrain lock among them."""
        return self._locks

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
        row = {
            "trigger": trigger,
            "state": state,
            "force": int(force),
            "queued_at": now(),
            "pid": os.getpid(),
            "requested_by": requested_by,
        }
        with self._write() as conn:
            return int(conn.execute(RUNS.insert().values(row).returning(RUNS.c.id)).scalar_one())

    def update(self, run_id: int, **fields: Any) -> RunRecord:
        """Set columns of one run (dicts stored as JSON) and return the new record."""
        for key in ("metrics", "champion_metrics"):
            if key in fields and fields[key] is not None:
                fields[key] = json.dumps(fields[key])
        with self._write() as conn:
            conn.execute(RUNS.update().where(RUNS.c.id == run_id).values(**fields))
        return self.get(run_id)

    def get(self, run_id: int) -> RunRecord:
        """Return one run (after reaping dead ones), or raise NotFound (404)."""
        query = select(RUNS).where(RUNS.c.id == run_id)
        row = self._read_reaped(lambda conn: conn.execute(query).mappings().first())
        if row is None:
            raise NotFound(f"retrain run {run_id} does not exist")
        return _record(row)

    def list(self, limit: int = 50, offset: int = 0, state: str | None = None) -> list[RunRecord]:
        """Return runs newest first (after reaping dead ones)."""
        query = select(RUNS).order_by(RUNS.c.id.desc()).limit(limit).offset(offset)
        if state:
            query = query.where(RUNS.c.state == state)
        rows = self._read_reaped(lambda conn: conn.execute(query).mappings().all())
        return [_record(r) for r in rows]

    def last(self) -> RunRecord | None:
        """Return the newest run, or None before the first."""
        runs = self.list(limit=1)
        return runs[0] if runs else None

    def running(self) -> RunRecord | None:
        """Return the queued or running run, or None when none is."""
        query = select(RUNS).where(RUNS.c.state.in_(UNFINISHED)).order_by(RUNS.c.id.desc())
        with self._read() as conn:
            row = conn.execute(query.limit(1)).mappings().first()
        return None if row is None else _record(row)

    def last_queued_at(self, trigger: str) -> str | None:
        """Return when the newest run of one trigger was queued, or None before the first.

        Every process reads the same answer, so a reaction's cooldown holds across replicas.
        """
        query = select(func.max(RUNS.c.queued_at)).where(RUNS.c.trigger == trigger)
        with self._read() as conn:
            found = conn.execute(query).scalar_one_or_none()
        return None if found is None else str(found)

    def abandon_unfinished(self) -> int:
        """Mark runs left queued or running by a dead process as failed; call with the lock held."""
        abandon = (
            RUNS.update()
            .where(RUNS.c.state.in_(UNFINISHED))
            .values(
                state="failed",
                finished_at=now(),
                error=INTERRUPTED,
                reason=func.coalesce(RUNS.c.reason, "interrupted"),
            )
        )
        with self._write() as conn:
            return conn.execute(abandon).rowcount

    def reap(self) -> int:
        """Mark unfinished runs failed when no process holds the retrain lock: they died."""
        with self._read() as conn:
            if not _any_unfinished(conn):
                return 0
        return self._reap_if_dead()

    def _read_reaped(self, read: Callable[[Connection], T]) -> T:
        """Read in one transaction; read again only if it found runs whose process died."""
        with self._read() as conn:
            found, unfinished = read(conn), _any_unfinished(conn)
        if unfinished and self._reap_if_dead():
            with self._read() as conn:
                found = read(conn)
        return found

    def _reap_if_dead(self) -> int:
        lock = self._locks.try_acquire(RETRAIN_LOCK_FILE)
        if lock is None:  # a live retrain holds it
            return 0
        with lock:
            reaped = self.abandon_unfinished()
        if reaped:
            log.warning("interrupted runs marked failed", extra={"runs": reaped})
        return reaped

    def _read(self) -> AbstractContextManager[Connection]:
        self.db.migrate(RUNS.name, MIGRATIONS)  # once per process: the schema on first use
        return self.db.read()

    def _write(self) -> AbstractContextManager[Connection]:
        self.db.migrate(RUNS.name, MIGRATIONS)
        return self.db.write()


def _any_unfinished(conn: Connection) -> bool:
    unfinished = select(RUNS.c.id).where(RUNS.c.state.in_(UNFINISHED)).limit(1)
    return conn.execute(unfinished).first() is not None


def _record(row: RowMapping) -> RunRecord:
    def loads(raw: str | None) -> Any:
        return None if raw is None else json.loads(raw)

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
