"""The drift records of one model, in its state database (SQLAlchemy Core, versioned schema).

One row per comparison: the facts a list or a counter needs as columns (version, source, file,
time, rows, verdict), the whole report as JSON beside them. Reports are small (features × bins
and the statistics; no rows), so a model scoring a drop a minute keeps years of them cheaply.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Column, Index, Integer, MetaData, RowMapping, Table, Text, func, select

from ingest.state.db import WIDE_INTEGER, Migration, StateDB, create_tables, widen_integers
from ingest.state.records import utc_now
from scoring.monitoring.records_protocol import DriftRecord
from scoring.monitoring.report import DRIFTED

STORE = "drift"  # its name in ``schema_versions``

METADATA = MetaData()
DRIFT_RECORDS = Table(
    "drift_records",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_version", Integer, nullable=False),
    Column("source", Text, nullable=False),  # drop | score_file | cli | job | window
    Column("file_id", Integer),  # a scored drop's ledger id
    Column("ref", Text),  # a job's or a window's own id
    Column("created_at", Text, nullable=False),
    Column("rows", WIDE_INTEGER, nullable=False),  # a job's input may hold 2**31 rows and more
    Column("verdict", Text, nullable=False),  # drifted | stable | not_compared
    Column("report", Text, nullable=False),  # the DriftReport, as JSON
    Index("drift_records_file", "file_id"),
    Index("drift_records_source", "source", "verdict"),
)
MIGRATIONS = [
    Migration(1, "the drift records", create_tables(METADATA)),
    Migration(2, "row counts of 2**31 and more", widen_integers("drift_records", "rows")),
]


class DriftStore:
    """One model's drift records in its state database (``scoring.models.factory`` opens it)."""

    def __init__(self, db: StateDB) -> None:
        self.db = db

    def _ready(self) -> None:
        self.db.migrate(STORE, MIGRATIONS)

    def add(
        self,
        *,
        model_version: int,
        source: str,
        rows: int,
        verdict: str,
        report: dict[str, Any],
        file_id: int | None = None,
        ref: str | None = None,
    ) -> DriftRecord:
        """Keep one record; return it with its id."""
        self._ready()
        values = {
            "model_version": model_version,
            "source": source,
            "file_id": file_id,
            "ref": ref,
            "created_at": utc_now(),
            "rows": rows,
            "verdict": verdict,
            "report": json.dumps(report, allow_nan=False),
        }
        with self.db.write() as conn:
            row = (
                conn.execute(DRIFT_RECORDS.insert().values(**values).returning(*DRIFT_RECORDS.c))
                .mappings()
                .one()
            )
        return _record(row)

    def get(self, record_id: int) -> DriftRecord | None:
        """Return one record by id, or None."""
        return self._one(select(DRIFT_RECORDS).where(DRIFT_RECORDS.c.id == record_id))

    def for_file(self, file_id: int) -> DriftRecord | None:
        """Return the newest record of a scored drop, or None when it has none."""
        query = (
            select(DRIFT_RECORDS)
            .where(DRIFT_RECORDS.c.file_id == file_id)
            .order_by(DRIFT_RECORDS.c.id.desc())
            .limit(1)
        )
        return self._one(query)

    def latest(self, limit: int = 100, source: str | None = None) -> list[DriftRecord]:
        """Return the newest records (of one source, when given), newest first."""
        self._ready()
        query = select(DRIFT_RECORDS).order_by(DRIFT_RECORDS.c.id.desc()).limit(limit)
        if source is not None:
            query = query.where(DRIFT_RECORDS.c.source == source)
        with self.db.read() as conn:
            return [_record(row) for row in conn.execute(query).mappings()]

    def drifted_by_source(self) -> dict[str, int]:
        """Count the drifted records by source (the Prometheus events counter reads it)."""
        self._ready()
        query = (
            select(DRIFT_RECORDS.c.source, func.count())
            .where(DRIFT_RECORDS.c.verdict == DRIFTED)
            .group_by(DRIFT_RECORDS.c.source)
        )
        with self.db.read() as conn:
            return {str(row[0]): int(row[1]) for row in conn.execute(query)}

    def _one(self, query: Any) -> DriftRecord | None:
        self._ready()
        with self.db.read() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else _record(row)


def _record(row: RowMapping) -> DriftRecord:
    return DriftRecord(
        id=int(row["id"]),
        model_version=int(row["model_version"]),
        source=row["source"],
        file_id=row["file_id"],
        ref=row["ref"],
        created_at=row["created_at"],
        rows=int(row["rows"]),
        verdict=row["verdict"],
        report=json.loads(row["report"]),
    )
