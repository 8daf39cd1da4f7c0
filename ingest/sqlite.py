"""How ``state.db`` is opened and written, once for every store in it.

The ledger, the registry index, the runs table and the scheduler's job store share one SQLite
file across threads and processes. Each connection is opened the same way: WAL (readers never
block the writer), ``synchronous=NORMAL`` (durable at each checkpoint, safe in WAL), a long busy
timeout (writers wait instead of failing) and foreign keys on. Writes that read first take the
write lock up front with ``BEGIN IMMEDIATE``, so two read-then-write steps cannot interleave.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUSY_TIMEOUT_SECONDS = 30.0

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}",
    "PRAGMA foreign_keys=ON",
)


def apply_pragmas(conn: sqlite3.Connection) -> None:
    """Give a connection opened elsewhere (SQLAlchemy's) the same settings as ours."""
    for pragma in PRAGMAS:
        conn.execute(pragma)


def connect(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """Open a connection that waits for writers instead of failing, rows readable by name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path,
        timeout=BUSY_TIMEOUT_SECONDS,
        isolation_level=None,  # autocommit; transactions are explicit, see transaction()
        check_same_thread=check_same_thread,
    )
    conn.row_factory = sqlite3.Row
    apply_pragmas(conn)
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Hold the write lock from the first read, so read-then-write steps cannot interleave."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
