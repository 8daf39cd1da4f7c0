"""The state database's connections on a real SQLite file: reused in a process, never across a fork.

Reuse is what keeps a session lookup or a registry read at a checkout instead of a connect with
four pragmas on every dashboard request and health probe; a connection inherited across
``fork`` (gunicorn's workers) must never be used by the child, which SQLite forbids.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, select

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


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_opens_its_own_connection_and_leaves_the_parents(tmp_path: Path):
    db = StateDB.at(tmp_path / "state.db")
    db.migrate("counts", STEPS)
    with db.write() as conn:  # the parent now holds an idle pooled connection
        conn.execute(COUNTS.insert().values(n=1))
    report = tmp_path / "child.json"
    pid = os.fork()
    if pid == 0:  # the child: exits without returning into pytest
        code = 1
        try:
            with db.write() as conn:
                conn.execute(COUNTS.insert().values(n=2))
                owner = conn.info["pid"]
            report.write_text(json.dumps({"owner": owner, "me": os.getpid()}))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    child = json.loads(report.read_text())
    assert child["owner"] == child["me"] == pid
    with db.read() as conn:  # the parent's own connection still works
        assert conn.info["pid"] == os.getpid()
        assert conn.execute(select(COUNTS.c.n).order_by(COUNTS.c.id)).scalars().all() == [1, 2]
