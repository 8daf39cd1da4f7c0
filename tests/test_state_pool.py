"""The state database's connections on a real SQLite file: reused in a process, never across a fork.

Reuse is what keeps a session lookup or a registry read at a checkout instead of a connect with
four pragmas on every dashboard request and health probe; a connection inherited across
``fork`` (gunicorn's workers) must never be used by the child, which SQLite forbids.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table

from ingest.state.db import Migration, StateDB, create_tables

META = MetaData()
COUNTS = Table("counts", META, Column("id", Integer, primary_key=True), Column("n", Integer))
STEPS = [Migration(1, "counts", create_tables(META, "counts"))]


def test_a_process_reuses_its_connections(tmp_path: Path):
    db = StateDB.at(tmp_path / "state.db")
    db.migrate("counts", STEPS)
    with db.read() as conn:
        conn.info["first"] = True  # kept with the connection for as long as it lives
    for _ in range(5):
        with db.read() as conn:
            assert conn.info.get("first")
        with db.write() as conn:
            conn.execute(COUNTS.insert().values(n=1))
            assert conn.info.get("first")


def test_threads_never_share_a_connection_at_once(tmp_path: Path):
    db = StateDB.at(tmp_path / "state.db")
    db.migrate("counts", STEPS)
    barrier = threading.Barrier(6)
    held: list[int] = []
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with db.read() as conn:
                held.append(id(conn.connection.dbapi_connection))
                barrier.wait(timeout=60)  # all six hold one at the same time
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hold) for _ in range(6)]  # more than POOL_SIZE
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(held)) == 6


# Forked from a fresh interpreter, not from pytest's: pytest's process holds threads that earlier
# tests left running, and a fork while one of them holds a lock (logging's, malloc's) leaves the
# child waiting on it for ever -- a hang seen once in CI-like runs.
FORK_SCRIPT = """
import json, os, sys
from pathlib import Path
from sqlalchemy import select
sys.path[:0] = [sys.argv[2]]
from tests.test_state_pool import COUNTS, STEPS
from ingest.state.db import StateDB

db = StateDB.at(Path(sys.argv[1]) / "state.db")
db.migrate("counts", STEPS)
with db.write() as conn:  # the parent now holds an idle pooled connection
    conn.execute(COUNTS.insert().values(n=1))
pid = os.fork()
if pid == 0:  # the child
    code = 1
    try:
        with db.write() as conn:
            conn.execute(COUNTS.insert().values(n=2))
            owner = conn.info["pid"]
        print(json.dumps({"owner": owner, "me": os.getpid()}), flush=True)
        code = 0
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
with db.read() as conn:  # the parent's own connection still works
    print(json.dumps({
        "child_exit": os.waitstatus_to_exitcode(status),
        "child": pid,
        "parent_owner": conn.info["pid"],
        "parent": os.getpid(),
        "rows": conn.execute(select(COUNTS.c.n).order_by(COUNTS.c.id)).scalars().all(),
    }), flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_opens_its_own_connection_and_leaves_the_parents(tmp_path: Path):
    root = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT, str(tmp_path), root],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    child, parent = (json.loads(line) for line in done.stdout.splitlines())
    assert parent["child_exit"] == 0
    assert child["owner"] == child["me"] == parent["child"]
    assert parent["parent_owner"] == parent["parent"]
    assert parent["rows"] == [1, 2]
