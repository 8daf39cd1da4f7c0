"""``POST /predict``: one row or many in, predictions out, through the Flask-free core."""

from __future__ import annotations

from flask import Blueprint, Response

from scoring.api.context import services
from scoring.api.jsonio import json_response, request_json
from scoring.inference.core import predict_many, predict_one
from scoring.inference.payloads import predict_rows

bp = Blueprint("predict", __name__)


@bp.post("/predict")
def predict() -> Response:
    """Answer one row as one prediction, or many rows (instances, 2-D X_test) in one call."""
    s = services()
    model = s.champion.current()  # read once: the request ends on this version
    X, single = predict_rows(request_json(), model.schema, s.settings.server.max_rows_per_request)
    s.monitoring.rows_scored.labels("predict").inc(len(X))
    if single:
        return json_response(predict_one(model, X))
    out = predict_many(model, X)
    body = {"predictions": out.values, "model_version": out.version}
    if out.probabilities is not None:
        body["probabilities"] = out.probability_maps()
    return json_response(body)
