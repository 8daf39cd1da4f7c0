"""The real scheduler on a temporary state.db: jobs, restarts, misfires, DST, the worker lock."""

from __future__ import annotations

import itertools
import pickle
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from prometheus_client import CollectorRegistry, generate_latest

from ingest.state.db import StateDB
from ingest.state.sqlite import apply_pragmas
from schedules.scheduler import (
    JOB_IDS,
    RETRAIN,
    RETRAIN_GRACE_SECONDS,
    SWEEP,
    SchedulerStartError,
    WallClockCronTrigger,
    job_store,
    stored_jobs,
)
from scoring.lifecycle.runs import RunStore
from scoring.service.runtime import open_intake
from scoring.settings import Settings, load_settings

from .conftest import SAMPLE, wait_for
from .test_e2e_serve import Server, cli_env

PARIS = ZoneInfo("Europe/Paris")
# A bound on every wait, not a duration: the waits end as soon as their condition holds (two
# 1 s sweeps take ~2.5 s), but a loaded machine (2 cores, several suites) can stall the job
# threads, a training run or a Python start-up for many seconds.
WAIT_BOUND = 120  # a retrain starts a trainer process; slow on a loaded machine


@pytest.fixture
def write_settings(tmp_path: Path, monkeypatch):
    """Write a settings file (the jobs reload it by path) and load it, free of the environment."""
    for name in [n for n in __import__("os").environ if n.startswith("DROPSCORE")]:
        monkeypatch.delenv(name)

    def write(**training: str | int) -> Settings:
        schedule = training.pop("schedule", "0 2 * * *")
        timezone = training.pop("timezone", "UTC")
        sweep = training.pop("sweep_seconds", 60)
        path = tmp_path / "settings.toml"
        path.write_text(
            f'[paths]\ndata_dir = "data"\n'
            f'[training]\nbootstrap_data = ""\nschedule = "{schedule}"\ntimezone = "{timezone}"\n'
            f"[scoring]\nsweep_seconds = {sweep}\n",
            encoding="utf-8",
        )
        return load_settings(path)

    return write


def stored_rows(settings: Settings) -> list[tuple[str, float | None]]:
    with sqlite3.connect(settings.db_path) as conn:
        return conn.execute("SELECT id, next_run_time FROM apscheduler_jobs ORDER BY id").fetchall()


def set_next_run_time(settings: Settings, job_id: str, when: datetime) -> None:
    """Drive the clock: store a job's next run time as if the scheduler had been down."""
    store = job_store(StateDB.at(settings.shared_db_path))
    store.start(BackgroundScheduler(timezone=UTC), "default")  # the store alone: nothing runs
    try:
        job = store.lookup_job(job_id)
        job.next_run_time = when
        store.update_job(job)
    finally:
        store.shutdown()


def take_sample(settings: Settings) -> None:
    _config, _ledger, intake = open_intake(settings)
    assert intake.take_copy(SAMPLE, "train").state == "normalized"


# -- registration -------------------------------------------------------------------------


def test_the_job_store_opens_state_db_like_every_other_store(write_settings):
    """The scheduler's SQLAlchemy connections carry the PRAGMAs every state connection has."""
    settings = write_settings()
    engine = job_store(StateDB.at(settings.shared_db_path)).engine
    try:
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            names = ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            got = [raw.execute(f"PRAGMA {n}").fetchone()[0] for n in names]
    finally:
        engine.dispose()
    expected = sqlite3.connect(settings.db_path)
    apply_pragmas(expected)
    try:
        assert got == [expected.execute(f"PRAGMA {n}").fetchone()[0] for n in names]
    finally:
        expected.close()
    assert got[0] == "wal" and got[3] == 1


def test_restart_keeps_exactly_its_jobs(write_settings, schedules):
    settings = write_settings()
    first = schedules(settings)
    assert first.alive()
    assert {j["id"] for j in first.jobs()} == set(JOB_IDS)
    first.stop()
    assert not first.alive()
    second = schedules(settings)
    assert sorted(j["id"] for j in second.jobs()) == sorted(JOB_IDS)
    assert [row[0] for row in stored_rows(settings)] == sorted(JOB_IDS)
    retrain = next(j for j in second.jobs() if j["id"] == RETRAIN)
    fire = datetime.fromisoformat(retrain["next_run_time"])
    assert (fire.hour, fire.minute) == (2, 0) and fire > datetime.now(UTC)


def test_changed_settings_take_effect_after_restart(write_settings, schedules):
    schedules(write_settings()).stop()
    changed = write_settings(schedule="30 4 * * *", timezone="Europe/Paris", sweep_seconds=7)
    schedule = schedules(changed)
    jobs = {j["id"]: j for j in schedule.jobs()}
    fire = datetime.fromisoformat(jobs[RETRAIN]["next_run_time"]).astimezone(PARIS)
    assert (fire.hour, fire.minute) == (4, 30)
    assert "Europe/Paris" in repr(schedule._scheduler.get_job(RETRAIN).trigger)
    assert schedule._scheduler.get_job(SWEEP).trigger.interval == timedelta(seconds=7)
    assert len(stored_rows(changed)) == len(JOB_IDS)


def test_jobs_are_text_references_with_plain_arguments(write_settings, schedules):
    settings = write_settings()
    scheduler = schedules(settings)._scheduler
    for job_id, name in ((RETRAIN, "retrain"), (SWEEP, "score_sweep")):
        job = scheduler.get_job(job_id)
        assert job.func_ref == f"schedules.jobs:{name}"
        assert job.args == (str(settings.source), str(settings.data_dir))
        assert job.coalesce is True and job.max_instances == 1
    assert scheduler.get_job(RETRAIN).misfire_grace_time == RETRAIN_GRACE_SECONDS


def test_sweep_runs_every_sweep_seconds(write_settings, schedules):
    schedule = schedules(write_settings(sweep_seconds=1))
    wait_for(lambda: schedule.counts()[SWEEP]["executed"] >= 2, timeout=WAIT_BOUND)
    assert schedule.counts()[SWEEP]["failed"] == 0
    status = schedule.status()
    assert status["alive"] is True and status["failed"] == 0 and status["missed"] == 0
    assert {j["id"] for j in status["jobs"]} == set(JOB_IDS)


def test_metrics_collector_counts_runs(write_settings, schedules):
    schedule = schedules(write_settings(sweep_seconds=1))
    wait_for(lambda: schedule.counts()[SWEEP]["executed"] >= 1, timeout=WAIT_BOUND)
    registry = CollectorRegistry()
    registry.register(schedule.collector())
    text = generate_latest(registry).decode()
    runs = "dropscore_scheduler_runs_total"
    assert f'{runs}{{job="score_sweep",model="default",outcome="executed"}}' in text
    assert f'{runs}{{job="retrain",model="default",outcome="missed"}} 0.0' in text
    assert "dropscore_scheduler_up 1.0" in text


# -- misfires -------------------------------------------------------------------------------


def test_a_nightly_run_missed_within_the_grace_runs_once_after_start(write_settings, schedules):
    settings = write_settings()
    take_sample(settings)
    schedules(settings).stop()
    set_next_run_time(settings, RETRAIN, datetime.now(UTC) - timedelta(hours=1))
    schedule = schedules(settings)
    runs = RunStore(StateDB.at(settings.db_path))
    run = wait_for(lambda: next(iter(runs.list()), None), timeout=WAIT_BOUND)
    wait_for(lambda: schedule.counts()[RETRAIN]["executed"] == 1, timeout=WAIT_BOUND)
    assert run.trigger == "schedule"
    run = RunStore(StateDB.at(settings.db_path)).get(run.id)
    assert run.state == "succeeded" and run.promoted and run.version == 1
    assert schedule.counts()[RETRAIN]["missed"] == 0
    fire = datetime.fromisoformat(next(j for j in schedule.jobs() if j["id"] == RETRAIN)[
        "next_run_time"
    ])
    assert fire > datetime.now(UTC)  # back on schedule, once
    assert len(RunStore(StateDB.at(settings.db_path)).list()) == 1


def test_a_nightly_run_missed_beyond_the_grace_is_recorded_as_missed(write_settings, schedules):
    settings = write_settings()
    take_sample(settings)
    schedules(settings).stop()
    late = timedelta(seconds=RETRAIN_GRACE_SECONDS) + timedelta(hours=1)
    set_next_run_time(settings, RETRAIN, datetime.now(UTC) - late)
    schedule = schedules(settings)
    wait_for(lambda: schedule.counts()[RETRAIN]["missed"] == 1, timeout=WAIT_BOUND)
    runs = RunStore(StateDB.at(settings.db_path))
    run = wait_for(lambda: next(iter(runs.list()), None), timeout=WAIT_BOUND)
    assert (run.state, run.skip, run.trigger) == ("skipped", "missed", "schedule")
    assert "grace" in run.reason
    assert schedule.status()["missed"] == 1 and schedule.status()["last_retrain"]["state"] == (
        "skipped"
    )
    time.sleep(0.3)
    assert schedule.counts()[RETRAIN]["executed"] == 0  # nothing was trained


# -- a stored job that cannot be loaded --------------------------------------------------------


def test_a_stored_job_that_cannot_be_loaded_stops_the_start(write_settings, schedules):
    settings = write_settings()
    store = job_store(StateDB.at(settings.shared_db_path))
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone=UTC)
    scheduler.start(paused=True)
    scheduler.add_job("schedules.jobs:retrain", "interval", hours=1, id="legacy", args=[None, ""])
    scheduler.shutdown(wait=False)
    with sqlite3.connect(settings.db_path) as conn:  # its function was renamed since
        blob = conn.execute("SELECT job_state FROM apscheduler_jobs").fetchone()[0]
        state = pickle.loads(blob)
        state["func"] = "schedules.jobs:nightly_retrain_v0"
        conn.execute("UPDATE apscheduler_jobs SET job_state=?", (pickle.dumps(state),))
    with pytest.raises(SchedulerStartError) as caught:
        schedules(settings)
    message = str(caught.value)
    assert "stored job 'legacy'" in message and "cannot be loaded" in message
    assert "DELETE FROM apscheduler_jobs WHERE id='legacy'" in message
    assert [row[0] for row in stored_rows(settings)] == ["legacy"]  # not silently dropped


def test_an_unloadable_copy_of_our_own_job_is_replaced(write_settings, schedules):
    settings = write_settings()
    schedules(settings).stop()
    with sqlite3.connect(settings.db_path) as conn:
        conn.execute("UPDATE apscheduler_jobs SET job_state=? WHERE id=?", (b"garbage", RETRAIN))
    schedule = schedules(settings)
    assert {j["id"] for j in schedule.jobs()} == set(JOB_IDS)


# -- time zones -------------------------------------------------------------------------------


def fires(trigger: CronTrigger, start: datetime, count: int) -> list[datetime]:
    out, previous, now = [], None, start
    for _ in range(count):
        previous = trigger.get_next_fire_time(previous, now)
        out.append(previous)
        now = previous
    return out


@pytest.mark.parametrize("expr", ["0 2 * * *", "30 2 * * *"])
@pytest.mark.parametrize(
    "start", [datetime(2025, 3, 28, 12, tzinfo=PARIS), datetime(2025, 10, 24, 12, tzinfo=PARIS)]
)
def test_the_nightly_cron_fires_once_a_day_across_dst(expr, start):
    times = fires(WallClockCronTrigger.from_crontab(expr, timezone="Europe/Paris"), start, 6)
    days = [t.astimezone(PARIS).date() for t in times]
    assert days == [start.date() + timedelta(days=i) for i in range(1, 7)]  # one per day
    utc = [t.astimezone(UTC) for t in times]
    assert all(b - a >= timedelta(hours=23) for a, b in itertools.pairwise(utc))


def test_the_stock_cron_would_fire_twice_on_the_fall_back_night():
    stock = fires(CronTrigger.from_crontab("0 2 * * *", timezone="Europe/Paris"),
                  datetime(2025, 10, 25, 12, tzinfo=PARIS), 2)
    assert stock[0].date() == stock[1].date()  # why WallClockCronTrigger exists
    ours = fires(WallClockCronTrigger.from_crontab("0 2 * * *", timezone="Europe/Paris"),
                 datetime(2025, 10, 25, 12, tzinfo=PARIS), 2)
    assert ours[0].astimezone(UTC) == datetime(2025, 10, 26, 0, tzinfo=UTC)  # 02:00 CEST
    assert ours[1].astimezone(UTC) == datetime(2025, 10, 27, 1, tzinfo=UTC)  # 02:00 CET


def test_the_spring_forward_night_fires_once_when_the_clock_jumps():
    ours = fires(WallClockCronTrigger.from_crontab("30 2 * * *", timezone="Europe/Paris"),
                 datetime(2025, 3, 29, 12, tzinfo=PARIS), 2)
    assert ours[0].astimezone(UTC) == datetime(2025, 3, 30, 1, 30, tzinfo=UTC)  # 03:30 CEST
    assert ours[1].astimezone(UTC) == datetime(2025, 3, 31, 0, 30, tzinfo=UTC)  # 02:30 CEST


def test_the_trigger_survives_the_job_store(write_settings, schedules):
    settings = write_settings(timezone="Europe/Paris")
    schedules(settings).stop()
    store = job_store(StateDB.at(settings.shared_db_path))
    stored = stored_jobs(store)[RETRAIN]  # as a fresh process reads it back
    assert isinstance(stored.trigger, WallClockCronTrigger)


# -- the worker lock, with real processes -----------------------------------------------------


@pytest.mark.slow
def test_a_second_worker_on_the_same_folder_exits_at_once(tmp_path):
    env = cli_env(tmp_path / "data", 0)
    env["DROPSCORE__TRAINING__BOOTSTRAP_DATA"] = '""'
    first = Server(["worker"], env, 0, tmp_path / "first.log")
    second = None
    try:
        wait_for(
            lambda: "scheduler started" in first.log.read_text(), timeout=WAIT_BOUND, interval=0.1
        )
        second = Server(["worker"], env, 0, tmp_path / "second.log")
        # "At once" means without waiting for the lock: the second exits while the first still
        # holds it (a bound on the wait, not a stopwatch: starting Python is slow under load).
        assert second.proc.wait(timeout=WAIT_BOUND) == 1
        assert first.proc.poll() is None
        assert "is already served by pid" in second.log.read_text()
        assert "scheduler started" not in second.log.read_text()
        assert first.stop() == 0
        log = first.log.read_text()
        assert "scheduler stopped" in log and "Traceback" not in log
    finally:
        for server in (first, second):
            if server is not None and server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait()
