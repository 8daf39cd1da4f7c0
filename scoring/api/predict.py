"""``POST /predict``: one row in, one prediction out, through the Flask-free core."""

from __future__ import annotations

import json

from flask import Blueprint, Response, request

from scoring.api.context import services
from scoring.api.openapi import (
    ANY_OBJECT,
    NUMBER,
    STRING,
    array,
    json_body,
    json_response,
    obj,
    operation,
)
from scoring.errors import BadRequest, ValidationFailed
from scoring.lifecycle.schema import positional_to_array, record_to_array

bp = Blueprint("predict", __name__)

PREDICT_BODY = {
    "anyOf": [
        obj(features=ANY_OBJECT),
        obj(X_test=array({"description": "a number, a category or null"})),
    ]
}
# A row of the bundled sample (data/sample/diabetes.csv), for the docs' "Try it out".
SAMPLE_FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
SAMPLE_ROW = [0.038, 0.051, 0.062, 0.022, -0.044, -0.035, -0.043, -0.003, 0.02, -0.018]
PREDICTION = obj(
    optional=["probabilities"],
    prediction={"description": "a number (regression) or a class label"},
    model_version=STRING,
    probabilities={"type": "object", "additionalProperties": NUMBER},
)


@bp.post("/predict")
@operation(
    "Predict one row, by feature name or in the order GET /models/current lists",
    body=json_body(
        PREDICT_BODY,
        named={"features": dict(zip(SAMPLE_FEATURES, SAMPLE_ROW, strict=True))},
        positional={"X_test": SAMPLE_ROW},
    ),
    responses={200: json_response(PREDICTION)},
    errors=(400, 422, 503),
)
def predict() -> Response:
    model = services().champion.current()  # read once: the request ends on this version
    payload = parse_json_body()
    if not isinstance(payload, dict):
        raise ValidationFailed("the body must be a JSON object with 'features' or 'X_test'")
    if "features" in payload:
        row = record_to_array(payload["features"], model.schema)
    elif "X_test" in payload:
        row = positional_to_array(payload["X_test"], model.schema)
    else:
        raise ValidationFailed(
            "the body needs 'features' (an object) or 'X_test' (a list in the order"
            " GET /models/current lists)",
            [{"field": "features", "problem": "missing"}],
        )
    return Response(json.dumps(model.predict_row(row)), mimetype="application/json")


def parse_json_body() -> object:
    """Parse the body as JSON whatever the content type says: curl -d sends form encoding."""
    data = request.get_data(cache=False)
    if not data:
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
