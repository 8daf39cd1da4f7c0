"""Leader election for the scheduler on a real PostgreSQL server (and the flock on SQLite): one
leader, a standby that takes over when the leader's session ends, a leader that stands down when
it loses its lock; the real APScheduler keeps its jobs in PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from ingest.state.db import StateDB
from ingest.state.locks import AdvisoryLocks, FileLocks
from schedules.scheduler import Schedule
from scoring.models.factory import open_models
from scoring.service.leader import LEADER, LEADER_LOCK, STANDBY, Leader, holder_name

from .conftest import make_settings, wait_for

TICK = 0.1  # the tests' retry period: elections happen in tenths of a second, not seconds
PATIENCE = 60.0  # a loaded machine


class Recorded:
    """A schedule that records what the leader asked of it (the election is under test here;
    the real scheduler is started by the tests below and by the replicas' end-to-end test)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def start(self) -> None:
        self.calls.append("start")

    def stop(self, wait: bool = True) -> None:
        self.calls.append("stop" if wait else "stop now")

    def status(self) -> dict[str, Any]:
        return {"alive": self.calls[-1:] == ["start"]}


def terminate(postgres, url: str, holder: str) -> list[tuple[bool]]:
    """End a lock holder's session from the server, as when its machine vanished."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(postgres.conninfo(name), autocommit=True) as admin:
        return admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (f"dropscore:{holder}",),
        ).fetchall()


def test_one_leads_the_other_stands_by_then_takes_over(pg_url: str) -> None:
    first, second = Recorded(), Recorded()
    one = Leader(AdvisoryLocks(StateDB(pg_url)), first, retry_seconds=TICK)
    two = Leader(AdvisoryLocks(StateDB(pg_url)), second, retry_seconds=TICK)
    try:
        one.start()
        two.start()
        assert (one.role, two.role) == (LEADER, STANDBY)
        assert one.status() == {"role": LEADER, "alive": True}
        assert two.status()["role"] == STANDBY and second.calls == []
        assert AdvisoryLocks(StateDB(pg_url)).holder(LEADER_LOCK) == holder_name()
        one.stop()  # a leader that stops lets go: the standby leads within a tick or two
        assert first.calls == ["start", "stop"]
        wait_for(lambda: two.role == LEADER, PATIENCE, what="the standby to take over")
        assert second.calls == ["start"]
    finally:
        one.stop()
        two.stop()


def test_a_leader_that_loses_its_session_stands_down_and_another_leads(
    pg_url: str, postgres
) -> None:
    first, second = Recorded(), Recorded()
    one = Leader(AdvisoryLocks(StateDB(pg_url)), first, retry_seconds=TICK)
    one.start()
    two = Leader(AdvisoryLocks(StateDB(pg_url)), second, retry_seconds=TICK)
    two.start()
    try:
        assert (one.role, two.role) == (LEADER, STANDBY)
        assert (True,) in terminate(postgres, pg_url, holder_name())  # the leader's session
        wait_for(lambda: two.role == LEADER, PATIENCE, what="the standby to take over")
        wait_for(lambda: first.calls[-1:] == ["stop now"], PATIENCE, what="the old to stand down")
        assert first.calls == ["start", "stop now"]  # never a scheduler beside the new leader
        assert one.role == STANDBY
        two.stop()
        wait_for(lambda: one.role == LEADER, PATIENCE, what="the first to lead again")
        assert first.calls == ["start", "stop now", "start"]
    finally:
        one.stop()
        two.stop()


def test_on_sqlite_the_process_holding_the_data_folder_leads(tmp_path: Path) -> None:
    schedule = Recorded()
    leader = Leader(FileLocks(tmp_path), schedule, retry_seconds=TICK)
    leader.start()
    try:
        assert leader.role == LEADER and schedule.calls == ["start"]
        assert FileLocks(tmp_path).try_acquire(LEADER_LOCK) is None
    finally:
        leader.stop()
    assert schedule.calls == ["start", "stop"]


@pytest.fixture
def pg_settings(tmp_path: Path, pg_url: str):
    return make_settings(tmp_path, state={"url": pg_url})


def test_the_real_scheduler_keeps_its_jobs_in_postgresql_for_the_next_leader(pg_settings) -> None:
    models = open_models(pg_settings)
    for model in models.values():
        model.ledger.initialize()
    first = Schedule(pg_settings, models)
    first.start()
    try:
        jobs = {job["id"]: job["next_run_time"] for job in first.jobs()}
    finally:
        first.stop()
    assert set(jobs) == set(first.job_ids())
    with models.shared.db.read() as conn:
        stored = conn.exec_driver_sql("SELECT id FROM apscheduler_jobs").scalars().all()
    assert set(stored) == set(jobs)
    # another replica leads next: it reads the same jobs, keeping the nightly run's time
    second = Schedule(pg_settings, open_models(pg_settings))
    second.start()
    try:
        again = {job["id"]: job["next_run_time"] for job in second.jobs()}
    finally:
        second.stop()
    assert again["retrain"] == jobs["retrain"]


def test_a_nightly_run_missed_while_nobody_led_runs_once_on_the_next_leader(tmp_path: Path, pg_url):
    """The leader dies with the nightly retrain due; the standby takes over and runs it once,
    from the job store both share (the real APScheduler, a real trainer process)."""
    from datetime import UTC, datetime, timedelta

    from apscheduler.schedulers.background import BackgroundScheduler

    from schedules.scheduler import RETRAIN, job_store
    from scoring.service.runtime import open_intake
    from scoring.settings import load_settings

    from .conftest import SAMPLE

    path = tmp_path / "settings.toml"
    path.write_text(
        f'[paths]\ndata_dir = "data"\n[training]\nbootstrap_data = ""\n[state]\nurl = "{pg_url}"\n',
        encoding="utf-8",
    )
    settings = load_settings(path, env={})
    _config, _ledger, intake = open_intake(settings)
    assert intake.take_copy(SAMPLE, "train").state == "normalized"
    first_models, second_models = open_models(settings), open_models(settings)
    first = Leader(AdvisoryLocks(first_models.shared.db), Schedule(settings, first_models), TICK)
    first.start()
    second_schedule = Schedule(settings, second_models)
    second = Leader(AdvisoryLocks(second_models.shared.db), second_schedule, TICK)
    try:
        second.start()
        assert (first.role, second.role) == (LEADER, STANDBY)
        first.stop()  # the leader goes; the nightly run came due while nobody led
        store = job_store(first_models.shared.db)
        store.start(BackgroundScheduler(timezone=UTC), "default")
        try:
            job = store.lookup_job(RETRAIN)
            job.next_run_time = datetime.now(UTC) - timedelta(hours=1)
            store.update_job(job)
        finally:
            store.shutdown()
        wait_for(lambda: second.role == LEADER, PATIENCE, what="the standby to lead")
        runs = second_models.default.runs
        wait_for(lambda: second_schedule.counts()[RETRAIN]["executed"] == 1, 240, what="a retrain")
        [run] = runs.list()
        assert (run.trigger, run.state, run.version) == ("schedule", "succeeded", 1)
        assert second_schedule.counts()[RETRAIN]["missed"] == 0
        fire = next(j for j in second_schedule.jobs() if j["id"] == RETRAIN)["next_run_time"]
        assert datetime.fromisoformat(fire) > datetime.now(UTC)  # back on schedule, once
    finally:
        second.stop()
        first.stop()
