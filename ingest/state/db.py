"""One state database: its engine, its one connection policy, and its versioned migrations.

Every store kept in a state database (the ledger, the registry index, the runs, the keys, the
audit trail, the dashboard's sessions, the scheduler's jobs) reaches it through a ``StateDB``
and writes only SQLAlchemy Core, so that a second backend is a URL, not a rewrite.

- **Connections.** A small pool per process: a transaction checks a connection out and
  returns it, so no two threads ever use one at once, and a connection opened before a fork is
  never handed out after it (checked by process id at checkout). Opening a SQLite connection
  with its pragmas costs a millisecond on a busy machine; a checkout, microseconds — and the
  session lookup and the registry's reads run on every dashboard request and health probe.
  Each connection gets the pragmas of ``ingest.state.sqlite`` (WAL, ``synchronous=NORMAL``, a
  long busy timeout, foreign keys).
- **Transactions.** ``read()`` reads a consistent snapshot; ``write()`` takes the write lock up
  front (``BEGIN IMMEDIATE`` on SQLite), so two read-then-write steps never interleave and a
  writer waits for another instead of failing on upgrade. pysqlite's own transaction handling is
  switched off so that SQLAlchemy's ``begin`` is the only one that begins.
- **Schema.** Each store names its steps (``Migration``), numbered from 1; ``migrate`` applies the
  steps above the store's recorded version in one write transaction and records the new one in
  ``schema_versions``. A database made before versions were recorded already holds what the
  early steps make, so those steps are written to be no-ops there (``create_all`` with
  ``checkfirst``, ``add_column`` only where absent).
- **Portable statements.** ``insert_if_absent`` is the dialect's ``ON CONFLICT DO NOTHING``;
  ``RETURNING`` stands where ``lastrowid`` stood.
- **Claim-next.** ``claiming()`` and ``next_unclaimed`` take a queue's next row once across
  processes: the write lock on SQLite, ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL.
- **PostgreSQL** (``[state] url = "postgresql+psycopg://…"``). One engine per URL, shared by every
  store of the process (``for_schema``): the shared stores live in the database's default schema,
  each model's in a schema of its own (``model_schema``), reached through SQLAlchemy's
  ``schema_translate_map``, so the stores' ``Table`` objects stay schema-less and a model's
  tables are as separate as its ``state.db`` file is on SQLite. ``write()`` takes a
  transaction-level advisory lock of its schema first (``pg_advisory_xact_lock``), the server's
  ``BEGIN IMMEDIATE``: a store's read-then-write steps never interleave across replicas, as they
  never do across processes on one SQLite file. ``read()`` is a ``REPEATABLE READ`` snapshot.
  Every connection has TCP keepalives, so a peer that vanished is noticed in seconds, not hours.
  The URL's password is never printed: ``masked`` is what logs, messages and ``/health`` show.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    inspect,
    make_url,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DisconnectionError
from sqlalchemy.sql import Select
from sqlalchemy.sql.dml import Insert

from ingest.state.sqlite import BUSY_TIMEOUT_SECONDS, apply_pragmas

_WRITE = "dropscore_write"  # the execution option that makes a transaction take the write lock
# Idle SQLite connections a process keeps per state database; more open when more threads need
# one at once (never a wait: SQLite's busy timeout is the one place a writer waits).
POOL_SIZE = 4
# libpq's keepalives on every PostgreSQL connection: a server or peer that vanished without a word
# (a half-open connection) is noticed after about idle + interval * count seconds.
PG_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "connect_timeout": 10,
}
_TAKE_WRITE_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
PG_IDENTIFIER_MAX = 63  # PostgreSQL's longest name; a longer schema name is cut and hashed
POSTGRES_INSTALL_HINT = "PostgreSQL needs psycopg: pip install 'dropscore[postgres]'"

# A size or a count of rows that may pass 2**31: SQLite's INTEGER is 64-bit already (and a table
# declared so stays the table older releases made); PostgreSQL's would be 32-bit, so BIGINT there.
WIDE_INTEGER = Integer().with_variant(BigInteger(), "postgresql")

_VERSIONS_METADATA = MetaData()
SCHEMA_VERSIONS = Table(
    "schema_versions",
    _VERSIONS_METADATA,
    Column("store", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
)


@dataclass(frozen=True)
class Migration:
    """One numbered step of a store's schema; ``apply`` must be safe on a database made before."""

    version: int
    description: str
    apply: Callable[[Connection], None]


class StateDB:
    """One state database: an engine, read and write transactions, and migrations applied once.

    On PostgreSQL a ``StateDB`` is one schema of the server's database (``schema``; None is the
    default schema, where the shared stores live); ``for_schema`` gives another on the same
    engine.
    """

    def __init__(
        self, url: str | URL, *, schema: str | None = None, engine: Engine | None = None
    ) -> None:
        self.url = url
        self.schema = schema
        self._base = engine if engine is not None else _engine(make_url(url))
        self.engine = (
            self._base
            if schema is None
            else self._base.execution_options(schema_translate_map={None: schema})
        )
        self._write_key = advisory_key("write", schema or "")
        self._migrated: set[str] = set()

    def for_schema(self, schema: str | None) -> StateDB:
        """Open another schema of this server database on the same engine (and its pool)."""
        if self.dialect == "sqlite":
            raise ValueError("a SQLite state database has no schemas: open another file")
        return StateDB(self.url, schema=schema, engine=self._base)

    def reopen(self) -> StateDB:
        """Open this database again on an engine of its own, as another process would."""
        return StateDB(self.url, schema=self.schema)

    @property
    def masked_url(self) -> str:
        """Give the URL with its password hidden, the only form logs and messages show."""
        return masked(self.url)

    @classmethod
    def at(cls, path: Path) -> StateDB:
        """Open the SQLite state database at ``path``, creating its folder if needed.

        The path goes into a ``URL`` object as it is: a folder named with ``%`` or ``?`` would be
        decoded or cut by a parsed URL string (``sqlite:///…``) and name another file.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(URL.create("sqlite", database=str(path)))

    @property
    def dialect(self) -> str:
        """Say which backend this is (``sqlite`` or ``postgresql``), for the few dialect inserts."""
        return self.engine.dialect.name

    @property
    def path(self) -> Path | None:
        """Give the file of a SQLite database (None for a server), for messages and locks."""
        database = self.engine.url.database
        return Path(database) if self.dialect == "sqlite" and database else None

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """Yield a connection in a transaction that only reads; it ends when the block does."""
        with self.engine.connect() as conn:
            if self.dialect == "postgresql":  # one snapshot for every statement, as on SQLite
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """Yield a connection holding the write lock from its first statement; commit at the end."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(**{_WRITE: True})
            with conn.begin():
                if self.dialect == "postgresql":  # the schema's writers take turns, as on SQLite
                    conn.execute(_TAKE_WRITE_LOCK, {"key": self._write_key})
                yield conn

    @contextmanager
    def claiming(self) -> Iterator[Connection]:
        """Yield a transaction for claim-next (a queue's next row, taken by one claimer only).

        On SQLite it is ``write()``: the file's one writer claims in turn (``BEGIN IMMEDIATE``).
        On PostgreSQL it takes no schema lock: select the row with ``next_unclaimed``, which
        locks it and skips rows another claimer holds (``FOR UPDATE SKIP LOCKED``), so replicas
        claiming from one queue never wait for each other and never take the same row.
        """
        if self.dialect == "sqlite":
            with self.write() as conn:
                yield conn
            return
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @staticmethod
    def next_unclaimed(query: Select[Any]) -> Select[Any]:
        """Lock the rows ``query`` selects, skipping those another claimer holds (PostgreSQL);
        use inside ``claiming()``, where SQLite's write lock already makes claimers take turns."""
        return query.with_for_update(skip_locked=True)

    def migrate(self, store: str, steps: Sequence[Migration]) -> None:
        """Bring ``store``'s tables to its last step, once per process; record the version."""
        if store in self._migrated:
            return
        numbers = [step.version for step in steps]
        if numbers != list(range(1, len(steps) + 1)):
            raise ValueError(f"{store}: migrations must be numbered 1..n in order, got {numbers}")
        with self.write() as conn:
            self._enter_schema(conn)
            SCHEMA_VERSIONS.create(conn, checkfirst=True)
            current = conn.execute(
                select(SCHEMA_VERSIONS.c.version).where(SCHEMA_VERSIONS.c.store == store)
            ).scalar_one_or_none()
            done = current or 0
            for step in steps[done:]:
                step.apply(conn)
            if len(steps) > done:
                self._record(conn, store, len(steps), exists=current is not None)
        self._migrated.add(store)

    def _enter_schema(self, conn: Connection) -> None:
        """Create this database's schema on a server, and aim a migration's raw SQL at it.

        A migration step's plain SQL (``add_column``, ``run_sql``) names tables without a schema;
        ``SET LOCAL search_path`` resolves them, and the inspector's lookups, in this schema for
        the rest of the transaction.
        """
        if self.dialect != "postgresql" or self.schema is None:
            return
        quoted = conn.dialect.identifier_preparer.quote_schema(self.schema)
        conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        conn.exec_driver_sql(f"SET LOCAL search_path TO {quoted}")

    def version(self, store: str) -> int:
        """Say which step ``store``'s schema is at (0 before its first migration)."""
        with self.read() as conn:
            if not inspect(conn).has_table(SCHEMA_VERSIONS.name, schema=self.schema):
                return 0
            found = conn.execute(
                select(SCHEMA_VERSIONS.c.version).where(SCHEMA_VERSIONS.c.store == store)
            ).scalar_one_or_none()
        return found or 0

    def insert_if_absent(self, table: Table, keys: Sequence[str]) -> Insert:
        """Build an insert that does nothing when a row with the same ``keys`` exists.

        Its ``rowcount`` says whether it inserted (1) or found the row (0) on both backends:
        SQLAlchemy keeps an insert's count only when asked (``preserve_rowcount``); without it
        PostgreSQL's reads -1.
        """
        dialect = postgresql if self.dialect == "postgresql" else sqlite
        insert = dialect.insert(table).on_conflict_do_nothing(index_elements=list(keys))
        return insert.execution_options(preserve_rowcount=True)

    def dispose(self) -> None:
        """Close this process's idle pooled connections (at exit, or to let go of the file)."""
        self.engine.dispose()

    @staticmethod
    def _record(conn: Connection, store: str, version: int, *, exists: bool) -> None:
        if exists:
            conn.execute(
                SCHEMA_VERSIONS.update()
                .where(SCHEMA_VERSIONS.c.store == store)
                .values(version=version)
            )
        else:
            conn.execute(SCHEMA_VERSIONS.insert().values(store=store, version=version))


def create_tables(metadata: MetaData, *names: str) -> Callable[[Connection], None]:
    """Make a migration step that creates ``names`` from ``metadata`` where they do not exist."""

    def apply(conn: Connection) -> None:
        tables = [metadata.tables[name] for name in names] if names else None
        metadata.create_all(conn, tables=tables, checkfirst=True)

    return apply


def add_column(table: str, column: str, decl: str) -> Callable[[Connection], None]:
    """Make a migration step that adds a column a database made by an older release lacks."""

    def apply(conn: Connection) -> None:
        present = {found["name"] for found in inspect(conn).get_columns(table)}
        if column not in present:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {decl}"))

    return apply


def widen_integers(table: str, *columns: str) -> Callable[[Connection], None]:
    """Make a migration step that turns columns declared ``Integer`` into ``WIDE_INTEGER``.

    A table made before its sizes and counts were declared wide holds them in PostgreSQL's 32-bit
    INTEGER, which refuses 2**31 and up: there the step makes them BIGINT. SQLite's INTEGER is
    64-bit already, so there it does nothing.
    """

    def apply(conn: Connection) -> None:
        if conn.dialect.name != "postgresql":
            return
        quote = conn.dialect.identifier_preparer.quote
        for column in columns:
            conn.execute(
                text(f"ALTER TABLE {quote(table)} ALTER COLUMN {quote(column)} TYPE BIGINT")
            )

    return apply


def run_sql(*statements: str) -> Callable[[Connection], None]:
    """Make a migration step from portable SQL (an index, a backfill); each must be idempotent."""

    def apply(conn: Connection) -> None:
        for statement in statements:
            conn.execute(text(statement))

    return apply


def model_schema(model: str) -> str:
    """Name the PostgreSQL schema of one model's tables (its ``state.db`` on SQLite).

    Model names are lower-case letters, digits, ``_`` and ``-`` (``ingest.base.layout``); a name
    too long for PostgreSQL keeps its start and a hash of the whole, so two never meet.
    """
    schema = f"model_{model}"
    if len(schema) <= PG_IDENTIFIER_MAX:
        return schema
    digest = hashlib.sha256(model.encode()).hexdigest()[:12]
    return f"{schema[: PG_IDENTIFIER_MAX - 13]}_{digest}"


def advisory_key(*parts: str) -> int:
    """Turn a lock's name into PostgreSQL's 64-bit advisory lock key, the same in every process."""
    digest = hashlib.sha256("\0".join(("dropscore", *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def masked(url: str | URL) -> str:
    """Show a database URL with its password as ``***`` (a URL that does not parse: a word)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(a URL that does not parse)"


def state_url_problem(url: str) -> str | None:
    """Say in one line why ``url`` cannot hold the state (never echoing it), or None."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "expected a URL such as postgresql+psycopg://user@host:5432/dropscore"
    if parsed.get_backend_name() != "postgresql" or parsed.get_driver_name() != "psycopg":
        return (
            "expected postgresql+psycopg://user@host:5432/dropscore"
            " (leave it empty for SQLite files in data_dir)"
        )
    if not parsed.database:
        return "name the database: postgresql+psycopg://user@host:5432/DATABASE"
    if importlib.util.find_spec("psycopg") is None:
        return POSTGRES_INSTALL_HINT
    return None


def _engine(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            pool_size=POOL_SIZE,
            max_overflow=-1,
            connect_args={"timeout": BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    else:
        engine = create_engine(url, pool_pre_ping=True, connect_args=dict(PG_KEEPALIVES))
    event.listen(engine, "connect", _note_process)
    event.listen(engine, "checkout", _same_process)
    return engine


def _note_process(_dbapi_conn: Any, record: Any) -> None:
    record.info["pid"] = os.getpid()


def _same_process(_dbapi_conn: Any, record: Any, proxy: Any) -> None:
    """Refuse a connection a parent process opened; the pool then opens one of this process."""
    if record.info.get("pid") != os.getpid():
        record.dbapi_connection = proxy.dbapi_connection = None  # not closed by us: the parent's
        raise DisconnectionError("connection opened before a fork")


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # pysqlite begins nothing; our "begin" listener does
    apply_pragmas(dbapi_conn)


def _sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(_WRITE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
