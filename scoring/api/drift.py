"""A scored drop's drift over HTTP: ``GET /files/<id>/drift`` and ``GET /drift/<id>``.

Both answer under ``/models/<name>/…`` too (model-scoped), with the viewer role like the other
reads. A drop's record is its newest (a drop scored again gets a new one); ``/drift/<id>`` shows
any record by its id, such as the one ``POST /score-file`` names in ``X-Drift-Record``.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from scoring.api.context import services
from scoring.api.openapi import (
    ANY_OBJECT,
    BOOLEAN,
    INTEGER,
    NUMBER,
    STRING,
    array,
    nullable,
    obj,
    operation,
    response_object,
)
from scoring.errors import NotFound
from scoring.monitoring.records_protocol import SOURCES
from scoring.monitoring.report import VERDICTS

bp = Blueprint("drift", __name__)

COLUMN = obj(
    name=STRING,
    kind={"type": "string", "enum": ["numeric", "categorical"]},
    drifted=nullable(BOOLEAN),  # null: not compared, ``reason`` says why
    why=array(STRING),
    reason=nullable(STRING),
    stats=ANY_OBJECT,  # psi, js, ks_statistic, ks_pvalue, wasserstein, null rates, ranges…
    histogram=nullable(ANY_OBJECT),  # the reference's and the current counts per bin/category
)
RECORD = obj(
    id=INTEGER,
    model_version=STRING,
    source={"type": "string", "enum": list(SOURCES)},
    file_id=nullable(INTEGER),
    ref=nullable(STRING),
    created_at=STRING,
    verdict={"type": "string", "enum": list(VERDICTS)},
    reason=STRING,
    rows=INTEGER,
    drifted_features=array(STRING),
    features=array(COLUMN),  # drifted first
    prediction=nullable(COLUMN),
    thresholds=obj(psi=NUMBER, js=NUMBER, ks_pvalue=NUMBER, share=NUMBER, min_rows=INTEGER),
)


@bp.get("/files/<id:file_id>/drift")
@operation(
    "A scored drop's drift from its version's training data: per feature statistics and"
    " verdicts, drifted first",
    responses={200: response_object(RECORD)},
)
def file_drift(file_id: int) -> Response:
    """Show the newest drift record of a scored drop; 404 says why there is none."""
    model = services().model()
    found = model.drift.for_file(file_id)
    if found is None:
        record = model.ledger.get(file_id)
        if record is None:
            raise NotFound(f"file {file_id} is not in the ledger")
        raise NotFound(
            f"file {file_id} has no drift record ({record.state}): only scored drops have one,"
            " and only those scored with [monitoring] drift_on_scoring on",
            [{"file_id": file_id, "state": record.state}],
        )
    return jsonify(found.to_dict())


@bp.get("/drift/<id:record_id>")
@operation(
    "One drift record by its id (a drop's, an upload's X-Drift-Record, a CLI run's)",
    responses={200: response_object(RECORD)},
)
def show_record(record_id: int) -> Response:
    """Show one drift record of the model."""
    found = services().model().drift.get(record_id)
    if found is None:
        raise NotFound(f"no drift record {record_id} for this model")
    return jsonify(found.to_dict())
