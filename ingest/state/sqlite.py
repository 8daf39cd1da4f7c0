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
from contextlib import contextmanager, suppress
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


def add_column(conn: sqlite3.Connection, table: str, column: str, decl: str) -> None:
    """Add a column that a ``state.db`` made by an older release lacks; a no-op when present."""
    names = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    if column not in names:
        with suppress(sqlite3.OperationalError):  # another process just added it
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")


class Tables:
    """Connections to the tables one store keeps in ``state.db``, their schema made once.

    A connection per call keeps a store safe across threads and forks; the ``CREATE TABLE IF NOT
    EXISTS`` script and the columns added since (``added``: column → declaration, per table) run
    on the first connection only, not on every call.
    """

    def __init__(
        self,
        path: Path,
        schema: str,
        added: dict[str, dict[str, str]] | None = None,
        *,
        check_same_thread: bool = True,
    ) -> None:
        self.path = path
        self._schema = schema
        self._added = added or {}
        self._check_same_thread = check_same_thread
        self._ready = False

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """Yield a fresh connection with the schema in place; close it afterwards."""
        conn = connect(self.path, check_same_thread=self._check_same_thread)
        try:
            if not self._ready:
                conn.executescript(self._schema)
                for table, columns in self._added.items():
                    for column, decl in columns.items():
                        add_column(conn, table, column, decl)
                self._ready = True
            yield conn
        finally:
            conn.close()
