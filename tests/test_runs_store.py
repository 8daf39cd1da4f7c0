"""The runs store on the state database: a ``state.db`` of an earlier release reads unchanged.

The earlier files are made here with raw ``sqlite3`` and the DDL those releases ran, so the
store's SQLAlchemy tables are checked against what is really on users' disks.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from ingest.state.db import StateDB
from scoring.errors import NotFound
from scoring.lifecycle.runs import MIGRATIONS, RunStore

# The previous release's script, run on every open (``runs.py`` before the store moved).
PREVIOUS_DDL = """
CREATE TABLE IF NOT EXISTS runs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    trigger          TEXT NOT NULL,
    state            TEXT NOT NULL,
    force            INTEGER NOT NULL DEFAULT 0,
    queued_at        TEXT NOT NULL,
    started_at       TEXT,
    finished_at      TEXT,
    rows             INTEGER,
    version          INTEGER,
    champion_version INTEGER,
    metrics          TEXT,
    champion_metrics TEXT,
    promoted         INTEGER,
    reason           TEXT,
    skip             TEXT,
    error            TEXT,
    pid              INTEGER,
    requested_by     TEXT
);
CREATE INDEX IF NOT EXISTS runs_state ON runs(state);
"""
# ... and the columns it added to older files when it opened them.
PREVIOUS_ADDED = (
    "ALTER TABLE runs ADD COLUMN trainer_pid INTEGER",
    "ALTER TABLE runs ADD COLUMN peak_rss_mb REAL",
    "ALTER TABLE runs ADD COLUMN sampled_from INTEGER",
)
# A file from before requested_by, trainer_pid, peak_rss_mb and sampled_from.
FIRST_DDL = PREVIOUS_DDL.replace(",\n    requested_by     TEXT\n", "\n")

SUCCEEDED = (
    "INSERT INTO runs (trigger, state, force, queued_at, started_at, finished_at, rows, version,"
    " champion_version, metrics, champion_metrics, promoted, reason, pid)"
    " VALUES ('schedule', 'succeeded', 1, '2026-01-01T02:00:00Z', '2026-01-01T02:00:01Z',"
    " '2026-01-01T02:00:09Z', 442, 3, 2, '{\"r2\": 0.5}', '{\"r2\": null}', 1, 'better', 41)"
)


def old_file(path: Path, ddl: str, *added: str) -> None:
    """Write a state.db as an earlier release left it: its schema, a finished and a dead run."""
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.executescript(ddl)
        for statement in added:
            conn.execute(statement)
        conn.execute(SUCCEEDED)
        conn.execute(
            "INSERT INTO runs (trigger, state, queued_at, pid) VALUES ('api', 'running', 'x', 42)"
        )
        conn.execute("INSERT INTO runs (trigger, state, queued_at) VALUES ('cli', 'queued', 'y')")
        conn.execute("DELETE FROM runs WHERE id = 3")  # AUTOINCREMENT: id 3 is never given again


def columns(path: Path) -> list[tuple[str, str, object, int]]:
    """The runs table as SQLite describes it: name, declared type, default, primary key."""
    with closing(sqlite3.connect(path)) as conn:
        return [(r[1], r[2], r[4], r[5]) for r in conn.execute("PRAGMA table_info(runs)")]


@pytest.mark.parametrize(
    ("ddl", "added"), [(PREVIOUS_DDL, PREVIOUS_ADDED), (FIRST_DDL, ())], ids=["previous", "first"]
)
def test_a_state_db_of_an_earlier_release_reads_unchanged(tmp_path, ddl, added):
    path = tmp_path / "state.db"
    old_file(path, ddl, *added)
    store = RunStore(StateDB.at(path))
    done = store.get(1)
    assert (done.trigger, done.state, done.force, done.rows, done.version) == (
        "schedule", "succeeded", True, 442, 3
    )
    assert (done.metrics, done.champion_metrics, done.promoted) == ({"r2": 0.5}, {"r2": None}, True)
    assert (done.requested_by, done.trainer_pid, done.peak_rss_mb) == (None, None, None)
    [dead] = [r for r in store.list() if r.id == 2]  # no process holds the retrain lock
    assert dead.state == "failed" and dead.error.startswith("interrupted")
    new = store.create("cli", requested_by="ops")
    assert new == 4  # after the highest id ever given, as before
    store.update(new, trainer_pid=7, peak_rss_mb=12.5, sampled_from=9)
    assert (store.get(new).requested_by, store.get(new).peak_rss_mb) == ("ops", 12.5)
    with pytest.raises(NotFound, match="retrain run 3 does not exist"):
        store.get(3)
    assert StateDB.at(path).version("runs") == len(MIGRATIONS)


def test_the_previous_release_finds_its_table_unchanged(tmp_path):
    """What an earlier file has stays as it was, and a new file has what the old one had."""
    previous = tmp_path / "previous.db"
    old_file(previous, PREVIOUS_DDL, *PREVIOUS_ADDED)
    before = columns(previous)
    RunStore(StateDB.at(previous)).list()
    assert columns(previous) == before
    fresh = tmp_path / "fresh.db"
    RunStore(StateDB.at(fresh)).list()
    assert [(name, kind, pk) for name, kind, _d, pk in columns(fresh)] == [
        (name, kind, pk) for name, kind, _d, pk in before
    ]
    with closing(sqlite3.connect(fresh)) as conn:
        made = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'runs'").fetchone()[0]
        indexes = {r[1] for r in conn.execute("PRAGMA index_list(runs)")}
    assert "AUTOINCREMENT" in made and "runs_state" in indexes


def test_a_first_release_file_gains_the_later_columns(tmp_path):
    path = tmp_path / "state.db"
    old_file(path, FIRST_DDL)
    RunStore(StateDB.at(path)).last()
    names = [name for name, *_ in columns(path)]
    assert names[-4:] == ["requested_by", "trainer_pid", "peak_rss_mb", "sampled_from"]
