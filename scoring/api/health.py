"""Liveness and readiness probes; open even when API keys are set."""

from __future__ import annotations

import os

from flask import Blueprint, Response, jsonify

from scoring.api.context import Services, readiness, services
from scoring.api.errors import json_error
from scoring.api.openapi import (
    INTEGER,
    STRING,
    error_ref,
    nullable,
    obj,
    operation,
    response_object,
)

bp = Blueprint("health", __name__)

MODEL_STATE = obj(version=nullable(STRING), error=nullable(STRING))
HEALTH = {
    **obj(
        status=STRING,
        pid=INTEGER,
        model=MODEL_STATE,
        models={"type": "object", "additionalProperties": MODEL_STATE},
    ),
    "additionalProperties": True,  # one object per probe this process runs (watcher, scheduler)
    # and ``state``: {"backend": "sqlite"|"postgresql", "url": the server's, password masked}
}


@bp.get("/health")
@operation(
    "Liveness, with the watcher, scheduler, last ingest and last retrain where known",
    responses={200: response_object(HEALTH)},
)
def health() -> Response:
    """Answer 200 while the process runs, with what it knows about its parts."""
    s = services()
    states = {
        m.name: {
            "version": (loaded := m.champion.peek()) and loaded.version,
            "error": m.champion.last_error,
        }
        for m in s.models.values()
    }
    body: dict = {
        "status": "ok",
        "pid": os.getpid(),
        "model": states[s.model().name],  # the default model, as before there were several
        "models": states,
    }
    body["state"] = _state(s)
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


def _state(s: Services) -> dict[str, str]:
    """Say where the state is kept: the backend, and a server's URL with its password masked
    (a SQLite file's path stays private, as every path does on this open endpoint)."""
    db = s.models.shared.db
    if db.dialect == "sqlite":
        return {"backend": "sqlite"}
    return {"backend": db.dialect, "url": db.masked_url}


def _last_retrain(s: Services) -> dict | None:
    models = s.registry.list()
    if not models:
        return None
    newest = models[-1]
    return {"version": str(newest.version), "status": newest.status, "at": newest.created_at}


@bp.get("/ready")
@operation(
    "Readiness: 200 once every champion is loaded (a model with none yet does not block)",
    responses={
        200: response_object(
            obj(
                status=STRING,
                model_version=nullable(STRING),
                models={"type": "object", "additionalProperties": nullable(STRING)},
            )
        ),
        503: error_ref(503),
    },
)
def ready() -> Response:
    """Answer 200 once the service can score, so a load balancer waits for it; a model added
    and still waiting for its first labelled drop does not take the others out."""
    s = services()
    state = readiness(s)
    if not state.ready:
        names = state.broken or state.waiting
        return json_error(503, "no_model", f"no model is loaded yet for: {', '.join(names)}")
    return jsonify(
        {
            "status": "ready",
            "model_version": state.versions[s.model().name],
            "models": state.versions,
        }
    )
