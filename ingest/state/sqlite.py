"""The settings every SQLite connection to a state database gets, in one place.

``ingest.state.db`` opens every connection (the stores' and the scheduler's job store's) and
applies these: WAL (readers never block the writer), ``synchronous=NORMAL`` (durable at each
checkpoint, safe in WAL), a long busy timeout (writers wait instead of failing) and foreign keys
on. Writes that read first take the write lock up front there (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import sqlite3

BUSY_TIMEOUT_SECONDS = 30.0

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}",
    "PRAGMA foreign_keys=ON",
)


def apply_pragmas(conn: sqlite3.Connection) -> None:
    """Give a connection the settings every connection to a state database has."""
    for pragma in PRAGMAS:
        conn.execute(pragma)
