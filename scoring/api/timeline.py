"""``GET /drift``: the model's drift timeline, live windows and scored drops, newest first.

Each entry is one drift record (``scoring.monitoring.records``): a closed live window
(``source`` ``window``, ``scoring.monitoring.windows``) or a scored drop, upload, CLI run or
job, with its version, rows, verdict and drifted features; ``GET /drift/<id>`` shows one whole.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from scoring.api.context import services
from scoring.api.openapi import INTEGER, STRING, array, nullable, obj, operation, response_object
from scoring.monitoring.records_protocol import SOURCES
from scoring.monitoring.report import VERDICTS
from scoring.monitoring.windows import summary

bp = Blueprint("timeline", __name__)

SHOWN = 500  # records in the timeline, newest first
ENTRY = obj(
    id=INTEGER,
    source={"type": "string", "enum": list(SOURCES)},
    file_id=nullable(INTEGER),
    ref=nullable(STRING),
    created_at=STRING,
    model_version=STRING,
    rows=INTEGER,
    verdict={"type": "string", "enum": list(VERDICTS)},
    drifted_features=array(STRING),
)


@bp.get("/drift")
@operation(
    "The model's drift timeline, newest first: closed live windows (every protocol's traffic)"
    " and scored drops, uploads and jobs, each with its verdict and drifted features",
    responses={200: response_object(obj(model=STRING, timeline=array(ENTRY)))},
)
def show_timeline() -> Response:
    """Show the newest drift records of every source."""
    m = services().model()
    return jsonify({"model": m.name, "timeline": [summary(r) for r in m.drift.latest(SHOWN)]})
