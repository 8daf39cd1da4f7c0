"""What a retrain decided, and its application: the part of a retrain the serving process runs.

The trainer process fits and decides (``scoring.lifecycle.retrain``, which loads scikit-learn and
skops); the process that started it only reads the outcome and applies it to the registry. This
module keeps that half free of the training libraries, so a retrain never loads them into a
serving process: they cost it seconds of CPU on its first run and their memory for good.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from scoring.lifecycle.promotion import Decision
from scoring.lifecycle.registry import Registry
from scoring.settings import Settings


@dataclass
class Outcome:
    """What a retrain decided, sent from the trainer process back to the parent."""

    version: int
    metrics: dict[str, float | None]
    champion_version: int | None
    champion_metrics: dict[str, float | None] | None
    decision: Decision
    card: dict[str, Any] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON the trainer process hands back to the one that started it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        """Rebuild an outcome from the JSON the trainer process wrote."""
        return cls(**{**data, "decision": Decision(**data["decision"])})


def apply(outcome: Outcome, registry: Registry) -> None:
    """Promote the new version, or mark it challenger (waiting for a person) or rejected."""
    decision = outcome.decision
    if decision.promote:
        registry.promote(outcome.version, decision.reason)
        return
    status = "challenger" if decision.waits else "rejected"
    registry.set_status(outcome.version, status, decision.reason)


def too_few_rows(rows: int, settings: Settings) -> str:
    """Say, in the one wording runs show, that the lake holds fewer rows than min_rows."""
    where = settings.section("training")
    return f"{rows} training rows in the lake; {where} min_rows is {settings.training.min_rows}"
