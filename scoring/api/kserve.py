"""KServe's v1 prediction protocol: ``instances`` in, ``predictions`` out, errors ``{"error"}``."""

from __future__ import annotations

from flask import Blueprint, Response

from scoring.api.context import services
from scoring.api.jsonio import json_response, request_json
from scoring.inference.core import MODEL_NAMES, model_for, predict_many
from scoring.inference.payloads import kserve_rows

bp = Blueprint("kserve", __name__)


@bp.get("/v1/models")
def list_models() -> Response:
    """List the model names a KServe v1 client can call."""
    return json_response({"models": list(MODEL_NAMES)})


@bp.get("/v1/models/<name>")
def model_status(name: str) -> Response:
    """Say whether the model is ready, as KServe's model status endpoint does."""
    model_for(services().champion, name)
    return json_response({"name": name, "ready": True})


@bp.post("/v1/models/<name>:predict")
def predict(name: str) -> Response:
    """Score ``instances`` (lists by position or objects by name) into ``predictions``."""
    s = services()
    model = model_for(s.champion, name)
    X = kserve_rows(request_json(), model.schema, s.settings.server.max_rows_per_request)
    out = predict_many(model, X)
    s.monitoring.rows_scored.labels("kserve").inc(len(out.values))
    return json_response({"predictions": out.values})
