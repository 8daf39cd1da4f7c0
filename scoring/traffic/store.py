"""A model's traffic setting and its per-day figures, kept in the model's state database.

Every process serving the model reads the setting from here (``scoring.traffic.router`` keeps
it for at most a second), so a ``PUT`` on one replica reaches every other one within a second.
The figures are one row per version, day and kind (``served``, ``shadow``), added to in batches
by each process's background thread: a row holds sums, so two replicas add to the same row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from sqlalchemy import Column, Float, Integer, MetaData, Table, Text, select

from ingest.state.db import Migration, StateDB, create_tables
from scoring.lifecycle.registry import now
from scoring.traffic.figures import DayFigures
from scoring.traffic.setting import LATEST, OFF, TrafficSetting

STORE = "traffic"
SETTING_ROW = 1  # the state database is the model's own: one setting row

METADATA = MetaData()
TRAFFIC = Table(
    "traffic",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("mode", Text, nullable=False),
    Column("version", Text, nullable=False),  # a number, or "latest"
    Column("fraction", Float, nullable=False),
    Column("key", Text),
    Column("set_at", Text, nullable=False),
    Column("set_by", Text),
)
_SUM_COLUMNS = [
    Column(f.name, Float if f.type in ("float", float) else Integer, nullable=False, default=0)
    for f in fields(DayFigures)
]
TRAFFIC_DAYS = Table(
    "traffic_days",
    METADATA,
    Column("version", Integer, primary_key=True),
    Column("day", Text, primary_key=True),  # UTC, YYYY-MM-DD
    Column("kind", Text, primary_key=True),  # served | shadow
    *_SUM_COLUMNS,
)
MIGRATIONS = [
    Migration(1, "the traffic setting and its per-day figures", create_tables(METADATA)),
]


@dataclass(frozen=True)
class DayKey:
    """Which row a batch of figures adds to."""

    version: int
    day: str
    kind: str


class TrafficStore:
    """One model's traffic setting and per-day figures in its state database."""

    def __init__(self, db: StateDB) -> None:
        self.db = db

    def _ready(self) -> None:
        self.db.migrate(STORE, MIGRATIONS)

    def get(self) -> TrafficSetting:
        """Read the stored setting (``off`` until one is set)."""
        self._ready()
        with self.db.read() as conn:
            query = select(TRAFFIC).where(TRAFFIC.c.id == SETTING_ROW)
            row = conn.execute(query).mappings().first()
        if row is None or row["mode"] == OFF.mode:
            return OFF
        text = row["version"]
        version: int | str = int(text) if text.isdigit() else LATEST
        return TrafficSetting(row["mode"], version, float(row["fraction"]), row["key"])

    def set(self, setting: TrafficSetting, by: str | None = None) -> TrafficSetting:
        """Store a validated setting in place of the last one; every process follows it."""
        self._ready()
        values = {
            "mode": setting.mode,
            "version": str(setting.version),
            "fraction": setting.fraction,
            "key": setting.key,
            "set_at": now(),
            "set_by": by,
        }
        with self.db.write() as conn:
            found = conn.execute(select(TRAFFIC.c.id).where(TRAFFIC.c.id == SETTING_ROW)).first()
            if found is None:
                conn.execute(TRAFFIC.insert().values(id=SETTING_ROW, **values))
            else:
                conn.execute(TRAFFIC.update().where(TRAFFIC.c.id == SETTING_ROW).values(**values))
        return setting

    def add(self, batch: Mapping[DayKey, DayFigures]) -> None:
        """Add a batch of figures to their rows in one write transaction."""
        if not batch:
            return
        self._ready()
        with self.db.write() as conn:
            for key, figures in batch.items():
                where = (
                    (TRAFFIC_DAYS.c.version == key.version)
                    & (TRAFFIC_DAYS.c.day == key.day)
                    & (TRAFFIC_DAYS.c.kind == key.kind)
                )
                row = conn.execute(select(TRAFFIC_DAYS).where(where)).mappings().first()
                if row is None:
                    conn.execute(
                        TRAFFIC_DAYS.insert().values(
                            version=key.version, day=key.day, kind=key.kind, **figures.as_row()
                        )
                    )
                    continue
                total = DayFigures.from_row(row)
                total.merge(figures)
                conn.execute(TRAFFIC_DAYS.update().where(where).values(**total.as_row()))

    def days(self, limit: int = 60) -> list[tuple[DayKey, DayFigures]]:
        """Return the stored figures, newest day first, then by version and kind."""
        self._ready()
        query = (
            select(TRAFFIC_DAYS)
            .order_by(TRAFFIC_DAYS.c.day.desc(), TRAFFIC_DAYS.c.version, TRAFFIC_DAYS.c.kind)
            .limit(limit)
        )
        with self.db.read() as conn:
            rows = conn.execute(query).mappings().all()
        return [(DayKey(r["version"], r["day"], r["kind"]), DayFigures.from_row(r)) for r in rows]
