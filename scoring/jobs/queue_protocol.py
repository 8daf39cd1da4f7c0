"""What the batch jobs ask of their queue: submit, read, claim the next, finish, requeue.

``scoring.jobs.store.JobStore`` keeps it in the model's state database through SQLAlchemy Core
(SQLite by default, PostgreSQL where ``[state] url`` says); another backend implements
``JobQueue``.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

STATES = ("queued", "running", "succeeded", "failed")
QUEUED, RUNNING, SUCCEEDED, FAILED = STATES


@dataclass(frozen=True)
class Job:
    """One batch job's row: what to score into where, its state and what it produced."""

    id: int
    state: str
    input: str
    output: str
    submitted_at: str
    submitted_by: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    rows_scored: int | None = None
    rows_failed: int | None = None
    model_version: str | None = None
    error: str | None = None
    owner: str | None = None  # host:pid of the process running it
    attempts: int = 0  # how many times it was claimed (a restart re-queues a running job)

    @property
    def done(self) -> bool:
        """Tell whether the job has ended, whatever the result."""
        return self.state in (SUCCEEDED, FAILED)

    def to_dict(self, model: str) -> dict[str, Any]:
        """Return the JSON shape the API and ``dropscore jobs`` show."""
        body = asdict(self)
        body.pop("owner")
        body["id"] = str(self.id)
        body["model"] = model
        body["rows"] = (
            None if self.rows_scored is None else self.rows_scored + (self.rows_failed or 0)
        )
        body["failures"] = self.rows_failed
        return body


@dataclass(frozen=True)
class Outcome:
    """What a finished run of a job produced."""

    rows_scored: int
    rows_failed: int
    model_version: str


class JobQueue(Protocol):
    """A model's batch jobs: queued by any process, run by whichever claims them."""

    def submit(self, input: str, output: str, by: str | None = None) -> Job:
        """Queue a job; return its row."""
        ...

    def get(self, job_id: int) -> Job | None:
        """Return one job, or None."""
        ...

    def list(self, limit: int = 100) -> list[Job]:
        """Return the newest jobs first."""
        ...

    def claim_next(self, owner: str) -> Job | None:
        """Take the oldest queued job for ``owner`` in one write transaction; None when idle."""
        ...

    def beat(self, job_id: int, owner: str) -> None:
        """Say the owner still runs the job (a replica that stops saying so has died)."""
        ...

    def succeed(self, job_id: int, outcome: Outcome) -> Job:
        """Record a job's result."""
        ...

    def fail(self, job_id: int, error: str) -> Job:
        """Record why a job failed."""
        ...

    def requeue_orphans(self, dead: Callable[[Job], bool]) -> builtins.list[int]:
        """Put back in the queue every running job whose owner ``dead`` says has died."""
        ...
