"""What drift monitoring asks of its store: one record per compared set of scored rows.

A record is written when a drop, an upload, a CLI run or a job has been scored (and, from the
live windows, when a window closes): the version that scored, where the rows came from, the
verdict and the whole report. ``scoring.monitoring.records.DriftStore`` keeps them in the
model's state database; another backend implements ``DriftRecords``. Kept free of SQLAlchemy so
the per-model object can name the type without loading it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

# Where scored rows came from, as records and the events counter name it.
DROP, SCORE_FILE, CLI, JOB, WINDOW = "drop", "score_file", "cli", "job", "window"
SOURCES = (DROP, SCORE_FILE, CLI, JOB, WINDOW)


@dataclass(frozen=True)
class DriftRecord:
    """One comparison of scored rows with the scoring version's reference."""

    id: int
    model_version: int
    source: str
    file_id: int | None  # the ledger's id, for a scored drop
    ref: str | None  # the source's own id otherwise (a job's, a window's)
    created_at: str
    rows: int
    verdict: str
    report: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape the API shows: the record's facts, then the report's."""
        return {
            "id": self.id,
            "model_version": str(self.model_version),
            "source": self.source,
            "file_id": self.file_id,
            "ref": self.ref,
            "created_at": self.created_at,
            **self.report,
        }


class DriftRecords(Protocol):
    """A model's drift records, newest last."""

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

    def get(self, record_id: int) -> DriftRecord | None:
        """Return one record by id, or None."""

    def for_file(self, file_id: int) -> DriftRecord | None:
        """Return the newest record of a scored drop, or None when it has none."""

    def latest(self, limit: int = 100, source: str | None = None) -> list[DriftRecord]:
        """Return the newest records (of one source, when given), newest first."""

    def drifted_by_source(self) -> dict[str, int]:
        """Count the drifted records by source (the Prometheus events counter reads it)."""
