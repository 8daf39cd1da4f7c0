"""Labels joined to the answers given for the same rows, and the realized metrics per day.

Each joined row is kept once per source (``log`` for the prediction log, ``file:<id>`` for a
scored drop) and row id, so a label file dropped twice, or two label files naming one row,
never count it twice. The realized metrics of a version on a UTC day are measured again from
its joined rows whenever new ones arrive (``scoring.monitoring.labels``) and kept beside them.
The store writes SQLAlchemy Core through ``ingest.state.db``, in the model's state database.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Column, Index, Integer, MetaData, Table, Text, select

from ingest.state.db import WIDE_INTEGER, Migration, StateDB, create_tables, widen_integers
from scoring.lifecycle.registry import now

STORE = "outcomes"

METADATA = MetaData()
JOINED = Table(
    "joined_labels",
    METADATA,
    Column("source", Text, primary_key=True),  # log | file:<id>
    Column("row_id", Text, primary_key=True),
    Column("version", Integer, nullable=False),  # the version that answered
    Column("day", Text, nullable=False),  # UTC day of the answer, YYYY-MM-DD
    Column("label", Text, nullable=False),  # as text: a class name or a number's repr
    Column("prediction", Text, nullable=False),
    Index("joined_labels_day", "version", "day"),
)
REALIZED = Table(
    "realized_metrics",
    METADATA,
    Column("version", Integer, primary_key=True),
    Column("day", Text, primary_key=True),
    Column("rows", WIDE_INTEGER, nullable=False),
    Column("metrics", Text, nullable=False),  # JSON; a metric that cannot be measured is null
    Column("measured_at", Text, nullable=False),
)
MIGRATIONS = [
    Migration(1, "joined labels and realized metrics", create_tables(METADATA)),
    Migration(2, "row counts of 2**31 and more", widen_integers("realized_metrics", "rows")),
]


@dataclass(frozen=True)
class Joined:
    """One labelled row joined to the answer a version gave for it."""

    source: str
    row_id: str
    version: int
    day: str
    label: str
    prediction: str


@dataclass(frozen=True)
class RealizedDay:
    """A version's metrics on the labelled rows it answered on one day."""

    version: int
    day: str
    rows: int
    metrics: dict[str, float | None]

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape ``GET /performance`` shows."""
        return {"day": self.day, "rows": self.rows, "metrics": self.metrics}


class Outcomes(Protocol):
    """One model's joined labels and realized metrics, whatever database keeps them."""

    def add(self, rows: Sequence[Joined]) -> set[tuple[int, str]]:
        """Keep rows not joined before; return the (version, day) pairs that got new rows."""
        ...

    def pairs(self, version: int, day: str) -> tuple[list[str], list[str]]:
        """Return the labels and answers joined for a version on a day."""
        ...

    def measured(self, version: int, day: str, rows: int, metrics: dict[str, Any]) -> None:
        """Store a version's realized metrics for a day in place of the last ones."""
        ...

    def realized(self) -> list[RealizedDay]:
        """Return every version's realized metrics, by version then day."""
        ...


class OutcomeStore:
    """The joined labels and realized metrics of one state database (``StateDB``)."""

    def __init__(self, db: StateDB) -> None:
        self.db = db

    def _ready(self) -> None:
        self.db.migrate(STORE, MIGRATIONS)

    def add(self, rows: Sequence[Joined]) -> set[tuple[int, str]]:
        """Keep rows not joined before; return the (version, day) pairs that got new rows."""
        if not rows:
            return set()
        self._ready()
        insert = self.db.insert_if_absent(JOINED, ["source", "row_id"])
        touched: set[tuple[int, str]] = set()
        with self.db.write() as conn:
            for row in rows:
                done = conn.execute(insert.values(**row.__dict__))
                if done.rowcount:
                    touched.add((row.version, row.day))
        return touched

    def pairs(self, version: int, day: str) -> tuple[list[str], list[str]]:
        """Return the labels and answers joined for a version on a day."""
        self._ready()
        query = select(JOINED.c.label, JOINED.c.prediction).where(
            (JOINED.c.version == version) & (JOINED.c.day == day)
        )
        with self.db.read() as conn:
            found = conn.execute(query).all()
        return [r[0] for r in found], [r[1] for r in found]

    def measured(self, version: int, day: str, rows: int, metrics: dict[str, Any]) -> None:
        """Store a version's realized metrics for a day in place of the last ones."""
        self._ready()
        where = (REALIZED.c.version == version) & (REALIZED.c.day == day)
        values = {"rows": rows, "metrics": json.dumps(metrics), "measured_at": now()}
        with self.db.write() as conn:
            if conn.execute(select(REALIZED.c.version).where(where)).first() is None:
                conn.execute(REALIZED.insert().values(version=version, day=day, **values))
            else:
                conn.execute(REALIZED.update().where(where).values(**values))

    def realized(self) -> list[RealizedDay]:
        """Return every version's realized metrics, by version then day."""
        self._ready()
        query = select(REALIZED).order_by(REALIZED.c.version, REALIZED.c.day)
        with self.db.read() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            RealizedDay(r["version"], r["day"], r["rows"], json.loads(r["metrics"])) for r in rows
        ]


def days_of(found: Iterable[RealizedDay], version: int) -> list[RealizedDay]:
    """Pick one version's days from every version's."""
    return [d for d in found if d.version == version]
