"""Sizes, row counts and ids past 2**31 on a real PostgreSQL server (its INTEGER is 32-bit)."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
from sqlalchemy import BigInteger, inspect, select, text

from ingest.pipeline.bucket import CLAIMS, BucketClaims
from ingest.pipeline.bucket import STORE as CLAIMS_STORE
from ingest.pipeline.intake import Intake
from ingest.state.db import SCHEMA_VERSIONS, StateDB
from scoring.api.converters import IdConverter
from scoring.bulk.engines import registry_ref
from scoring.ingest_options import ingest_config
from scoring.jobs.queue_protocol import SUCCEEDED, Outcome
from scoring.jobs.store import STORE as JOBS_STORE
from scoring.jobs.store import JobStore
from scoring.lifecycle.champion import load_version
from scoring.models.factory import open_model
from scoring.monitoring.outcomes import STORE as OUTCOMES_STORE
from scoring.monitoring.outcomes import OutcomeStore
from scoring.monitoring.records import STORE as DRIFT_STORE
from scoring.monitoring.records import DriftStore
from scoring.storage import bucket_watcher
from tests._s3 import storage_settings
from tests.conftest import make_settings, register_trained, wait_for

BIG = 3 * 2**30  # 3 GiB, 3221225472 rows: past PostgreSQL's INTEGER (2**31 - 1)


def _claim(db: StateDB) -> int:
    assert BucketClaims(db).claim("p/inbox/score/huge.csv", "e1", BIG, "me")
    with db.read() as conn:
        return int(conn.execute(select(CLAIMS.c.size)).scalar_one())


def _job(db: StateDB) -> int:
    jobs = JobStore(db)
    job = jobs.submit("s3://in/", "s3://out/")
    done = jobs.succeed(job.id, Outcome(rows_scored=BIG, rows_failed=BIG, model_version="1"))
    assert done.state == SUCCEEDED and done.rows_failed == BIG
    return int(done.rows_scored or 0)


def _drift(db: StateDB) -> int:
    record = DriftStore(db).add(
        model_version=1, source="job", rows=BIG, verdict="stable", report={}, ref="1"
    )
    return int(record.rows)


def _realized(db: StateDB) -> int:
    outcomes = OutcomeStore(db)
    outcomes.measured(1, "2026-12-06", BIG, {"accuracy": 0.5})
    return int(outcomes.realized()[0].rows)


# store name, its table, its widened columns, one write of a big number that reads it back
STORES: dict[str, tuple[str, tuple[str, ...], Callable[[StateDB], int]]] = {
    CLAIMS_STORE: ("bucket_claims", ("size",), _claim),
    JOBS_STORE: ("jobs", ("rows_scored", "rows_failed"), _job),
    DRIFT_STORE: ("drift_records", ("rows",), _drift),
    OUTCOMES_STORE: ("realized_metrics", ("rows",), _realized),
}


@pytest.mark.parametrize("store", list(STORES))
def test_sizes_and_row_counts_past_2_31_are_kept_on_postgresql(pg_url: Any, store: str) -> None:
    _table, _columns, write = STORES[store]
    assert write(StateDB(pg_url, schema="model_m")) == BIG


@pytest.mark.parametrize("store", list(STORES))
def test_a_table_made_with_32_bit_columns_is_widened_by_its_migration(
    pg_url: Any, store: str
) -> None:
    table, columns, write = STORES[store]
    first = StateDB(pg_url, schema="model_m")
    write(first)  # the tables at their last step; now put them back as the first step made them
    with first.write() as conn:
        conn.execute(text(f"DELETE FROM model_m.{table}"))
        for column in columns:
            conn.execute(text(f'ALTER TABLE model_m.{table} ALTER COLUMN "{column}" TYPE INTEGER'))
        conn.execute(
            SCHEMA_VERSIONS.update().where(SCHEMA_VERSIONS.c.store == store).values(version=1)
        )
    again = first.reopen()  # another process, a release later: it migrates on first use
    assert write(again) == BIG
    with again.read() as conn:
        found = {c["name"]: c["type"] for c in inspect(conn).get_columns(table, schema="model_m")}
    assert all(isinstance(found[column], BigInteger) for column in columns)


def test_the_widening_does_nothing_on_sqlite(tmp_path: Path) -> None:
    for _table, _columns, write in STORES.values():
        assert write(StateDB.at(tmp_path / "state.db")) == BIG


def test_a_claim_that_fails_costs_one_object_a_round_never_the_round(
    tmp_path: Path, s3: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    storage = storage_settings(s3, monkeypatch, "claimfail")
    settings = make_settings(
        tmp_path, storage=storage, ingest={"stable_seconds": 0.2, "rescan_seconds": 0.2}
    )
    intake = Intake(ingest_config(settings), open_model(settings).ledger)
    claims_db = StateDB.at(tmp_path / "shared" / "state.db")
    watcher = bucket_watcher(settings, [intake], claims_db)
    assert watcher is not None
    bucket = watcher.bucket
    for i in range(2):
        key = watcher.key(f"inbox/score/drop-{i}.csv")
        bucket.client.put_object(Bucket=bucket.name, Key=key, Body=f"x,y\n{i},{i}\n".encode())
    with claims_db.write() as conn:  # the claims table is gone: every claim raises
        CLAIMS.drop(conn)
    caplog.set_level(logging.WARNING, "dropscore.ingest")
    wait_for(
        lambda: watcher.poll() or caplog.text.count("cannot claim") >= 2,
        60,
        0.1,
        "both claims to be tried",
    )
    with claims_db.write() as conn:  # the database is back: both are taken, nothing was lost
        CLAIMS.create(conn)
    taken: list[Any] = []
    wait_for(lambda: taken.extend(watcher.poll()) or len(taken) == 2, 60, 0.1, "both drops")
    assert sorted(r.original_name for r in taken) == ["drop-0.csv", "drop-1.csv"]


def test_every_id_past_postgresqls_integer_is_a_json_404_not_a_500(
    tmp_path: Path, pg_url: Any
) -> None:
    from scoring.api.app import create_app
    from tests._server import serving

    settings = make_settings(tmp_path, state={"url": pg_url})
    app = create_app(settings)
    routes = [
        rule.rule
        for rule in app.url_map.iter_rules()
        if "GET" in (rule.methods or ())
        and any(isinstance(c, IdConverter) for c in rule._converters.values())
    ]
    assert any(route.startswith("/jobs/") for route in routes)  # the ones the review named
    big = str(2**31)  # PostgreSQL's INTEGER ends at 2**31 - 1; psycopg sends an int as one
    with serving(app) as url:
        for route in routes:
            path = _fill(route, big)
            answer = requests.get(url + path, timeout=60)
            assert answer.status_code == 404, (path, answer.text)
            assert answer.json()["error"]["code"] == "not_found", path


def _fill(rule: str, number: str) -> str:
    """Put ``number`` in each id segment of a rule and a real model name in each name segment."""
    path = re.sub(r"<id:[^>]+>", number, rule)
    return re.sub(r"<[^>]+>", "default", path)


def test_a_job_is_claimed_while_another_store_of_the_schema_holds_its_write_lock(
    pg_url: Any,
) -> None:
    db = StateDB(pg_url, schema="model_m")
    jobs = JobStore(db)
    queued = jobs.submit("s3://in/", "s3://out/")
    claimer = JobStore(db.reopen())  # another replica
    claimer.list()  # its migration check done, as in a running process
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(claimer.claim_next("replica-2")))
    try:
        with db.write():  # a long write anywhere in the schema (a ledger step, a drift record)
            thread.start()
            wait_for(lambda: got, 20, 0.05, "the claim, while the schema's write lock is held")
    finally:
        thread.join(60)  # the lock is let go by now: a claim that waited for it ends
    assert got[0] is not None and got[0].id == queued.id


def test_naming_a_version_for_dask_workers_leaves_no_database_connection_behind(
    tmp_path: Path, pg_url: Any, diabetes: pd.DataFrame
) -> None:
    settings = make_settings(tmp_path, state={"url": pg_url})
    registry = open_model(settings).registry
    version, _ = register_trained(settings, registry, diabetes)
    loaded = load_version(registry, version)
    watcher = StateDB(pg_url)
    others = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )

    def connections() -> int:
        with watcher.read() as conn:
            return int(conn.execute(others).scalar_one())

    before = connections()
    refs = [registry_ref(settings, loaded) for _ in range(5)]  # five files scored on Dask
    assert connections() == before  # each lookup's engine was disposed, not left in a pool
    assert refs[0] is not None and {r.sha256 for r in refs if r} == {refs[0].sha256}
    assert registry_ref(settings, loaded, registry=registry) == refs[0]  # the serving registry
    assert connections() == before


def test_a_start_that_fails_after_the_watcher_started_leaves_no_thread_running(
    tmp_path: Path, pg_url: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scoring.service import runtime

    settings = make_settings(tmp_path, state={"url": pg_url})
    before = set(threading.enumerate())

    def unreachable(*_args: Any, **_kw: Any) -> Any:  # the last part built before serving
        raise RuntimeError("the job queue cannot be opened")

    monkeypatch.setattr(runtime, "JobRunner", unreachable)
    with pytest.raises(RuntimeError, match="job queue"), runtime.background(settings):
        pass
    wait_for(
        lambda: not [t for t in threading.enumerate() if t not in before and t.is_alive()],
        30,
        0.1,
        "the threads the start started to stop",
    )
