"""A model's batch jobs in its state database: one row per job, claimed by one process at a time.

A job is queued by whichever process took the request (an ``api`` replica, ``dropscore jobs
submit``) and run by whichever process runs the background work (``serve``, ``worker``): the
claim is one write transaction (the state database's write lock on SQLite; ``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, so replicas claiming at once take different jobs, never one twice). A
job stays ``running`` with its owner (``host:pid``) and a heartbeat while it runs; a process
that starts finds the running jobs whose owner died (a pid gone on this host, or no heartbeat
for ``STALE_SECONDS``) and puts them back in the queue, so a job survives a restart.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Column, Index, Integer, MetaData, RowMapping, Table, Text, select

from ingest.state.db import WIDE_INTEGER, Migration, StateDB, create_tables, widen_integers
from scoring.jobs.queue_protocol import FAILED, QUEUED, RUNNING, SUCCEEDED, Job, Outcome
from scoring.lifecycle.registry import now

STORE = "jobs"

METADATA = MetaData()
JOBS = Table(
    "jobs",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("state", Text, nullable=False),
    Column("input", Text, nullable=False),
    Column("output", Text, nullable=False),
    Column("submitted_at", Text, nullable=False),
    Column("submitted_by", Text),
    Column("started_at", Text),
    Column("finished_at", Text),
    Column("beat_at", Text),  # the owner's last heartbeat while running
    Column("rows_scored", WIDE_INTEGER),  # a job's input may hold 2**31 rows and more
    Column("rows_failed", WIDE_INTEGER),
    Column("model_version", Text),
    Column("error", Text),
    Column("owner", Text),
    Column("attempts", Integer, nullable=False, default=0),
    Index("jobs_state", "state"),
    sqlite_autoincrement=True,  # a job id is never reused, so a Location stays its own
)
MIGRATIONS = [
    Migration(1, "the batch jobs table", create_tables(METADATA)),
    Migration(
        2, "row counts of 2**31 and more", widen_integers("jobs", "rows_scored", "rows_failed")
    ),
]
_FIELDS = (
    "id",
    "state",
    "input",
    "output",
    "submitted_at",
    "submitted_by",
    "started_at",
    "finished_at",
    "rows_scored",
    "rows_failed",
    "model_version",
    "error",
    "owner",
    "attempts",
)


def _job(row: RowMapping) -> Job:
    return Job(**{name: row[name] for name in _FIELDS})


def age_seconds(stamp: str | None) -> float:
    """Say how long ago a stored time was (infinite for none)."""
    if not stamp:
        return float("inf")
    return (datetime.now(UTC) - datetime.fromisoformat(stamp)).total_seconds()


class JobStore:
    """One model's batch jobs in its state database (a ``JobQueue``)."""

    def __init__(self, db: StateDB) -> None:
        self.db = db

    def _ready(self) -> None:
        self.db.migrate(STORE, MIGRATIONS)

    def submit(self, input: str, output: str, by: str | None = None) -> Job:
        """Queue a job; return its row."""
        self._ready()
        values = {
            "state": QUEUED,
            "input": input,
            "output": output,
            "submitted_at": now(),
            "submitted_by": by,
            "attempts": 0,
        }
        with self.db.write() as conn:
            row = conn.execute(JOBS.insert().values(**values).returning(*JOBS.c)).mappings().one()
        return _job(row)

    def get(self, job_id: int) -> Job | None:
        """Return one job, or None."""
        self._ready()
        with self.db.read() as conn:
            row = conn.execute(select(JOBS).where(JOBS.c.id == job_id)).mappings().first()
        return None if row is None else _job(row)

    def list(self, limit: int = 100) -> list[Job]:
        """Return the newest jobs first."""
        self._ready()
        with self.db.read() as conn:
            rows = conn.execute(select(JOBS).order_by(JOBS.c.id.desc()).limit(limit)).mappings()
            return [_job(row) for row in rows]

    def claim_next(self, owner: str) -> Job | None:
        """Take the oldest queued job for ``owner`` in one write transaction; None when idle."""
        self._ready()
        oldest = select(JOBS.c.id).where(JOBS.c.state == QUEUED).order_by(JOBS.c.id).limit(1)
        # Not write(): on PostgreSQL that first waits for the schema's lock, behind every write
        # of every store in it; claiming() locks only the row it takes (SKIP LOCKED).
        with self.db.claiming() as conn:
            found = conn.execute(StateDB.next_unclaimed(oldest)).scalar_one_or_none()
            if found is None:
                return None
            stamp = now()
            row = (
                conn.execute(
                    JOBS.update()
                    .where(JOBS.c.id == found)
                    .values(
                        state=RUNNING,
                        owner=owner,
                        started_at=stamp,
                        beat_at=stamp,
                        attempts=JOBS.c.attempts + 1,
                        error=None,
                    )
                    .returning(*JOBS.c)
                )
                .mappings()
                .one()
            )
        return _job(row)

    def beat(self, job_id: int, owner: str) -> None:
        """Say the owner still runs the job (a replica that stops saying so has died)."""
        self._ready()
        where = (JOBS.c.id == job_id) & (JOBS.c.owner == owner) & (JOBS.c.state == RUNNING)
        with self.db.write() as conn:
            conn.execute(JOBS.update().where(where).values(beat_at=now()))

    def succeed(self, job_id: int, outcome: Outcome) -> Job:
        """Record a job's result."""
        return self._finish(
            job_id,
            state=SUCCEEDED,
            rows_scored=outcome.rows_scored,
            rows_failed=outcome.rows_failed,
            model_version=outcome.model_version,
            error=None,
        )

    def fail(self, job_id: int, error: str) -> Job:
        """Record why a job failed."""
        return self._finish(job_id, state=FAILED, error=error)

    def _finish(self, job_id: int, **values: object) -> Job:
        self._ready()
        with self.db.write() as conn:
            row = (
                conn.execute(
                    JOBS.update()
                    .where(JOBS.c.id == job_id)
                    .values(finished_at=now(), **values)
                    .returning(*JOBS.c)
                )
                .mappings()
                .one()
            )
        return _job(row)

    def requeue_orphans(self, dead: Callable[[Job], bool]) -> builtins.list[int]:
        """Put back in the queue every running job whose owner ``dead`` says has died."""
        self._ready()
        with self.db.write() as conn:
            rows = conn.execute(select(JOBS).where(JOBS.c.state == RUNNING)).mappings().all()
            orphans = [row["id"] for row in rows if dead(_job(row)) or _stale(row)]
            if orphans:
                conn.execute(
                    JOBS.update()
                    .where(JOBS.c.id.in_(orphans) & (JOBS.c.state == RUNNING))
                    .values(state=QUEUED, owner=None, beat_at=None)
                )
        return orphans


STALE_SECONDS = 120.0  # no heartbeat for this long: the owner (on any machine) has died


def _stale(row: RowMapping) -> bool:
    return age_seconds(row["beat_at"]) > STALE_SECONDS
