"""The state database's one policy on a real SQLite file: pragmas, the write lock, migrations."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, select

from ingest.state.db import Migration, StateDB, add_column, create_tables, run_sql

META = MetaData()
ITEMS = Table(
    "items",
    META,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String, nullable=False, unique=True),
    Column("count", Integer, nullable=False, default=0),
)
STEPS = [Migration(1, "items", create_tables(META, "items"))]


def test_every_connection_gets_the_pragmas(tmp_path: Path) -> None:
    db = StateDB.at(tmp_path / "deep" / "state.db")
    with db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000
    assert db.path == tmp_path / "deep" / "state.db"
    assert db.dialect == "sqlite"


def test_writes_that_read_first_never_interleave(tmp_path: Path) -> None:
    """Eight threads each read a counter, pause, and write it plus one: none is lost."""
    db = StateDB.at(tmp_path / "state.db")
    db.migrate("items", STEPS)
    with db.write() as conn:
        conn.execute(ITEMS.insert().values(key="n", count=0))
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def bump() -> None:
        try:
            barrier.wait()
            for _ in range(5):
                with db.write() as conn:
                    seen = conn.execute(select(ITEMS.c.count)).scalar_one()
                    threading.Event().wait(0.002)  # give another writer every chance to interleave
                    conn.execute(ITEMS.update().values(count=seen + 1))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with db.read() as conn:
        assert conn.execute(select(ITEMS.c.count)).scalar_one() == 40


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    db = StateDB.at(tmp_path / "state.db")
    db.migrate("items", STEPS)
    with pytest.raises(RuntimeError), db.write() as conn:
        conn.execute(ITEMS.insert().values(key="a"))
        raise RuntimeError("stop")
    with db.read() as conn:
        assert conn.execute(select(ITEMS.c.key)).all() == []


def test_migrations_run_once_and_record_their_version(tmp_path: Path) -> None:
    calls: list[int] = []

    def counted(n: int) -> Migration:
        def apply(conn: Connection) -> None:
            calls.append(n)

        return Migration(n, f"step {n}", apply)

    path = tmp_path / "state.db"
    db = StateDB.at(path)
    assert db.version("x") == 0
    db.migrate("x", [counted(1), counted(2)])
    db.migrate("x", [counted(1), counted(2)])  # this process: already done
    StateDB.at(path).migrate("x", [counted(1), counted(2)])  # another process: recorded
    assert calls == [1, 2]
    StateDB.at(path).migrate("x", [counted(1), counted(2), counted(3)])  # a release adds one
    assert calls == [1, 2, 3]
    assert StateDB.at(path).version("x") == 3


def test_misnumbered_migrations_are_refused(tmp_path: Path) -> None:
    def nothing(conn: Connection) -> None:
        return None

    with pytest.raises(ValueError, match="numbered"):
        StateDB.at(tmp_path / "s.db").migrate("x", [Migration(2, "two", nothing)])


def test_a_database_made_before_versions_is_brought_up_to_date(tmp_path: Path) -> None:
    """An older release made the table without a later column and recorded no version."""
    path = tmp_path / "state.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT UNIQUE)")
    raw.execute("INSERT INTO items (key) VALUES ('kept')")
    raw.commit()
    raw.close()
    steps = [
        Migration(1, "items", create_tables(META, "items")),
        Migration(2, "count", add_column("items", "count", "INTEGER NOT NULL DEFAULT 0")),
        Migration(3, "index", run_sql("CREATE INDEX IF NOT EXISTS items_count ON items (count)")),
    ]
    db = StateDB.at(path)
    db.migrate("items", steps)
    with db.read() as conn:
        assert conn.execute(select(ITEMS.c.key, ITEMS.c.count)).all() == [("kept", 0)]
    assert db.version("items") == 3


def test_insert_if_absent_inserts_once(tmp_path: Path) -> None:
    db = StateDB.at(tmp_path / "state.db")
    db.migrate("items", STEPS)
    with db.write() as conn:
        first = conn.execute(db.insert_if_absent(ITEMS, ["key"]).values(key="k"))
        second = conn.execute(db.insert_if_absent(ITEMS, ["key"]).values(key="k"))
        assert (first.rowcount, second.rowcount) == (1, 0)
        added = conn.execute(ITEMS.insert().values(key="j").returning(ITEMS.c.id)).scalar_one()
    assert added == 2
