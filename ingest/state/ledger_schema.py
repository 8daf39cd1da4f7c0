"""The ``files`` table of the state database, declared once, and the steps that made it.

The declaration matches what earlier releases created with their own ``CREATE TABLE`` script
and ``ALTER TABLE`` additions (same names, columns in the same order, types, constraints and
indexes), so a ``state.db`` made by any of them is read as it is. Ids are ``AUTOINCREMENT`` on
SQLite: a drop's id names its archived and quarantined files, so an id is never handed out twice.

The migrations replay that history as numbered steps: step 1 creates the table (everything, on
a new database), the later steps are the columns, indexes and backfills added since, each a
no-op where it is already done. A release that adds a state appends another ``widen_states``
step: SQLite cannot alter a CHECK, so that step rebuilds the table.
"""

from __future__ import annotations

import re

from sqlalchemy import (
    CheckConstraint,
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    inspect,
    text,
)
from sqlalchemy.schema import CreateTable

from ingest.base.layout import KINDS
from ingest.state.db import WIDE_INTEGER, Migration, add_column, create_tables, run_sql
from ingest.state.records import BY_BYTES, BY_CONTENT, DUPLICATE, STATES

STORE = "ledger"  # its name in ``schema_versions``

METADATA = MetaData()

# The states a row may hold, declared from ``ingest.state.records.STATES`` (the one list of them).
_KINDS_CHECK = "kind IN (" + ", ".join(f"'{kind}'" for kind in KINDS) + ")"
_STATES_CHECK = "state IN (" + ", ".join(f"'{state}'" for state in STATES) + ")"

FILES = Table(
    "files",
    METADATA,
    Column("id", Integer, primary_key=True, nullable=True),  # as the first release declared it
    Column("original_name", Text, nullable=False),
    Column("kind", Text, CheckConstraint(_KINDS_CHECK), nullable=False),
    Column("size_bytes", WIDE_INTEGER),
    Column("sha256", Text),
    Column("state", Text, CheckConstraint(_STATES_CHECK), nullable=False),
    Column("rows", WIDE_INTEGER),
    Column("columns", Integer),
    Column("format", Text),
    Column("encoding", Text),
    Column("delimiter", Text),
    Column("column_map", Text),  # JSON
    Column("error", Text),  # JSON
    Column("lake_path", Text),
    Column("archive_path", Text),
    Column("quarantine_path", Text),
    Column("duplicate_of", Integer, ForeignKey("files.id")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("processing_path", Text, unique=True),
    Column("output_path", Text),
    Column("model_version", Text),
    Column("rows_scored", WIDE_INTEGER),
    Column("rows_failed", WIDE_INTEGER),
    Column("scoring_claimed_at", Text),
    Column("scoring_claims", Integer, nullable=False, server_default=text("0")),
    Column("received_at", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
    Column("finished_at", Text),
    Column("scored_at", Text),
    # added since the first release, in the order they were added (older files gain them)
    Column("content_sha256", Text),
    Column(
        "duplicate_by",
        Text,
        CheckConstraint(f"duplicate_by IN ('{BY_BYTES}', '{BY_CONTENT}')"),
    ),
    Column("retried_as", Integer, ForeignKey("files.id")),
    Column("queued_as", Text),
    Column("drift", Text),  # a scored drop's drift verdict: drifted, stable or not_compared
    Column("claimed_by", Text),  # host:data folder of the process that claimed it (recovery)
    Index("files_kind_sha", "kind", "sha256"),
    Index("files_state", "state", "kind"),
    Index("files_finished", "finished_at"),
    Index("files_kind_content", "kind", "content_sha256"),
    sqlite_autoincrement=True,
)


def create_indexes(conn: Connection) -> None:
    """Create every index of ``files`` that is missing (an older file lacks the later ones)."""
    for index in sorted(FILES.indexes, key=lambda one: str(one.name)):
        index.create(conn, checkfirst=True)


# Every duplicate before content hashes was one by bytes; say so, once, in an older state.db.
_BACKFILL = (
    f"UPDATE files SET duplicate_by = '{BY_BYTES}' "
    f"WHERE state = '{DUPLICATE}' AND duplicate_by IS NULL"
)

# The state CHECK as SQLite keeps it in the table's CREATE statement, and the states it names.
_STATE_CHECK = re.compile(r"CHECK\s*\(\s*state\s+IN\s*\(([^)]*)\)\s*\)", re.IGNORECASE)


def checked_states(table_sql: str) -> set[str]:
    """Return the states a stored ``CREATE TABLE files`` statement's CHECK allows."""
    found = _STATE_CHECK.search(table_sql)
    if found is None:
        return set()
    return {part.strip().strip("'\"") for part in found.group(1).split(",")}


def widen_states(conn: Connection) -> None:
    """Give an older ``files`` table the state CHECK of this release, rows and ids kept.

    SQLite cannot change a CHECK in place, so the table is rebuilt: the old one renamed aside
    (its own references follow it), this release's created, the rows copied by column name
    (the columns both tables have: a column later steps add is added empty), the old one
    dropped, its indexes made again and the AUTOINCREMENT counter carried over. All of it inside
    the migration's write transaction, so a second process waits and then finds it done.
    Foreign keys stay on: every row ever written was checked, so the copy checks clean. A
    server database was created with this release's CHECK by step 1, so there is nothing to do.
    """
    if conn.dialect.name != "sqlite":
        return
    stored: str = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'files'"
    ).scalar_one()
    if set(STATES) <= checked_states(stored):
        return
    counter = conn.exec_driver_sql(
        "SELECT seq FROM sqlite_sequence WHERE name = 'files'"
    ).scalar_one_or_none()
    present = {found["name"] for found in inspect(conn).get_columns("files")}
    names = ", ".join(f'"{column.name}"' for column in FILES.columns if column.name in present)
    conn.exec_driver_sql("ALTER TABLE files RENAME TO files_before_widening")
    conn.execute(CreateTable(FILES))  # no indexes yet: the old ones keep their names until dropped
    conn.exec_driver_sql(f"INSERT INTO files ({names}) SELECT {names} FROM files_before_widening")
    conn.exec_driver_sql("DROP TABLE files_before_widening")
    create_indexes(conn)
    if counter is not None:
        conn.exec_driver_sql("DELETE FROM sqlite_sequence WHERE name = 'files'")
        conn.exec_driver_sql(
            "INSERT INTO sqlite_sequence (name, seq) VALUES ('files', ?)", (int(counter),)
        )


MIGRATIONS = [
    Migration(1, "the files table and its indexes", create_tables(METADATA, "files")),
    Migration(2, "content_sha256", add_column("files", "content_sha256", "TEXT")),
    Migration(
        3,
        "duplicate_by",
        add_column(
            "files",
            "duplicate_by",
            f"TEXT CHECK (duplicate_by IN ('{BY_BYTES}', '{BY_CONTENT}'))",
        ),
    ),
    Migration(4, "retried_as", add_column("files", "retried_as", "INTEGER REFERENCES files (id)")),
    Migration(5, "queued_as", add_column("files", "queued_as", "TEXT")),
    Migration(6, "the indexes added since the first release", create_indexes),
    Migration(7, "duplicates before content hashes were by bytes", run_sql(_BACKFILL)),
    Migration(8, "the retried state", widen_states),
    Migration(9, "a scored drop's drift verdict", add_column("files", "drift", "TEXT")),
    Migration(10, "who claimed a drop", add_column("files", "claimed_by", "TEXT")),
]
