"""What a drift comparison says: per column its statistics and verdict, and the data's verdict.

A ``DriftReport`` is plain data (JSON in and out): the drift record of a scored drop keeps it,
the API and ``dropscore drift`` show it, a live window (``windows.py``) makes one the same way.
A column that cannot be compared (absent from the data, no reference for it) carries a
``reason`` instead of a verdict; a report that cannot be made at all (a version without a
profile) is a ``not_compared`` verdict with its reason, never an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scoring.settings import MonitoringSettings

DRIFTED, STABLE, NOT_COMPARED = "drifted", "stable", "not_compared"
VERDICTS = (DRIFTED, STABLE, NOT_COMPARED)


@dataclass(frozen=True)
class Thresholds:
    """When a column is drifted (any one statistic past its threshold) and when the data is."""

    psi: float = 0.2
    js: float = 0.1
    ks_pvalue: float = 0.01
    share: float = 0.0  # the data drifted when more than this share of its features did
    min_rows: int = 100  # fewer rows: statistics shown, no verdict (too few to say)

    @classmethod
    def of(cls, monitoring: MonitoringSettings) -> Thresholds:
        """Read the thresholds from ``[monitoring]``."""
        return cls(
            psi=monitoring.psi_threshold,
            js=monitoring.js_threshold,
            ks_pvalue=monitoring.ks_pvalue,
            share=monitoring.drift_share,
            min_rows=monitoring.min_rows,
        )


@dataclass(frozen=True)
class ColumnDrift:
    """One feature's (or the predictions') comparison with the reference."""

    name: str
    kind: str
    drifted: bool | None  # None: not compared, ``reason`` says why
    why: list[str] = field(default_factory=list)  # the statistics past their thresholds
    reason: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    histogram: dict[str, Any] | None = None  # reference vs current counts, for plots

    def sort_key(self) -> tuple[int, float, str]:
        """Order drifted columns first, then the most shifted (by PSI), then by name."""
        rank = 0 if self.drifted else (1 if self.drifted is False else 2)
        psi = self.stats.get("psi")
        return rank, -(psi if isinstance(psi, int | float) else 0.0), self.name


@dataclass(frozen=True)
class DriftReport:
    """The drift of one set of scored rows (a drop, a window) against a version's reference."""

    verdict: str
    reason: str
    rows: int
    features: list[ColumnDrift]
    prediction: ColumnDrift | None
    thresholds: Thresholds

    @property
    def drifted_features(self) -> list[str]:
        """Name the features that drifted, the most shifted first."""
        return [one.name for one in self.features if one.drifted]

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape (the API's answer and the stored record)."""
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "rows": self.rows,
            "drifted_features": self.drifted_features,
            "features": [asdict(one) for one in self.features],
            "prediction": None if self.prediction is None else asdict(self.prediction),
            "thresholds": asdict(self.thresholds),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReport:
        """Rebuild a report from its JSON."""
        prediction = data.get("prediction")
        return cls(
            verdict=data["verdict"],
            reason=data["reason"],
            rows=int(data["rows"]),
            features=[ColumnDrift(**one) for one in data["features"]],
            prediction=None if prediction is None else ColumnDrift(**prediction),
            thresholds=Thresholds(**data.get("thresholds", {})),
        )

    @classmethod
    def not_compared(cls, reason: str, rows: int, thresholds: Thresholds) -> DriftReport:
        """Say why there is nothing to compare (no profile, no rows) instead of failing."""
        return cls(NOT_COMPARED, reason, rows, [], None, thresholds)


def judge(
    columns: Sequence[ColumnDrift],
    prediction: ColumnDrift | None,
    rows: int,
    thresholds: Thresholds,
) -> DriftReport:
    """Give the data its verdict from its features' (the predictions' are shown, not counted)."""
    ordered = sorted(columns, key=ColumnDrift.sort_key)
    compared = [one for one in ordered if one.drifted is not None]
    drifted = [one.name for one in compared if one.drifted]
    if rows == 0:
        return DriftReport(
            NOT_COMPARED, "no rows to compare", rows, ordered, prediction, thresholds
        )
    if not compared:
        why = "; ".join(f"{one.name}: {one.reason}" for one in ordered) or "no features"
        reason = f"no feature could be compared ({why})"
        return DriftReport(NOT_COMPARED, reason, rows, ordered, prediction, thresholds)
    share = len(drifted) / len(compared)
    counted = f"{len(drifted)} of {len(compared)} features drifted"
    if rows < thresholds.min_rows:
        reason = f"too few rows to judge ({rows} < [monitoring] min_rows {thresholds.min_rows})"
        return DriftReport(NOT_COMPARED, reason, rows, ordered, prediction, thresholds)
    if drifted and share > thresholds.share:
        reason = f"{counted}: {', '.join(drifted)}"
        return DriftReport(DRIFTED, reason, rows, ordered, prediction, thresholds)
    if drifted:
        reason = (
            f"{counted} ({share:.0%}, not above [monitoring] drift_share {thresholds.share:.0%})"
        )
    else:
        reason = f"no feature drifted ({len(compared)} compared)"
    return DriftReport(STABLE, reason, rows, ordered, prediction, thresholds)
