"""Running batch jobs: claim the oldest queued one, score it on the configured engine, record it.

Whichever process runs the background work (``serve``, ``worker``) runs one ``JobRunner``
thread over every model it serves. At start, and every ``REQUEUE_SECONDS`` after, it puts back
in the queue the jobs a dead process left ``running`` (``JobQueue.requeue_orphans``: an owner of
this host that exited, or any owner whose heartbeat went stale), so a replica that dies while
the others run on has its jobs taken over; between times it claims and runs jobs one at a time,
beating the job's heartbeat while it runs so other replicas can tell it is alive. A job scores
with the champion at the time it starts, on ``[scoring] engine``: on Dask a Parquet input is
read and written by the workers themselves (``scoring.bulk.remote``); anything else goes through
the one bulk scorer here. Output is written whole under its name or not at all, so a job run
again after a restart writes the same file again. Whatever goes wrong becomes the job's error
in words (a bad input is a failed job, never a crash of the thread or a 500).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
import time

from ingest.base.errors import IngestError
from scoring.bulk.filesystems import workers_reach, workers_read
from scoring.bulk.transfer import readable, writable
from scoring.errors import DropscoreError, NoModel
from scoring.jobs.locations import Target, resolve_input, resolve_output
from scoring.jobs.queue_protocol import Job, Outcome
from scoring.models.model import Model, Models
from scoring.monitoring.bulk import BulkDrift, DriftWatch
from scoring.monitoring.records_protocol import JOB

log = logging.getLogger("dropscore.jobs")

POLL_SECONDS = 1.0  # how often an idle runner looks for a queued job
BEAT_SECONDS = 10.0  # how often a running job's heartbeat is written (stale after 120 s)
STOP_SECONDS = 5.0  # how long a stopping process waits for the job it runs
REQUEUE_SECONDS = 60.0  # how often a running runner looks for jobs a dead process left running


class Owner:
    """This process as a job's owner: host, pid and a token, so a reused pid is not taken for it."""

    def __init__(self) -> None:
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.token = secrets.token_hex(4)

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.token}"

    def dead(self, job: Job) -> bool:
        """Tell whether a running job's owner is a process of this host that no longer runs it."""
        host, pid, token = [*(job.owner or "").split(":"), "", "", ""][:3]
        if host != self.host or not pid.isdigit():
            return False  # another machine's: its heartbeat tells
        if int(pid) == self.pid:
            return token != self.token  # this pid, an earlier process (a container restarted)
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # alive, another user's
        return False


def run_job(model: Model, job: Job) -> Outcome:
    """Score a job's input into its output with the current champion; raise what went wrong.

    The job's drift is watched while it scores (on Dask, each worker its own part) and
    recorded under the ``job`` source with the job's id once the output is published.
    """
    version = model.registry.champion_version()
    if version is None:
        raise NoModel(f"model {model.name!r} has no champion yet: train one first")
    drift = BulkDrift(model)
    watch = drift.watch_version(version)
    outcome = _score(model, job, version, watch)
    drift.record(watch, source=JOB, ref=str(job.id))
    return outcome


def _score(model: Model, job: Job, version: int, watch: DriftWatch | None) -> Outcome:
    """Score the job on the workers when they reach both files, else in this process."""
    settings = model.settings
    src = resolve_input(settings, job.input)
    dst, fmt = resolve_output(settings, job.output)
    dask = settings.scoring.engine == "dask"
    address = settings.scoring.dask_address
    if dask and workers_read(src.location, address) and workers_reach(dst.location, address):
        from scoring.bulk.remote import score_on_workers
        from scoring.bulk.worker_models import model_ref

        ref = model_ref(model.name, model.registry, version)
        summary = score_on_workers(
            settings, src.location, dst.location, ref, fmt=fmt, observe=watch
        )
        if summary is not None:  # None: a CSV the workers cannot cut; this process reads it
            return Outcome(summary.rows_scored, summary.rows_failed, summary.model_version)
    return _score_here(model, version, src, dst, fmt, watch)


def _score_here(
    model: Model, version: int, src: Target, dst: Target, fmt: str, watch: DriftWatch | None
) -> Outcome:
    """Score with the bulk scorer of this process (the local engine, or Dask from the client)."""
    from scoring.bulk.batch import score_path
    from scoring.bulk.engines import engine_for
    from scoring.ingest_options import read_options
    from scoring.lifecycle.champion import load_version

    settings = model.settings
    with readable(settings, src.location) as path, writable(settings, dst.location) as out:
        summary = score_path(
            path,
            out,
            load_version(model.registry, version),
            read=read_options(settings),
            fmt=fmt,
            engine=engine_for(settings, registry=model.registry),
            observe=watch,
        )
    return Outcome(summary.rows_scored, summary.rows_failed, summary.model_version)


def describe(job: Job, exc: BaseException) -> str:
    """Say in one line why a job failed, for the person who submitted it."""
    if isinstance(exc, (DropscoreError, IngestError)):
        return exc.message
    if isinstance(exc, FileNotFoundError):
        return f"{job.input}: no such file"
    if isinstance(exc, OSError):
        return f"{job.input} → {job.output}: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {str(exc)[:300]}"


class JobRunner:
    """One thread claiming and running every served model's batch jobs, one at a time."""

    def __init__(
        self,
        models: Models,
        poll_seconds: float = POLL_SECONDS,
        requeue_seconds: float = REQUEUE_SECONDS,
    ) -> None:
        self.models = models
        self.poll_seconds = poll_seconds
        self.requeue_seconds = requeue_seconds
        self.owner = Owner()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Re-queue what dead processes left running, then run jobs on a thread of their own."""
        self.requeue()
        self.thread = threading.Thread(target=self._loop, name="dropscore-jobs", daemon=True)
        self.thread.start()

    def stop(self, wait_seconds: float = STOP_SECONDS) -> None:
        """Stop claiming; wait a little for a running job, else leave it to the next start.

        A job cut short by the exit has written nothing under its output's name (every
        output is published whole) and stays ``running``: the next start re-queues it.
        """
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(wait_seconds)

    def requeue(self) -> None:
        """Put back in the queue the jobs a dead process was running."""
        for model in list(self.models.values()):
            for job_id in model.jobs.requeue_orphans(self.owner.dead):
                log.warning("job re-queued", extra={"model": model.name, "job": job_id})

    def run_once(self) -> Job | None:
        """Claim and run the oldest queued job of any model; None when there was none."""
        for model in list(self.models.values()):
            job = model.jobs.claim_next(str(self.owner))
            if job is not None:
                return self._run(model, job)
        return None

    def _loop(self) -> None:
        requeue_at = time.monotonic() + self.requeue_seconds
        while not self.stopping.is_set():
            try:
                if time.monotonic() >= requeue_at:
                    requeue_at = time.monotonic() + self.requeue_seconds
                    self.requeue()
                ran = self.run_once()
            except Exception:  # the state database away for a moment: try again later
                log.exception("job runner")
                ran = None
            if ran is None:
                self.stopping.wait(min(self.poll_seconds, self.requeue_seconds))

    def _run(self, model: Model, job: Job) -> Job:
        extra = {"model": model.name, "job": job.id, "input": job.input, "output": job.output}
        log.info("job started", extra=extra)
        done = threading.Event()
        beat = threading.Thread(target=self._beat, args=(model, job, done), daemon=True)
        beat.start()
        try:
            outcome = run_job(model, job)
            finished = model.jobs.succeed(job.id, outcome)  # a failure here fails the job, said
        except Exception as exc:
            if not isinstance(exc, (DropscoreError, IngestError, OSError)):
                log.exception("job failed unexpectedly", extra=extra)
            finished = model.jobs.fail(job.id, describe(job, exc))
            log.warning("job failed", extra={**extra, "error": finished.error})
            return finished
        finally:
            done.set()
            beat.join()
        log.info("job succeeded", extra={**extra, "rows": outcome.rows_scored})
        return finished

    def _beat(self, model: Model, job: Job, done: threading.Event) -> None:
        while not done.wait(BEAT_SECONDS):
            with contextlib.suppress(Exception):  # a missed beat is not a failed job
                model.jobs.beat(job.id, str(self.owner))
