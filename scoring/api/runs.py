"""Retrains over HTTP: ``POST /train`` starts one; ``GET /runs``, ``GET /runs/<id>`` follow it."""

from __future__ import annotations

import threading
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from scoring.api.auth import current_key_name
from scoring.api.context import services
from scoring.api.jsonio import request_json
from scoring.api.openapi import (
    ANY_OBJECT,
    BOOLEAN,
    INTEGER,
    STRING,
    array,
    json_body,
    nullable,
    obj,
    operation,
    query_param,
    response_object,
)
from scoring.api.params import page_args
from scoring.errors import Conflict, ValidationFailed
from scoring.lifecycle.runner import begin_retrain, execute
from scoring.lifecycle.runs import STATES, TRIGGERS, RetrainBusy
from scoring.value_kinds import kind_of

bp = Blueprint("runs", __name__)

RUN = obj(
    id=INTEGER,
    trigger={"type": "string", "enum": list(TRIGGERS)},
    state={"type": "string", "enum": list(STATES)},
    force=BOOLEAN,
    queued_at=STRING,
    started_at=nullable(STRING),
    finished_at=nullable(STRING),
    rows=nullable(INTEGER),
    version=nullable(STRING),
    champion_version=nullable(STRING),
    metrics=nullable(ANY_OBJECT),
    champion_metrics=nullable(ANY_OBJECT),
    promoted=nullable(BOOLEAN),
    reason=nullable(STRING),
    skip=nullable(STRING),
    error=nullable(STRING),
)
FORCE = "retrain even when the data and settings have not changed since the last run"


@bp.post("/train")
@operation(
    "Start a retrain now; follow it at GET /runs/{run_id}",
    query=[query_param("force", {"type": "string", "enum": ["true", "false", "1", "0"]}, FORCE)],
    body=json_body(obj(optional=["force"], force=BOOLEAN), required=False),
    responses={
        202: {
            **response_object(obj(run_id=INTEGER, state=STRING, url=STRING), "Queued"),
            "headers": {"Location": {"required": True, "schema": STRING}},
        }
    },
    errors=(400, 409, 422),
)
def start_training() -> tuple[Response, int, dict[str, str]]:
    """Queue a retrain and train in a background thread; 409 while another retrain runs."""
    s = services()
    try:
        pending = begin_retrain(
            s.settings, "api", force=_force(), requested_by=current_key_name(), runs=s.runs
        )
    except RetrainBusy as exc:
        raise Conflict(str(exc)) from None
    # Not a daemon: a stopping server lets the retrain finish and record itself.
    threading.Thread(  # a promotion is live in this process before the run reads as done
        target=execute,
        args=(pending, s.registry, None, s.champion.refresh),
        name=f"retrain-{pending.run_id}",
    ).start()
    # The run's URL in the scheme the client used: /models/<name>/train → /models/<name>/runs/N
    # (a bare /runs/N would be the default model's run N).
    by_name = request.url_rule is not None and "model" in request.url_rule.arguments
    named: dict[str, Any] = {"model": s.model().name} if by_name else {}
    url = url_for("runs.show_run", run_id=pending.run_id, **named)
    return (
        jsonify({"run_id": pending.run_id, "state": "queued", "url": url}),
        202,
        {"Location": url},
    )


@bp.get("/runs")
@operation(
    "List retrain runs, newest first",
    query=[
        query_param("state", {"type": "string", "enum": list(STATES)}, "only runs in this state"),
        query_param("limit", {**INTEGER, "minimum": 1, "maximum": 1000}, "page size"),
        query_param("offset", {**INTEGER, "minimum": 0, "maximum": 10**9}, "runs to skip"),
    ],
    responses={200: response_object(obj(runs=array(RUN), limit=INTEGER, offset=INTEGER))},
    errors=(422,),
)
def list_runs() -> Response:
    """List retrain runs, newest first."""
    page = page_args(STATES, "run", 50, "state")
    runs = services().runs.list(limit=page.limit, offset=page.offset, state=page.state)
    return jsonify(
        {"runs": [r.to_dict() for r in runs], "limit": page.limit, "offset": page.offset}
    )


@bp.get("/runs/<id:run_id>")
@operation("One retrain run: its state and result", responses={200: response_object(RUN)})
def show_run(run_id: int) -> Response:
    """Show one run: its state, metrics and the promotion decision."""
    return jsonify(services().runs.get(run_id).to_dict())


def _force() -> bool:
    """Read ``force`` from the query string or a JSON body; anything else is a 422."""
    raw = request.args.get("force")
    if raw is None and request.get_data(cache=True):
        body = request_json()  # the guarded parser: hostile JSON is a 400, never a 500
        if not isinstance(body, dict):
            raise ValidationFailed('the body, when sent, must be a JSON object: {"force": true}')
        raw = body.get("force", False)
    if raw in (None, False, "0", "false", "no", ""):
        return False
    if raw in (True, "1", "true", "yes"):
        return True
    raise ValidationFailed(
        f"force must be true or false, got {kind_of(raw)}",
        [{"field": "force", "problem": "not a flag"}],
    )
