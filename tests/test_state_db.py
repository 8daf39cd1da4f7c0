"""The state database's one policy on a real SQLite file and a real PostgreSQL server: pragmas,
the write lock, migrations, a schema per model, the URL never shown with its password."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, select

from ingest.state.db import (
    Migration,
    StateDB,
    add_column,
    create_tables,
    masked,
    model_schema,
    run_sql,
    state_url_problem,
)

OpenState = Callable[..., StateDB]  # the conftest fixture: one backend's databases

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


def test_writes_that_read_first_never_interleave(open_state: OpenState) -> None:
    """Eight threads each read a counter, pause, and write it plus one: none is lost."""
    db = open_state()
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


def test_a_failed_write_leaves_nothing(open_state: OpenState) -> None:
    db = open_state()
    db.migrate("items", STEPS)
    with pytest.raises(RuntimeError), db.write() as conn:
        conn.execute(ITEMS.insert().values(key="a"))
        raise RuntimeError("stop")
    with db.read() as conn:
        assert conn.execute(select(ITEMS.c.key)).all() == []


def test_migrations_run_once_and_record_their_version(open_state: OpenState) -> None:
    calls: list[int] = []

    def counted(n: int) -> Migration:
        def apply(conn: Connection) -> None:
            calls.append(n)

        return Migration(n, f"step {n}", apply)

    db = open_state()
    assert db.version("x") == 0
    db.migrate("x", [counted(1), counted(2)])
    db.migrate("x", [counted(1), counted(2)])  # this process: already done
    open_state().migrate("x", [counted(1), counted(2)])  # another process: recorded
    assert calls == [1, 2]
    open_state().migrate("x", [counted(1), counted(2), counted(3)])  # a release adds one
    assert calls == [1, 2, 3]
    assert open_state().version("x") == 3


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


def test_insert_if_absent_inserts_once(open_state: OpenState) -> None:
    db = open_state()
    db.migrate("items", STEPS)
    with db.write() as conn:
        first = conn.execute(db.insert_if_absent(ITEMS, ["key"]).values(key="k"))
        second = conn.execute(db.insert_if_absent(ITEMS, ["key"]).values(key="k"))
        assert (first.rowcount, second.rowcount) == (1, 0)
        added = conn.execute(ITEMS.insert().values(key="j").returning(ITEMS.c.id)).scalar_one()
    assert added >= 2  # a PostgreSQL sequence spends a number on the refused insert; never reused


def test_each_schema_keeps_its_own_tables_and_versions(open_state: OpenState) -> None:
    """Two models' stores of one name stay apart, as two ``state.db`` files do."""
    one, two = open_state(model_schema("one")), open_state(model_schema("two"))
    steps = [
        *STEPS,
        Migration(2, "count", add_column("items", "count2", "INTEGER NOT NULL DEFAULT 0")),
        Migration(3, "index", run_sql("CREATE INDEX IF NOT EXISTS items_c2 ON items (count2)")),
    ]
    one.migrate("items", steps)
    two.migrate("items", steps[:1])
    with one.write() as conn:
        conn.execute(ITEMS.insert().values(key="only in one"))
    with two.read() as conn:
        assert conn.execute(select(ITEMS.c.key)).all() == []
    with one.read() as conn:
        assert conn.execute(select(ITEMS.c.key)).all() == [("only in one",)]
    assert (one.version("items"), two.version("items")) == (3, 1)
    assert open_state(model_schema("three")).version("items") == 0


def test_a_long_model_name_gets_a_schema_postgresql_can_name() -> None:
    long_one, long_two = "a" * 64, "a" * 63 + "b"
    assert model_schema("churn") == "model_churn"
    assert len(model_schema(long_one)) <= 63
    assert model_schema(long_one) != model_schema(long_two)


def test_a_url_is_shown_without_its_password() -> None:
    url = "postgresql+psycopg://scorer:s3cret-pw@db.example:5432/dropscore"
    assert "s3cret-pw" not in masked(url)
    assert masked(url) == "postgresql+psycopg://scorer:***@db.example:5432/dropscore"
    assert StateDB(url).masked_url == masked(url)  # no connection is made to say so


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("sqlite:///elsewhere.db", "postgresql+psycopg://"),
        ("postgresql+psycopg2://u:pw@h/db", "postgresql+psycopg://"),
        ("postgresql+psycopg://u:pw@h:5432", "name the database"),
        ("not a url", "expected a URL"),
    ],
)
def test_a_state_url_of_another_kind_is_refused_without_echoing_it(url: str, fragment: str) -> None:
    problem = state_url_problem(url)
    assert problem is not None and fragment in problem
    assert "pw" not in problem


def test_claim_next_takes_each_row_once_among_racing_claimers(open_state: OpenState) -> None:
    """Eight claimers, each on its own engine, drain a queue of 40 rows: each row taken once."""
    db = open_state()
    db.migrate("items", STEPS)
    with db.write() as conn:
        conn.execute(ITEMS.insert(), [{"key": f"job{i:02}", "count": 0} for i in range(40)])
    barrier = threading.Barrier(8)
    taken: list[str] = []
    errors: list[BaseException] = []

    def claimer() -> None:
        mine = db.reopen()
        next_one = db.next_unclaimed(
            select(ITEMS.c.id, ITEMS.c.key).where(ITEMS.c.count == 0).order_by(ITEMS.c.id).limit(1)
        )
        try:
            barrier.wait()
            while True:
                with mine.claiming() as conn:
                    row = conn.execute(next_one).first()
                    if row is None:
                        return
                    threading.Event().wait(0.002)  # hold the row while others look for theirs
                    conn.execute(ITEMS.update().where(ITEMS.c.id == row.id).values(count=1))
                taken.append(row.key)
        except BaseException as exc:
            errors.append(exc)
        finally:
            mine.dispose()

    threads = [threading.Thread(target=claimer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(taken) == [f"job{i:02}" for i in range(40)]  # every row, none twice


def test_claim_next_is_for_update_skip_locked_on_postgresql() -> None:
    from sqlalchemy.dialects import postgresql

    query = StateDB.next_unclaimed(select(ITEMS.c.id).limit(1))
    assert "FOR UPDATE SKIP LOCKED" in str(query.compile(dialect=postgresql.dialect()))
