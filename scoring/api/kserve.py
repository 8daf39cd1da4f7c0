"""KServe's v1 prediction protocol: ``instances`` in, ``predictions`` out, errors ``{"error"}``."""

from __future__ import annotations

from flask import Blueprint, Response

from scoring.api.context import services
from scoring.api.jsonio import json_response, request_json
from scoring.errors import ValidationFailed
from scoring.inference.core import MODEL_NAMES, model_for, predict_many
from scoring.inference.payloads import instances_to_matrix

bp = Blueprint("kserve", __name__)


@bp.get("/v1/models")
def list_models() -> Response:
    return json_response({"models": list(MODEL_NAMES)})


@bp.get("/v1/models/<name>")
def model_status(name: str) -> Response:
    """Say whether the model is ready, as KServe's model status endpoint does."""
    model_for(services().champion, name)
    return json_response({"name": name, "ready": True})


@bp.post("/v1/models/<name>:predict")
def predict(name: str) -> Response:
    s = services()
    model = model_for(s.champion, name)
    payload = request_json()
    if not isinstance(payload, dict) or "instances" not in payload:
        raise ValidationFailed("the body must be a JSON object with 'instances' (a list of rows)")
    limit = s.settings.server.max_rows_per_request
    out = predict_many(
        model, instances_to_matrix(payload["instances"], model.schema, "instances", limit)
    )
    s.monitoring.rows_scored.labels("kserve").inc(len(out.values))
    return json_response({"predictions": out.values})
