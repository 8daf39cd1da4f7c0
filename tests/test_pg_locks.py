"""The locks kept with a state database, on both backends: real processes contend for one, a
kill -9 of the holder frees it, and a lost connection is a lost advisory lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ingest.state.db import StateDB, model_schema
from ingest.state.locks import AdvisoryLocks, FileLocks, locks_beside

from .conftest import ROOT, wait_for

PATIENCE = 60.0  # a loaded machine

OpenState = Callable[..., StateDB]

# A process that takes a lock of the database named by argv and holds it until killed or until
# its stdin closes: "held" or "busy" at once.
HOLDER = """
import os, sys
from pathlib import Path
from ingest.state.db import StateDB
from ingest.state.locks import locks_beside

where, schema, name = sys.argv[1], sys.argv[2] or None, sys.argv[3]
db = StateDB(where, schema=schema) if "://" in where else StateDB.at(Path(where))
lock = locks_beside(db).try_acquire(name, holder=f"child {os.getpid()}")
if lock is None:
    print("busy", flush=True)
    sys.exit(1)
print("held", flush=True)
sys.stdin.read()
lock.release()
"""


def where(db: StateDB) -> tuple[str, str]:
    """Name a database for a child process: its SQLite file, or its URL and schema."""
    if db.path is not None:
        return str(db.path), ""
    return str(db.url), db.schema or ""


def holder(db: StateDB, name: str) -> subprocess.Popen[str]:
    """Start a real process that takes ``name`` among ``db``'s locks."""
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, *where(db), name],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def said(proc: subprocess.Popen[str]) -> str:
    """Read the next line a holder printed (blocks until it prints or exits)."""
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


def end(proc: subprocess.Popen[str]) -> None:
    """Stop a holder process however far it got."""
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=60)


def test_the_kind_of_lock_follows_the_database(open_state: OpenState) -> None:
    locks = locks_beside(open_state())
    expected = FileLocks if open_state().dialect == "sqlite" else AdvisoryLocks
    assert isinstance(locks, expected)


def test_two_processes_contend_and_a_kill_9_frees_the_lock(open_state: OpenState) -> None:
    db = open_state(model_schema("churn"))
    locks = locks_beside(db)
    first = holder(db, "retrain.lock")
    second = None
    try:
        assert said(first) == "held"
        assert locks.try_acquire("retrain.lock") is None  # this process is refused
        assert locks.holder("retrain.lock") == f"child {first.pid}"
        second = holder(db, "retrain.lock")
        assert said(second) == "busy"
        assert second.wait(timeout=60) == 1
        os.kill(first.pid, signal.SIGKILL)  # dies without releasing anything
        first.wait(timeout=60)
        # the kernel frees an flock as the process dies; a server frees an advisory lock once
        # the session's backend has seen the socket close (milliseconds later): poll, not race
        lock = wait_for(
            lambda: locks.try_acquire("retrain.lock", holder="parent"),
            PATIENCE,
            what="a dead process's lock to be freed",
        )
        with lock:
            assert lock.held()
            assert locks.holder("retrain.lock") == "parent"
            assert locks.try_acquire("retrain.lock") is None  # a second take here is refused too
        assert not lock.held()
        again = locks.try_acquire("retrain.lock")
        assert again is not None
        again.release()
        again.release()  # a second release does nothing
    finally:
        for proc in (first, second):
            if proc is not None:
                end(proc)


def test_a_models_lock_is_its_own(open_state: OpenState) -> None:
    """Two models' retrain locks never exclude each other (their databases are apart)."""
    one = locks_beside(open_state(model_schema("one")))
    two = locks_beside(open_state(model_schema("two")))
    with one.acquire("retrain.lock"):
        lock = two.try_acquire("retrain.lock")
        assert lock is not None
        lock.release()


def test_a_lost_connection_is_a_lost_advisory_lock(pg_url: str, postgres) -> None:
    """The server ends the holder's session (as when its machine vanishes): ``held`` says so,
    and another session takes the lock."""
    import psycopg

    locks = AdvisoryLocks(StateDB(pg_url))
    lock = locks.try_acquire("scheduler", holder="doomed")
    assert lock is not None and lock.held()
    name = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(postgres.conninfo(name), autocommit=True) as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'dropscore:doomed'"
        ).fetchall()
    assert ended == [(True,)]
    assert not lock.held()
    taken = wait_for(lambda: locks.try_acquire("scheduler"), PATIENCE, what="the lock to be free")
    taken.release()
    lock.release()  # releasing a lost lock does nothing and raises nothing


@pytest.mark.parametrize("kind", ["sqlite"])
def test_file_locks_say_they_hold_until_released(tmp_path: Path, kind: str) -> None:
    lock = FileLocks(tmp_path).try_acquire("x.lock")
    assert lock is not None and lock.held()
    lock.release()
    assert not lock.held()
