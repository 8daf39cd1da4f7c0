"""A model's traffic setting and its per-day figures, kept in the model's state database.

Every process serving the model reads the setting from here (``scoring.traffic.router`` keeps
it for at most a second), so a ``PUT`` on one replica reaches every other one within a second.
The figures are one row per version, day and kind (``served``, ``shadow``), added to in batches
by each process's background thread: a row holds sums, so two replicas add to the same row.

A canary set with a rule (``scoring.traffic.rule``) also keeps one ``canary_rule`` row: the
canary it belongs to (the setting's time), the champion and challenger its counts belong to,
each version's summed figures when the counts started (so a check counts only the traffic
since), the checks passed and failed, and the last evaluation. A new pair restarts them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import Column, Connection, Float, Integer, MetaData, Table, Text, select

from ingest.state.db import Migration, StateDB, add_column, create_tables
from scoring.lifecycle.registry import now
from scoring.traffic.figures import SERVED, DayFigures
from scoring.traffic.rule import CanaryRule, Evaluation
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
    Column("rule", Text),  # JSON: the canary's rule; NULL: none (a person decides)
)
_KINDS_OF_SUM = {"float": Float, "int": Integer}
_SUM_COLUMNS: list[Column[Any]] = [
    Column(f.name, _KINDS_OF_SUM[str(f.type)], nullable=False, default=0)
    for f in fields(DayFigures)
    if str(f.type) in _KINDS_OF_SUM
] + [Column("latency", Text)]  # JSON: requests per latency bucket; NULL before it was kept
TRAFFIC_DAYS = Table(
    "traffic_days",
    METADATA,
    Column("version", Integer, primary_key=True),
    Column("day", Text, primary_key=True),  # UTC, YYYY-MM-DD
    Column("kind", Text, primary_key=True),  # served | shadow
    *_SUM_COLUMNS,
)
CANARY_RULE = Table(
    "canary_rule",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("canary", Text, nullable=False),  # the setting's set_at: which canary this is
    Column("baseline", Text, nullable=False),  # JSON: {version: summed served figures} at set
    Column("passes", Integer, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("last", Text),  # JSON: the last evaluation, with when and the versions
    Column("champion", Integer),  # the pair the counts were earned by; NULL: not yet known
    Column("challenger", Integer),
    Column("started", Text),  # when the counts and the baseline were taken (set or restart)
)
def _pair_columns(conn: Connection) -> None:
    """Add the champion, challenger and start of a rule's counts to an older database."""
    for column, decl in (("champion", "INTEGER"), ("challenger", "INTEGER"), ("started", "TEXT")):
        add_column("canary_rule", column, decl)(conn)


MIGRATIONS = [
    Migration(1, "the traffic setting and its per-day figures", create_tables(METADATA)),
    Migration(2, "latency histograms", add_column("traffic_days", "latency", "TEXT")),
    Migration(3, "a canary's rule", add_column("traffic", "rule", "TEXT")),
    Migration(4, "a canary rule's checks", create_tables(METADATA, "canary_rule")),
    Migration(5, "the versions a canary rule's counts belong to", _pair_columns),
]


@dataclass(frozen=True)
class DayKey:
    """Which row a batch of figures adds to."""

    version: int
    day: str
    kind: str


@dataclass(frozen=True)
class RuleState:
    """The checks of the canary now set with a rule: counts, baseline, the last evaluation."""

    canary: str  # the setting's time: a new canary starts a new state
    baseline: dict[int, DayFigures]
    passes: int
    failures: int
    last: dict[str, Any] | None
    pair: tuple[int, int] | None = None  # (champion, challenger) the counts belong to
    started: str | None = None  # when the counts began: the canary's time, or a restart's

    def to_dict(self) -> dict[str, Any]:
        """Return what a person reads: the counts, the versions they belong to, the last check."""
        champion, challenger = self.pair or (None, None)
        return {"canary_set_at": self.canary, "counted_since": self.started or self.canary,
                "champion": champion, "challenger": challenger, "passes": self.passes,
                "failures": self.failures, "last": self.last}  # fmt: skip


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
        rule = CanaryRule(**json.loads(row["rule"])) if row["rule"] else None
        return TrafficSetting(row["mode"], version, float(row["fraction"]), row["key"], rule)

    def set(
        self,
        setting: TrafficSetting,
        by: str | None = None,
        *,
        unless_changed: str | None = None,
        pair: tuple[int, int] | None = None,
    ) -> bool:
        """Store a validated setting in place of the last one; every process follows it.

        A canary with a rule starts its checks here, from each version's figures now, for
        ``pair`` (champion, challenger: the check restarts them when either changes).
        ``unless_changed`` (a canary's time) stores nothing, and says False, when the setting
        was changed since: the rule never undoes what a person set meanwhile.
        """
        self._ready()
        at = now()
        values = {
            "mode": setting.mode,
            "version": str(setting.version),
            "fraction": setting.fraction,
            "key": setting.key,
            "set_at": at,
            "set_by": by,
            "rule": None if setting.rule is None else json.dumps(setting.rule.to_dict()),
        }
        with self.db.write() as conn:
            query = select(TRAFFIC.c.set_at).where(TRAFFIC.c.id == SETTING_ROW)
            found = conn.execute(query).first()
            if unless_changed is not None and (found is None or found[0] != unless_changed):
                return False
            if found is None:
                conn.execute(TRAFFIC.insert().values(id=SETTING_ROW, **values))
            else:
                conn.execute(TRAFFIC.update().where(TRAFFIC.c.id == SETTING_ROW).values(**values))
            if setting.mode == "canary" and setting.rule is not None:
                baseline = {v: f.as_row() for v, f in _served_totals(conn).items()}
                champion, challenger = pair or (None, None)
                state = {"canary": at, "baseline": json.dumps(baseline), "passes": 0,
                         "failures": 0, "last": None, "champion": champion,
                         "challenger": challenger, "started": at}  # fmt: skip
                conn.execute(CANARY_RULE.delete())
                conn.execute(CANARY_RULE.insert().values(id=SETTING_ROW, **state))
        return True

    def set_at(self) -> str | None:
        """Return when the setting was last set (None: never): a canary's identity."""
        self._ready()
        with self.db.read() as conn:
            found = conn.execute(select(TRAFFIC.c.set_at).where(TRAFFIC.c.id == SETTING_ROW))
            row = found.first()
        return None if row is None else str(row[0])

    def rule_state(self) -> RuleState | None:
        """Return the checks of the last canary set with a rule (None: there never was one)."""
        self._ready()
        with self.db.read() as conn:
            row = conn.execute(select(CANARY_RULE)).mappings().first()
        if row is None:
            return None
        baseline = {int(v): DayFigures.from_row(f) for v, f in json.loads(row["baseline"]).items()}
        last = json.loads(row["last"]) if row["last"] else None
        known = row["champion"] is not None and row["challenger"] is not None
        pair = (int(row["champion"]), int(row["challenger"])) if known else None
        return RuleState(
            row["canary"], baseline, row["passes"], row["failures"], last, pair, row["started"]
        )

    def checked(
        self,
        canary: str,
        evaluation: Evaluation,
        shown: dict[str, Any],
        pair: tuple[int, int] | None = None,
    ) -> bool:
        """Record a check of ``canary``'s rule (by ``pair``); False when another canary was set."""
        self._ready()
        last = json.dumps({**evaluation.to_dict(), **shown})
        values: dict[str, Any] = {"passes": evaluation.passes, "failures": evaluation.failures,
                                  "last": last}  # fmt: skip
        if pair is not None:
            values.update(champion=pair[0], challenger=pair[1])
        with self.db.write() as conn:
            done = conn.execute(
                CANARY_RULE.update().where(CANARY_RULE.c.canary == canary).values(**values)
            )
            return bool(done.rowcount)

    def restart(
        self, canary: str, pair: tuple[int, int], evaluation: Evaluation, shown: dict[str, Any]
    ) -> bool:
        """Start ``canary``'s counts and baseline again for a new pair, recording why.

        One transaction: the figures from now on, no check passed or failed, the pair they
        belong to. False when another canary was set since.
        """
        self._ready()
        last = json.dumps({**evaluation.to_dict(), **shown})
        with self.db.write() as conn:
            baseline = {v: f.as_row() for v, f in _served_totals(conn).items()}
            done = conn.execute(
                CANARY_RULE.update()
                .where(CANARY_RULE.c.canary == canary)
                .values(
                    baseline=json.dumps(baseline),
                    passes=0,
                    failures=0,
                    last=last,
                    champion=pair[0],
                    challenger=pair[1],
                    started=now(),
                )
            )
            return bool(done.rowcount)

    def served_totals(self) -> dict[int, DayFigures]:
        """Sum each version's served figures over every stored day."""
        self._ready()
        with self.db.read() as conn:
            return _served_totals(conn)

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


def _served_totals(conn: Connection) -> dict[int, DayFigures]:
    """Sum each version's served figures over its days (a handful of rows per version)."""
    totals: dict[int, DayFigures] = {}
    query = select(TRAFFIC_DAYS).where(TRAFFIC_DAYS.c.kind == SERVED)
    for row in conn.execute(query).mappings():
        totals.setdefault(row["version"], DayFigures()).merge(DayFigures.from_row(row))
    return totals
