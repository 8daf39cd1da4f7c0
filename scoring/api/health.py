"""Liveness and readiness probes; open even when API keys are set."""

from __future__ import annotations

import os

from flask import Blueprint, Response, jsonify

from scoring.api.context import Services, services
from scoring.api.errors import json_error
from scoring.api.openapi import INTEGER, STRING, error_ref, json_response, nullable, obj, operation

bp = Blueprint("health", __name__)

HEALTH = {
    **obj(status=STRING, pid=INTEGER, model=obj(version=nullable(STRING), error=nullable(STRING))),
    "additionalProperties": True,  # one object per probe this process runs (watcher, scheduler)
}


@bp.get("/health")
@operation(
    "Liveness, with the watcher, scheduler, last ingest and last retrain where known",
    responses={200: json_response(HEALTH)},
)
def health() -> Response:
    """Answer 200 while the process runs, with what it knows about its parts."""
    s = services()
    model = s.champion.peek()
    body: dict = {
        "status": "ok",
        "pid": os.getpid(),
        "model": {"version": model.version if model else None, "error": s.champion.last_error},
    }
    for name, probe in s.probes.items():
        try:
            body[name] = probe()
        except Exception as exc:  # a probe that fails is reported, never a failed /health
            body[name] = {"alive": False, "error": str(exc)}
    last = _last_retrain(s)
    if last:
        body["last_retrain"] = last
    ingest = s.ledger.last_ingest()
    body["last_ingest"] = (
        None
        if ingest is None
        else {
            "file_id": ingest.id,
            "name": ingest.original_name,
            "state": ingest.state,
            "at": ingest.finished_at,
        }
    )
    return jsonify(body)


def _last_retrain(s: Services) -> dict | None:
    models = s.registry.list()
    if not models:
        return None
    newest = models[-1]
    return {"version": str(newest.version), "status": newest.status, "at": newest.created_at}


@bp.get("/ready")
@operation(
    "Readiness: 200 once a model is loaded",
    responses={
        200: json_response(obj(status=STRING, model_version=STRING)),
        503: error_ref(503),
    },
)
def ready() -> Response:
    """Answer 200 only once a model can score, so a load balancer waits for it."""
    model = services().champion.peek()
    if model is None:
        return json_error(503, "no_model", "no model is loaded yet")
    return jsonify({"status": "ready", "model_version": model.version})
