"""A state.db made by the release before the stores moved onto StateDB, read and written by them.

The DDL below is copied from that release (``scoring/lifecycle/registry.py``, ``scoring/keys.py``,
``scoring/sessions.py``, ``scoring/audit.py``), as raw sqlite3 with rows in every table, so the
stores' SQLAlchemy tables are checked against what real deployments hold, not against themselves.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from ingest.state.db import StateDB
from scoring import audit, keys, sessions
from scoring.audit import AuditEntry, AuditLog
from scoring.keys import Identity, KeyStore, hash_key
from scoring.lifecycle import models_table
from scoring.lifecycle.models_table import ModelsTable
from scoring.lifecycle.registry import Registry
from scoring.sessions import Lifetimes, SessionStore, hash_id

PREVIOUS_RELEASE_DDL = """
CREATE TABLE IF NOT EXISTS models (
    version     INTEGER PRIMARY KEY,
    status      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    promoted_at TEXT,
    promoted_by TEXT,
    reason      TEXT,
    estimator   TEXT,
    task        TEXT,
    metrics     TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_champion ON models(status) WHERE status = 'champion';
CREATE TABLE IF NOT EXISTS api_keys (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    hash       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_live_name ON api_keys(name) WHERE revoked_at IS NULL;
CREATE TABLE IF NOT EXISTS sessions (
    id_hash    TEXT PRIMARY KEY,
    key_name   TEXT NOT NULL,
    key_hash   TEXT NOT NULL,
    created_at REAL NOT NULL,
    seen_at    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_key ON sessions(key_hash);
CREATE TABLE IF NOT EXISTS audit (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    ts       TEXT NOT NULL,
    key_name TEXT,
    role     TEXT,
    method   TEXT NOT NULL,
    path     TEXT NOT NULL,
    endpoint TEXT,
    status   INTEGER NOT NULL,
    version  TEXT,
    run_id   INTEGER,
    model    TEXT,
    file_id  INTEGER
);
CREATE INDEX IF NOT EXISTS audit_key ON audit(key_name);
"""
TABLES = ("models", "api_keys", "sessions", "audit")
OLD_KEY = "ds_a-key-made-by-the-previous-release-000000000"
OLD_SESSION = "a-session-opened-by-the-previous-release"
NOW = 1_000_000.0  # the sessions' clock, in seconds


def previous_release(path: Path) -> None:
    """Make a state.db as that release did, with a row or two in each table."""
    with sqlite3.connect(path) as conn:
        conn.executescript(PREVIOUS_RELEASE_DDL)
        conn.executemany(
            "INSERT INTO models (version, status, created_at, promoted_at, promoted_by, reason,"
            " estimator, task, metrics) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    1,
                    "champion",
                    "2026-11-01T00:00:00.000+00:00",
                    "2026-11-01T00:00:01.000+00:00",
                    "alice",
                    "first model",
                    "ridge",
                    "regression",
                    '{"r2": 0.45}',
                ),
                (
                    2,
                    "challenger",
                    "2026-11-02T00:00:00.000+00:00",
                    None,
                    None,
                    None,
                    "ridge",
                    "regression",
                    "{}",
                ),
            ],
        )
        conn.execute(
            "INSERT INTO api_keys (name, role, hash, created_at) VALUES (?, ?, ?, ?)",
            ("ops", "operate", hash_key(OLD_KEY).hex(), "2026-11-01T00:00:00.000+00:00"),
        )
        conn.execute(
            "INSERT INTO sessions (id_hash, key_name, key_hash, created_at, seen_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (hash_id(OLD_SESSION), "ops", hash_key(OLD_KEY).hex(), NOW - 10, NOW - 10),
        )
        conn.execute(
            "INSERT INTO audit (ts, key_name, role, method, path, endpoint, status, version,"
            " model) VALUES ('2026-11-01T00:00:01', 'alice', 'admin', 'POST',"
            " '/models/1/promote', 'models.promote', 200, '1', 'default')"
        )
    conn.close()


def test_the_previous_release_state_db_reads_and_updates_through_the_stores(tmp_path: Path):
    path = tmp_path / "data" / "state.db"
    path.parent.mkdir()
    previous_release(path)
    db = StateDB.at(path)

    registry = Registry(tmp_path / "data" / "models", db)
    assert [(m.version, m.status) for m in registry.list()] == [(1, "champion"), (2, "challenger")]
    first = registry.get(1)
    assert (first.promoted_by, first.reason, first.metrics) == (
        "alice",
        "first model",
        {"r2": 0.45},
    )
    assert registry.champion_version() == 1
    assert registry.promote(2, "better", by="bob").promoted_by == "bob"
    assert [(m.version, m.status) for m in registry.list()] == [(1, "archived"), (2, "champion")]
    with ModelsTable(db).reserve() as slot:  # numbering carries on from the stored versions
        slot.add(status="challenger", created_at="x", estimator=None, task=None, metrics={})
    assert slot.version == 3

    store = KeyStore(db)
    assert [(k.name, k.role, k.revoked_at) for k in store.list()] == [("ops", "operate", None)]
    assert store.live_hashes() == [(hash_key(OLD_KEY), Identity("ops", "operate"))]
    trail_of_sessions = SessionStore(db, Lifetimes(3600, 86400), clock=lambda: NOW)
    assert trail_of_sessions.find(OLD_SESSION) == hash_key(OLD_KEY)
    store.add("reader", "predict")
    store.revoke("ops")  # ends the session the previous release stored, in the same transaction
    assert trail_of_sessions.find(OLD_SESSION) is None
    assert trail_of_sessions.count() == 0
    assert [k.name for k in store.list()] == ["reader"]

    trail = AuditLog(db)
    [old] = trail.list()
    assert (old.key_name, old.version, old.model, old.file_id) == ("alice", "1", "default", None)
    added = trail.record(AuditEntry("bob", "admin", "POST", "/models/2/promote", "x", 200, "2"))
    assert added == old.id + 1
    assert [e.key_name for e in trail.list()] == ["bob", "alice"]

    with sqlite3.connect(path) as conn:  # a database the previous release can still read
        rows = conn.execute("SELECT version, status, promoted_by FROM models ORDER BY version")
        assert rows.fetchall() == [
            (1, "archived", "alice"),
            (2, "champion", "bob"),
            (3, "challenger", None),
        ]
        assert conn.execute("SELECT COUNT(*) FROM api_keys").fetchone() == (2,)
    conn.close()
    for store_name, steps in _steps().items():
        assert db.version(store_name) == len(steps)


def _steps() -> dict[str, list]:
    return {
        models_table.STORE: models_table.STEPS,
        keys.STORE: keys.STEPS,
        sessions.STORE: sessions.STEPS,
        audit.STORE: audit.STEPS,
    }


def test_a_new_state_db_has_the_previous_release_tables_column_for_column(tmp_path: Path):
    """Names, types, NOT NULL, keys, AUTOINCREMENT and (partial) indexes all as that release."""
    old = tmp_path / "old.db"
    previous_release(old)
    db = StateDB.at(tmp_path / "new.db")
    for store_name, steps in _steps().items():
        db.migrate(store_name, steps)
    new = db.path
    assert new is not None
    for table in TABLES:
        assert _shape(new, table) == _shape(old, table), table


def _shape(path: Path, table: str) -> dict[str, object]:
    with sqlite3.connect(path) as conn:
        columns = {row[1]: row[2:] for row in conn.execute(f"PRAGMA table_info({table})")}
        indexes = {
            name: _normalized(sql)
            for name, sql in conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
                " AND sql IS NOT NULL",
                (table,),
            )
        }
        [create] = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
    conn.close()
    return {"columns": columns, "indexes": indexes, "autoincrement": "AUTOINCREMENT" in create}


def _normalized(sql: str) -> str:
    sql = sql.replace("IF NOT EXISTS ", "")
    return re.sub(r"\s+", "", sql).lower()


@pytest.mark.parametrize("store_name", ["registry", "keys", "sessions", "audit"])
def test_each_store_records_its_schema_version(tmp_path: Path, store_name: str):
    db = StateDB.at(tmp_path / "state.db")
    steps = _steps()[store_name]
    db.migrate(store_name, steps)
    assert db.version(store_name) == len(steps) >= 1
