"""state.db is opened one way: the same PRAGMAs everywhere, writes under BEGIN IMMEDIATE."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from ingest.state.sqlite import BUSY_TIMEOUT_SECONDS, connect, transaction


def pragmas(conn: sqlite3.Connection) -> tuple[object, ...]:
    return tuple(
        conn.execute(f"PRAGMA {name}").fetchone()[0]
        for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
    )


def test_connect_applies_the_settings(tmp_path: Path):
    conn = connect(tmp_path / "deep" / "state.db")  # makes the folder too
    try:
        assert pragmas(conn) == ("wal", 1, int(BUSY_TIMEOUT_SECONDS * 1000), 1)
        conn.execute("CREATE TABLE t (a INTEGER)")
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.execute("SELECT a FROM t").fetchone()["a"] == 1  # rows by name
    finally:
        conn.close()


def test_a_transaction_commits_or_rolls_back(tmp_path: Path):
    conn = connect(tmp_path / "state.db")
    conn.execute("CREATE TABLE t (a INTEGER)")
    with transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(RuntimeError), transaction(conn):
        conn.execute("INSERT INTO t VALUES (2)")
        raise RuntimeError("undo")
    assert [r["a"] for r in conn.execute("SELECT a FROM t")] == [1]
    assert not conn.in_transaction
    conn.close()


def test_a_transaction_holds_the_write_lock_from_its_start(tmp_path: Path):
    """A second writer waits until the first commits, so read-then-write cannot interleave."""
    path = tmp_path / "state.db"
    first = connect(path)
    first.execute("CREATE TABLE t (a INTEGER)")
    order: list[str] = []
    entered = threading.Event()

    def other() -> None:
        conn = connect(path)
        entered.wait()
        with transaction(conn):  # blocks until the first transaction ends
            order.append("second")
        conn.close()

    thread = threading.Thread(target=other)
    thread.start()
    with transaction(first):
        entered.set()
        thread.join(0.3)  # a bounded wait for the other writer; it must still be blocked
        order.append("first")
    thread.join()
    first.close()
    assert order == ["first", "second"]
