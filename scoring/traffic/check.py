"""One check of a canary's rule, as the leader's scheduler runs it: figures, decision, action.

The figures are each version's served figures since the canary was set (the sums now minus
those stored when it was set) and, from the late-label join, the realized primary metric over
the days since. ``scoring.traffic.rule.evaluate`` decides; a promotion goes through the
registry's ``promote`` as a person's does (``by`` = ``rule``, the reason = the figures) and
ends the canary; a rollback sets the traffic off. Each decision leaves an audit row and a
structured log line; every check leaves its evaluation for ``GET /challenger``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from scoring.audit import AuditEntry, now
from scoring.audit_protocol import AuditTrail
from scoring.lifecycle.estimators import PRIMARY
from scoring.models.model import Model
from scoring.monitoring.outcomes import RealizedDay
from scoring.traffic.figures import DayFigures
from scoring.traffic.router import resolve
from scoring.traffic.rule import PROMOTE, Evaluation, VersionFigures, evaluate
from scoring.traffic.setting import OFF

log = logging.getLogger("dropscore.traffic")

RULE_ACTOR = "rule"  # who a rule's decision names, in the registry and the audit trail


@dataclass(frozen=True)
class Checked:
    """What one check did: nothing to check, or an evaluation and the decision it took."""

    model: str
    evaluation: Evaluation | None  # None: no canary with a rule is set
    champion: int | None = None
    challenger: int | None = None


def check_canary(model: Model, audit: AuditTrail) -> Checked:
    """Evaluate the model's canary rule once and act on its decision."""
    setting = model.traffic.get()
    state = model.traffic.rule_state()
    if setting.mode != "canary" or setting.rule is None or state is None:
        return Checked(model.name, None)
    if state.canary != model.traffic.set_at():
        return Checked(model.name, None)  # set again since: its own state comes with it
    champion = model.registry.champion_version()
    known = [record.version for record in model.registry.list()]
    challenger = resolve(setting, champion, known)
    if champion is None or challenger is None or challenger == champion:
        return Checked(model.name, None, champion, challenger)
    totals = model.traffic.served_totals()
    since = state.canary[:10]
    realized = model.outcomes.realized()
    task = model.registry.get(champion).task
    metric = PRIMARY.get(task) if task else None
    figures = {
        v: _figures(totals.get(v), state.baseline.get(v), realized, v, since, metric)
        for v in (champion, challenger)
    }
    evaluation = evaluate(
        setting.rule,
        figures[champion],
        figures[challenger],
        metric,
        state.passes,
        state.failures,
        schema_change=_schema_change(model, challenger, champion),
    )
    shown: dict[str, Any] = {
        "at": now(),
        "champion": str(champion),
        "challenger": str(challenger),
        "figures": {str(v): _shown(f) for v, f in figures.items()},
    }
    if not model.traffic.checked(state.canary, evaluation, shown):
        return Checked(model.name, None, champion, challenger)  # a person set traffic meanwhile
    if evaluation.decision is not None:
        _act(model, audit, state.canary, evaluation, champion, challenger)
    return Checked(model.name, evaluation, champion, challenger)


def _act(
    model: Model,
    audit: AuditTrail,
    canary: str,
    evaluation: Evaluation,
    champion: int,
    challenger: int,
) -> None:
    """Promote or roll back, unless a person changed the traffic since the check began."""
    if not model.traffic.set(OFF, by=RULE_ACTOR, unless_changed=canary):
        log.info(
            "canary rule's decision not taken: the traffic was set meanwhile",
            extra={"model": model.name, "decision": evaluation.decision, "challenger": challenger},
        )
        return
    reason = f"canary rule: {evaluation.reason}"
    if evaluation.decision == PROMOTE:
        model.registry.promote(challenger, reason, by=RULE_ACTOR)
        path = f"/models/{model.name}/versions/{challenger}/promote"
    else:
        path = f"/models/{model.name}/traffic"
    audit.record(
        AuditEntry(
            key_name=RULE_ACTOR,
            role=None,
            method="RULE",
            path=path,
            endpoint=f"traffic.rule_{evaluation.decision}",
            status=200,
            version=str(challenger),
            model=model.name,
        )
    )
    message = "canary promoted by rule" if evaluation.decision == PROMOTE else (
        "canary rolled back by rule"
    )
    level = logging.INFO if evaluation.decision == PROMOTE else logging.WARNING
    log.log(
        level,
        message,
        extra={
            "model": model.name,
            "decision": evaluation.decision,
            "champion": champion,
            "challenger": challenger,
            "reason": evaluation.reason,
        },
    )


def _schema_change(model: Model, challenger: int, champion: int) -> str | None:
    """Say how the challenger's inputs differ from the champion's (the gate's own words)."""
    from scoring.lifecycle.contract import schema_change
    from scoring.lifecycle.schema import FeatureSchema

    new, old = (model.registry.card(v).get("schema") for v in (challenger, champion))
    if not new or not old:
        return None
    return schema_change(FeatureSchema.from_dict(new), FeatureSchema.from_dict(old))


def _figures(
    total: DayFigures | None,
    baseline: DayFigures | None,
    realized: list[RealizedDay],
    version: int,
    since: str,
    metric: tuple[str, bool] | None,
) -> VersionFigures:
    """A version's figures since the canary was set: the sums now less those at its start."""
    now = total or DayFigures()
    then = baseline or DayFigures()
    latency = [max(0, a - b) for a, b in zip(now.latency, then.latency, strict=True)]
    window = DayFigures(latency=latency)
    requests = max(0, now.requests - then.requests)
    errors = max(0, now.errors - then.errors)
    value, labelled = _realized(realized, version, since, metric)
    p99 = window.p99_seconds() if requests else None
    return VersionFigures(requests, errors, p99, value, labelled)


def _realized(
    realized: list[RealizedDay], version: int, since: str, metric: tuple[str, bool] | None
) -> tuple[float | None, int]:
    """The version's realized metric over the days since ``since``, weighted by their rows."""
    if metric is None:
        return None, 0
    weighted = rows = 0.0
    for day in realized:
        value = day.metrics.get(metric[0])
        if day.version != version or day.day < since or value is None or day.rows <= 0:
            continue
        weighted += value * day.rows
        rows += day.rows
    return (weighted / rows if rows else None), int(rows)


def _shown(figures: VersionFigures) -> dict[str, Any]:
    p99 = figures.p99_seconds
    return {
        "requests": figures.requests,
        "errors": figures.errors,
        "error_rate": round(figures.error_rate, 6),
        "p99_latency_ms": None if p99 is None else round(p99 * 1000, 3),
        "realized": figures.realized,
        "labelled": figures.labelled,
    }
