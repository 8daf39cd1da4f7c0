"""The registry's index as the ``models`` table of a state database, in SQLAlchemy Core.

The table, its columns and the partial unique index ``one_champion`` (at most one row is the
champion, whatever a bug or a race attempts) are the ones every release made, so an existing
``state.db`` reads unchanged; ``promoted_by`` came in a later release and is its own step.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Index,
    Integer,
    MetaData,
    Row,
    Table,
    Text,
    func,
    select,
)

from ingest.state.db import Migration, StateDB, add_column, create_tables
from scoring.lifecycle.index_protocol import ModelRecord

STORE = "registry"  # this store's name in schema_versions

META = MetaData()
MODELS = Table(
    "models",
    META,
    # "INTEGER PRIMARY KEY" as every release made it: the rowid itself, never NULL, so SQLite
    # declares it nullable; declared the same here, so a new table is the same table
    Column("version", Integer, primary_key=True, autoincrement=False, nullable=True),
    Column("status", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("promoted_at", Text),
    Column("promoted_by", Text),
    Column("reason", Text),
    Column("estimator", Text),
    Column("task", Text),
    Column("metrics", Text),
)
_CHAMPION = MODELS.c.status == "champion"
Index(
    "one_champion",
    MODELS.c.status,
    unique=True,
    sqlite_where=_CHAMPION,
    postgresql_where=_CHAMPION,
)

STEPS = [
    Migration(1, "the models table and its one-champion index", create_tables(META, "models")),
    Migration(2, "who promoted a version", add_column("models", "promoted_by", "TEXT")),
]


class ModelsTable:
    """The ``models`` table: a ``ModelIndex`` in a state database."""

    def __init__(self, db: StateDB) -> None:
        self.db = db

    def _ready(self) -> StateDB:
        self.db.migrate(STORE, STEPS)  # once per process and database
        return self.db

    @contextmanager
    def reserve(self) -> Iterator[_Reserved]:
        """Hold the write lock and the next version number until the block ends."""
        with self._ready().write() as conn:
            last: int = conn.execute(
                select(func.coalesce(func.max(MODELS.c.version), 0))
            ).scalar_one()
            yield _Reserved(conn, int(last) + 1)

    def promote(self, version: int, *, at: str, reason: str, by: str | None) -> bool:
        """Make ``version`` the champion and archive the old one; False when it is not indexed."""
        with self._ready().write() as conn:
            if conn.execute(select(MODELS.c.version).where(_is(version))).first() is None:
                return False
            conn.execute(MODELS.update().where(_CHAMPION).values(status="archived"))
            conn.execute(
                MODELS.update()
                .where(_is(version))
                .values(status="champion", promoted_at=at, promoted_by=by, reason=reason)
            )
        return True

    def set_status(self, version: int, status: str, reason: str) -> None:
        """Set a version's status and reason, unless it is the champion."""
        with self._ready().write() as conn:
            conn.execute(
                MODELS.update()
                .where(_is(version), MODELS.c.status != "champion")
                .values(status=status, reason=reason)
            )

    def get(self, version: int) -> ModelRecord | None:
        """Return one version's record, or None when it is not indexed."""
        with self._ready().read() as conn:
            row = conn.execute(select(MODELS).where(_is(version))).first()
        return None if row is None else _record(row)

    def champion_version(self) -> int | None:
        """Read the champion pointer: one indexed read."""
        with self._ready().read() as conn:
            found = conn.execute(select(MODELS.c.version).where(_CHAMPION)).scalar_one_or_none()
        return None if found is None else int(found)

    def list(self) -> builtins.list[ModelRecord]:
        """Return every version, oldest first."""
        with self._ready().read() as conn:
            rows = conn.execute(select(MODELS).order_by(MODELS.c.version)).all()
        return [_record(row) for row in rows]


class _Reserved:
    """A version number held under the write lock of an open transaction."""

    def __init__(self, conn: Connection, version: int) -> None:
        self._conn = conn
        self._version = version

    @property
    def version(self) -> int:
        return self._version

    def add(
        self,
        *,
        status: str,
        created_at: str,
        estimator: str | None,
        task: str | None,
        metrics: dict[str, Any],
    ) -> None:
        self._conn.execute(
            MODELS.insert().values(
                version=self._version,
                status=status,
                created_at=created_at,
                estimator=estimator,
                task=task,
                metrics=json.dumps(metrics),
            )
        )


def _is(version: int) -> ColumnElement[bool]:
    return MODELS.c.version == int(version)


def _record(row: Row[Any]) -> ModelRecord:
    found = row._mapping
    return ModelRecord(
        version=int(found["version"]),
        status=found["status"],
        created_at=found["created_at"],
        promoted_at=found["promoted_at"],
        promoted_by=found["promoted_by"],
        reason=found["reason"],
        estimator=found["estimator"],
        task=found["task"],
        metrics=json.loads(found["metrics"] or "{}"),
    )
