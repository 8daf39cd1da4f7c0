"""``GET /performance``: each version's realized metrics per day beside its hold-out metrics.

The realized metrics are measured when labelled drops carrying the model's ``id_columns``
arrive and are joined to the answers given for the same rows (``scoring.monitoring.labels``);
the hold-out metrics are those the version was promoted on (its registry record).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from scoring.api.context import services
from scoring.api.openapi import (
    ANY_OBJECT,
    INTEGER,
    STRING,
    array,
    nullable,
    obj,
    operation,
    response_object,
)
from scoring.lifecycle.estimators import PRIMARY
from scoring.monitoring.outcomes import days_of

bp = Blueprint("performance", __name__)

DAY = obj(day=STRING, rows=INTEGER, metrics=ANY_OBJECT)
VERSION = obj(
    version=STRING,
    task=nullable(STRING),
    primary_metric=nullable(STRING),
    holdout=ANY_OBJECT,
    realized=array(DAY),
)


@bp.get("/performance")
@operation(
    "Each version's realized metrics per UTC day, on labelled rows joined by id to the answers"
    " it gave (prediction log and scored drops), beside the hold-out metrics it was promoted on",
    responses={
        200: response_object(obj(model=STRING, champion=nullable(STRING), versions=array(VERSION)))
    },
)
def show_performance() -> Response:
    """Show every version that has realized metrics, and the champion, newest first."""
    m = services().model()
    realized = m.outcomes.realized()
    champion = m.registry.champion_version()
    shown = {d.version for d in realized} | ({champion} if champion is not None else set())
    versions: list[dict[str, Any]] = []
    for record in reversed(m.registry.list()):
        if record.version not in shown:
            continue
        versions.append(
            {
                "version": str(record.version),
                "task": record.task,
                "primary_metric": PRIMARY[record.task][0] if record.task in PRIMARY else None,
                "holdout": record.metrics,
                "realized": [d.to_dict() for d in days_of(realized, record.version)],
            }
        )
    body = {"model": m.name, "champion": None if champion is None else str(champion)}
    return jsonify({**body, "versions": versions})
