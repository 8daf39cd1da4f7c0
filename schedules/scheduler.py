"""The one APScheduler of a data folder: the nightly retrain, the score sweep, the canary check.

``dropscore worker`` and ``dropscore serve`` start it while they hold the worker lock, never an API
worker (APScheduler's job store cannot be shared by several running schedulers). Jobs live in
the shared ``state.db`` under fixed ids, three per model (``retrain:<name>``,
``score_sweep:<name>``, ``canary_check:<name>``; the plain kinds for the model ``default``, as
before several models, so an
existing deployment keeps its stored jobs), registered by text reference with
``replace_existing``, so a restart never duplicates them and changed settings take effect. A
nightly run missed while nothing ran is kept (its stored next run time survives the restart when
the schedule did not change): it runs once after start within the grace, and is counted and
recorded as missed beyond it.

APScheduler 3.x deletes a stored job it cannot unpickle (``Unable to restore job -- removing
it``); ``Schedule.start`` reads every stored job first and refuses to start instead, naming it.
"""

from __future__ import annotations

import logging
import pickle
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
    JobExecutionEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import select

from ingest.base.layout import DEFAULT_MODEL
from ingest.state.db import StateDB, masked
from scoring.lifecycle.runner import record_skipped
from scoring.lifecycle.runs import RunRecord
from scoring.models.factory import open_models
from scoring.models.job_ids import (
    CANARY,
    JOB_KINDS,
    RETRAIN,
    SWEEP,
    is_ours,
    job_id,
    job_kind,
    job_model,
)
from scoring.models.model import Models
from scoring.settings import Settings

log = logging.getLogger("dropscore.schedules")

JOB_IDS = JOB_KINDS  # the model ``default``'s ids
# A nightly run missed while the scheduler was down still runs if it starts within this long.
RETRAIN_GRACE_SECONDS = 6 * 3600
OUTCOMES = ("executed", "failed", "missed", "skipped")
_EVENTS = {
    EVENT_JOB_EXECUTED: "executed",
    EVENT_JOB_ERROR: "failed",
    EVENT_JOB_MISSED: "missed",
    EVENT_JOB_MAX_INSTANCES: "skipped",
}


class SchedulerStartError(Exception):
    """The scheduler cannot start safely (a stored job cannot be loaded); the message says why."""


class WallClockCronTrigger(CronTrigger):
    """Fire each wall-clock time once: the second pass through a repeated hour is skipped.

    When clocks fall back, APScheduler's cron fires 02:00 twice (02:00+02:00 and 02:00+01:00);
    like cron itself we run it once. A time that does not exist (spring forward) still fires once,
    at the moment the clock jumps past it.
    """

    __slots__ = ()

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> Any:
        """Return the next fire time that is not a repeat of an earlier wall-clock time."""
        fire = super().get_next_fire_time(previous_fire_time, now)
        while fire is not None and _second_pass(fire):
            fire = super().get_next_fire_time(fire, fire)
        return fire


def _second_pass(moment: datetime) -> bool:
    """Tell whether a time is the later of two instants with the same wall-clock reading."""
    if moment.fold != 1:
        return False
    first = moment.replace(fold=0)
    return first.utcoffset() != moment.utcoffset() and _exists(first)


def _exists(moment: datetime) -> bool:
    back = moment.astimezone(UTC).astimezone(moment.tzinfo)
    return back.replace(tzinfo=None, fold=0) == moment.replace(tzinfo=None, fold=0)


def retrain_trigger(settings: Settings) -> WallClockCronTrigger:
    """Read ``[training] schedule`` as a crontab line in ``[training] timezone``."""
    return WallClockCronTrigger.from_crontab(
        settings.training.schedule, timezone=settings.training.timezone
    )


def job_specs(settings: Settings) -> list[dict[str, Any]]:
    """Describe every model's jobs by text reference and plain arguments (they pickle into
    state.db)."""
    return [spec for one in settings.each_model() for spec in _model_jobs(one)]


def _model_jobs(settings: Settings) -> list[dict[str, Any]]:
    args = [str(settings.source) if settings.source else None, str(settings.data_dir)]
    if settings.name != DEFAULT_MODEL:
        args.append(settings.name)
    sweep = settings.scoring.sweep_seconds
    check = settings.monitoring.canary_check_seconds
    suffix = "" if settings.name == DEFAULT_MODEL else f" ({settings.name})"
    return [
        {
            "id": job_id(RETRAIN, settings.name),
            "name": "nightly retrain" + suffix,
            "func": "schedules.jobs:retrain",
            "trigger": retrain_trigger(settings),
            "args": args,
            "misfire_grace_time": RETRAIN_GRACE_SECONDS,
        },
        {
            "id": job_id(SWEEP, settings.name),
            "name": "score sweep" + suffix,
            "func": "schedules.jobs:score_sweep",
            "trigger": IntervalTrigger(seconds=sweep, timezone=UTC),
            "args": args,
            "misfire_grace_time": sweep,
        },
        {
            "id": job_id(CANARY, settings.name),
            "name": "canary rule check" + suffix,
            "func": "schedules.jobs:canary_check",
            "trigger": IntervalTrigger(seconds=check, timezone=UTC),
            "args": args,
            "misfire_grace_time": max(1, int(check)),
        },
    ]


def job_store(db: StateDB) -> SQLAlchemyJobStore:
    """Keep jobs in the state database on its own engine: the pragmas and policy of every store.

    The job store's ``shutdown`` disposes of that engine's idle pooled connections (the other
    stores on the shared database among them); the pool opens new ones when next used.
    """
    return SQLAlchemyJobStore(engine=db.engine)


def stored_jobs(store: SQLAlchemyJobStore) -> dict[str, Job]:
    """Load every stored job, raising SchedulerStartError for one that cannot be restored."""
    table = store.jobs_t
    table.create(store.engine, checkfirst=True)
    with store.engine.begin() as conn:
        rows = conn.execute(select(table.c.id, table.c.job_state)).fetchall()
    jobs: dict[str, Job] = {}
    for stored_id, blob in rows:
        try:
            job = Job.__new__(Job)
            job.__setstate__(pickle.loads(blob))
        except Exception as exc:
            if is_ours(stored_id):  # ours: replaced by its current definition
                log.warning("stored job replaced", extra={"job": stored_id, "error": str(exc)})
                continue
            delete = f"DELETE FROM {table.name} WHERE id='{stored_id}'"
            server = masked(store.engine.url.set(drivername="postgresql"))  # psql's spelling
            shell = (  # the database's own client; a server's URL with its password masked
                f'sqlite3 {store.engine.url.database} "{delete}"'
                if store.engine.dialect.name == "sqlite"
                else f"psql '{server}' -c \"{delete}\""
            )
            raise SchedulerStartError(
                f"stored job {stored_id!r} in {store.engine.url.database} cannot be loaded"
                f" ({type(exc).__name__}: {exc}); APScheduler would delete it silently."
                f" Remove it yourself if it is obsolete: {shell}"
            ) from None
        jobs[stored_id] = job
    return jobs


@dataclass
class _Tally:
    counts: dict[str, dict[str, int]]
    last: dict[str, dict[str, Any]]


class Schedule:
    """Own the BackgroundScheduler of this process: start, report, stop."""

    def __init__(self, settings: Settings, models: Models | None = None) -> None:
        self.settings = settings
        # the process's models (their runs, the shared database its jobs are kept in)
        self.models = models if models is not None else open_models(settings)
        self._scheduler: BackgroundScheduler | None = None
        self._lock = threading.Lock()
        self._tally = _Tally({j: dict.fromkeys(OUTCOMES, 0) for j in self.job_ids()}, {})

    def job_ids(self) -> list[str]:
        """The ids of every job this schedule keeps: three per model."""
        return [job_id(kind, name) for name in self.settings.model_names for kind in JOB_KINDS]

    def start(self) -> None:
        """Register the jobs (keeping a pending nightly run) and start the scheduler thread."""
        store = job_store(self.models.shared.db)
        stored = stored_jobs(store)
        ours = self.job_ids()
        for stale in set(stored) - set(ours):
            if is_ours(stale):  # a model no longer in the settings
                store.remove_job(stale)
                log.warning("job of a removed model deleted", extra={"job": stale})
            else:
                log.warning("stored job not managed by dropscore", extra={"job": stale})
        scheduler = BackgroundScheduler(
            jobstores={"default": store},
            # one thread per job: one model's retrain never holds up another's sweep
            executors={"default": ThreadPoolExecutor(max_workers=len(ours))},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
        )
        scheduler.add_listener(
            self._on_event,
            EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES,
        )
        for spec in job_specs(self.settings):
            kept = _kept_run_time(stored.get(spec["id"]), spec["trigger"])
            extra = {"next_run_time": kept} if kept else {}
            scheduler.add_job(replace_existing=True, **spec, **extra)
        scheduler.start()
        self._scheduler = scheduler
        log.info("scheduler started", extra={"jobs": self.jobs()})

    def add_model(self, root: Settings, name: str) -> None:
        """Add one model's jobs to the running scheduler (a reload found its section).

        Its jobs run on an executor of their own, as the models started with the scheduler each
        have threads of their own in the default one: its retrain never holds up another's sweep.
        """
        scheduler = self._scheduler
        with self._lock:
            self.settings = root
            for kind in JOB_KINDS:
                self._tally.counts.setdefault(job_id(kind, name), dict.fromkeys(OUTCOMES, 0))
        if scheduler is None:
            return
        executor = _executor_of(name)
        scheduler.add_executor(ThreadPoolExecutor(max_workers=len(JOB_KINDS)), alias=executor)
        for spec in _model_jobs(root.for_model(name)):
            scheduler.add_job(replace_existing=True, executor=executor, **spec)
        log.info("model's jobs added", extra={"model": name, "jobs": self.jobs()})

    def remove_model(self, root: Settings, name: str) -> None:
        """Delete one model's jobs and wait for a running one to end (its section was removed)."""
        scheduler = self._scheduler
        with self._lock:
            self.settings = root
        if scheduler is None:
            return
        for kind in JOB_KINDS:
            if scheduler.get_job(job_id(kind, name)) is not None:
                scheduler.remove_job(job_id(kind, name))
        if _executor_of(name) in scheduler._executors:  # added by a reload: its threads end here
            scheduler.remove_executor(_executor_of(name))  # waits for a running job
        log.info("model's jobs removed", extra={"model": name})

    def stop(self, wait: bool = True) -> None:
        """Shut down, by default after the running jobs finish."""
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None and scheduler.running:
            log.info("scheduler stopping", extra={"wait": wait})
            scheduler.shutdown(wait=wait)
            log.info("scheduler stopped")

    def alive(self) -> bool:
        """Tell whether the scheduler thread is running, for /health."""
        scheduler = self._scheduler
        thread = getattr(scheduler, "_thread", None)
        return bool(scheduler and scheduler.running and thread and thread.is_alive())

    def jobs(self) -> list[dict[str, Any]]:
        """List the stored jobs with their next fire times (ISO 8601, UTC offsets kept)."""
        if self._scheduler is None:
            return []
        return [
            {
                "id": job.id,
                "trigger": str(job.trigger),
                "next_run_time": job.next_run_time.isoformat() if job.next_run_time else None,
            }
            for job in self._scheduler.get_jobs()
        ]

    def counts(self) -> dict[str, dict[str, int]]:
        """Return each job's run counts by outcome, copied under the lock."""
        with self._lock:
            return {job: dict(c) for job, c in self._tally.counts.items()}

    def status(self) -> dict[str, Any]:
        """Report liveness, next fire times, run counts and the last retrain, for /health."""
        counts = self.counts()
        last = {name: model.runs.last() for name, model in self.models.items()}
        with self._lock:
            last_events = dict(self._tally.last)
        first = last[self.settings.name]
        return {
            "alive": self.alive(),
            "jobs": self.jobs(),
            **{o: sum(c[o] for c in counts.values()) for o in OUTCOMES},
            "by_job": counts,
            "last_events": last_events,
            "last_retrain": None if first is None else _run_summary(first),
            "last_retrain_by_model": {
                name: None if run is None else _run_summary(run) for name, run in last.items()
            },
        }

    def collector(self) -> _ScheduleCollector:
        """Return a Prometheus collector of run counts by job and outcome."""
        return _ScheduleCollector(self)

    def _on_event(self, event: JobEvent) -> None:
        """Log and count a job's end: executed, failed, missed or skipped."""
        outcome = _EVENTS[event.code]
        retval = event.retval if isinstance(event, JobExecutionEvent) else None
        if outcome == "executed" and retval in ("skipped", "failed"):  # a retrain did not train
            outcome = retval
        job = event.job_id
        with self._lock:
            self._tally.counts.setdefault(job, dict.fromkeys(OUTCOMES, 0))[outcome] += 1
            self._tally.last[job] = {"outcome": outcome, "at": datetime.now(UTC).isoformat()}
        scheduled = getattr(event, "scheduled_run_time", None)
        extra = {"job": job, "outcome": outcome, "scheduled": str(scheduled)}
        if outcome == "failed" and getattr(event, "exception", None) is not None:
            extra["error"] = f"{type(event.exception).__name__}: {event.exception}"
        level = logging.INFO if outcome == "executed" else logging.WARNING
        log.log(level, "job " + outcome, extra=extra)
        if outcome == "missed" and job_kind(job) == RETRAIN:
            self._record_missed(job_model(job), scheduled)

    def _record_missed(self, model: str, scheduled: datetime | None) -> None:
        grace = RETRAIN_GRACE_SECONDS // 3600
        reason = (
            f"missed the retrain due at {scheduled}: the scheduler was not running within"
            f" the {grace} h grace; the next one runs on schedule"
        )
        try:
            runs = self.models[model].runs
            record_skipped(self.settings.for_model(model), "schedule", reason, "missed", runs)
        except Exception:  # the count and the log line above still tell it
            log.exception("missed run not recorded")


def _executor_of(model: str) -> str:
    """The executor alias of a model added by a reload."""
    return f"model:{model}"


def _kept_run_time(stored: Job | None, trigger: BaseTrigger) -> datetime | None:
    """Keep a stored run time when the schedule is unchanged, so a missed run is not lost."""
    if stored is None or stored.next_run_time is None:
        return None
    if not isinstance(trigger, CronTrigger) or repr(stored.trigger) != repr(trigger):
        return None
    return stored.next_run_time


def _run_summary(run: RunRecord) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "trigger": run.trigger,
        "state": run.state,
        "finished_at": run.finished_at,
        "version": None if run.version is None else str(run.version),
        "promoted": run.promoted,
        "reason": run.reason,
    }


class _ScheduleCollector:
    """Expose the scheduler's counts to /metrics at scrape time."""

    def __init__(self, schedule: Schedule) -> None:
        self._schedule = schedule

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        runs = CounterMetricFamily(
            "dropscore_scheduler_runs",
            "scheduled job runs by job, model and outcome (executed, failed, missed, skipped)",
            labels=["job", "model", "outcome"],
        )
        for job, counts in sorted(self._schedule.counts().items()):
            for outcome, n in counts.items():
                runs.add_metric([job_kind(job), job_model(job), outcome], float(n))
        yield runs
        up = GaugeMetricFamily("dropscore_scheduler_up", "1 while this process's scheduler runs")
        up.add_metric([], 1.0 if self._schedule.alive() else 0.0)
        yield up
