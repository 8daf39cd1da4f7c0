"""One check of a canary's rule, as the leader's scheduler runs it: figures, decision, action.

The figures are each version's served figures since the counts started (the sums now minus
those stored then) and, from the late-label join, the realized primary metric over the full
days since. The counts belong to one champion and challenger: when either changes (a retrain's
new version on ``latest``, another champion), they start again, as Flagger restarts its
analysis for a new canary revision. ``scoring.traffic.rule.evaluate`` decides; a promotion goes
through the registry's ``promote`` as a person's does (``by`` = ``rule``, the reason = the
figures), then the traffic is set off; a rollback sets the traffic off. A decision is recorded
only once taken (a failed promotion is recorded as failed). Each decision leaves an audit row
and a structured log line; every check leaves its evaluation for ``GET /challenger``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from scoring.audit import AuditEntry, now
from scoring.audit_protocol import AuditTrail
from scoring.errors import DropscoreError
from scoring.lifecycle.estimators import PRIMARY
from scoring.models.model import Model
from scoring.monitoring.outcomes import RealizedDay
from scoring.traffic.figures import DayFigures
from scoring.traffic.rule import PROMOTE, RESTART, Evaluation, VersionFigures, evaluate
from scoring.traffic.setting import OFF, pair_of
from scoring.traffic.store import RuleState

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
    pair = pair_of(setting, model.registry)
    if pair is None:
        return Checked(model.name, None)
    champion, challenger = pair
    if state.pair is not None and state.pair != pair:
        return _restart(model, state, pair)
    totals = model.traffic.served_totals()
    since = counted_from(state.started or state.canary)
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
    if evaluation.decision is not None:
        evaluation = _act(model, audit, state.canary, evaluation, champion, challenger)
    if not model.traffic.checked(state.canary, evaluation, shown, pair):
        return Checked(model.name, None, champion, challenger)  # a person set traffic meanwhile
    return Checked(model.name, evaluation, champion, challenger)


def counted_from(started: str) -> str:
    """Return the first UTC day whose realized metric counts: the next full day after ``started``.

    The late-label join sums a whole day; the day the counts started holds rows answered
    before, so it is left out.
    """
    return (date.fromisoformat(started[:10]) + timedelta(days=1)).isoformat()


def _restart(model: Model, state: RuleState, pair: tuple[int, int]) -> Checked:
    """Start the counts again for a new champion or challenger (as Flagger restarts analysis)."""
    assert state.pair is not None
    changed = [
        f"the {role} is now version {new} (was {old})"
        for role, new, old in zip(("champion", "challenger"), pair, state.pair, strict=True)
        if new != old
    ]
    reason = f"restarted: {'; '.join(changed)}; passes, failures and figures count from now"
    evaluation = Evaluation(RESTART, 0, 0, None, reason)
    shown = {"at": now(), "champion": str(pair[0]), "challenger": str(pair[1]), "figures": {}}
    if not model.traffic.restart(state.canary, pair, evaluation, shown):
        return Checked(model.name, None, *pair)  # a person set traffic meanwhile
    log.warning(
        "canary rule restarted",
        extra={"model": model.name, "champion": pair[0], "challenger": pair[1],
               "reason": reason},
    )  # fmt: skip
    return Checked(model.name, evaluation, *pair)


def _act(
    model: Model,
    audit: AuditTrail,
    canary: str,
    evaluation: Evaluation,
    champion: int,
    challenger: int,
) -> Evaluation:
    """Promote or roll back, unless a person changed the traffic; return what was done.

    The decision is recorded only once taken: a promotion goes through the registry first,
    and only then is the traffic set off; a promotion that fails leaves the canary running
    (its traffic as it was) and says why, and the next check tries again.
    """
    if model.traffic.set_at() != canary:
        return _not_taken(model, evaluation, challenger)
    reason = f"canary rule: {evaluation.reason}"
    if evaluation.decision == PROMOTE:
        try:
            model.registry.promote(challenger, reason, by=RULE_ACTOR)
        except (DropscoreError, SQLAlchemyError, OSError) as exc:
            log.error(
                "canary promotion by rule failed",
                extra={"model": model.name, "challenger": challenger, "error": str(exc)},
            )
            said = f"promotion failed: {exc}; the canary goes on as it was ({evaluation.reason})"
            return replace(evaluation, decision=None, reason=said)
        model.traffic.set(OFF, by=RULE_ACTOR, unless_changed=canary)
        path = f"/models/{model.name}/versions/{challenger}/promote"
    else:
        if not model.traffic.set(OFF, by=RULE_ACTOR, unless_changed=canary):
            return _not_taken(model, evaluation, challenger)
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
    return evaluation


def _not_taken(model: Model, evaluation: Evaluation, challenger: int) -> Evaluation:
    """Leave a decision untaken: a person set the traffic since the check began."""
    log.info(
        "canary rule's decision not taken: the traffic was set meanwhile",
        extra={"model": model.name, "decision": evaluation.decision, "challenger": challenger},
    )
    said = f"{evaluation.reason}; not taken: the traffic was set meanwhile"
    return replace(evaluation, decision=None, reason=said)


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
