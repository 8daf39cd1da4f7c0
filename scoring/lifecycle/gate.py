"""What the promotion gate records beside its decision: how the new data differs from the old.

A challenger's training data is compared with the champion's reference profile (the drift
statistics of ``scoring.monitoring``: PSI on the champion's quantile bins, Jensen–Shannon, KS on
the samples), so a person reading the gate's record (the version's card, ``decision``) sees at a
glance that, say, ``bmi`` moved before trusting a metric measured on a new hold-out. A champion
without a profile (trained before profiles existed) is said to be not compared, never an error.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from scoring.lifecycle.registry import Registry
    from scoring.settings import MonitoringSettings

log = logging.getLogger("dropscore.train")

SHOWN = 10  # features listed in the record, the most shifted first


def data_change(
    registry: Registry, champion: int | None, frame: pd.DataFrame, monitoring: MonitoringSettings
) -> dict[str, Any] | None:
    """Compare a challenger's training frame with the champion's profile; None without one."""
    from scoring.monitoring.accumulate import DriftAccumulator
    from scoring.monitoring.profile import PROFILE_FILE, Profile
    from scoring.monitoring.report import Thresholds

    if champion is None:
        return None
    try:
        if not registry.artifacts.has(champion, PROFILE_FILE):
            return _not_compared(champion, "the champion has no training profile")
        profile = Profile.from_dict(registry.artifacts.read_json(champion, PROFILE_FILE))
        accumulator = DriftAccumulator(profile)
        present = {name: frame[name].to_numpy() for name in profile.features if name in frame}
        accumulator.update(present)
        report = accumulator.report(Thresholds.of(monitoring))
    except Exception as exc:  # the record is information: it must not fail a retrain
        log.warning("training data not compared", extra={"version": champion, "error": str(exc)})
        return _not_compared(champion, f"could not compare: {exc}")
    return {
        "champion": str(champion),
        "verdict": report.verdict,
        "drifted_features": report.drifted_features,
        "features": [
            {
                "name": one.name,
                "drifted": one.drifted,
                "psi": _rounded(one.stats.get("psi")),
                "js": _rounded(one.stats.get("js")),
                "why": one.why or ([one.reason] if one.reason else []),
            }
            for one in sorted(report.features, key=lambda one: one.sort_key())[:SHOWN]
        ],
    }


def _not_compared(champion: int, reason: str) -> dict[str, Any]:
    return {"champion": str(champion), "verdict": "not_compared", "reason": reason}


def _rounded(value: Any) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return round(float(value), 4)
    return None
