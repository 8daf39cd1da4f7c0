"""``POST /predict``: one row or many in, predictions out, through the Flask-free core.

The champion answers, or any registered version a call names (``/versions/<v>/predict`` or
``?version=``), so a challenger can be compared with the champion on the same rows.
"""

from __future__ import annotations

from flask import Blueprint, Response

from scoring.api import jsonio
from scoring.api.context import services
from scoring.api.jsonio import request_json
from scoring.api.openapi import (
    ANY_OBJECT,
    NUMBER,
    STRING,
    array,
    json_body,
    obj,
    operation,
    response_object,
)
from scoring.api.request_ids import request_id
from scoring.api.traffic import body_key
from scoring.api.versioning import VERSION_QUERY, requested_version
from scoring.inference.explain import SPACES
from scoring.inference.payloads import predict_rows

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
@bp.post("/versions/<id:version>/predict")
@operation(
    "Predict one row, by feature name or in the order GET /models/current lists; the champion"
    " answers, or the version the path or ?version= names",
    query=[VERSION_QUERY],
    body=json_body(
        PREDICT_BODY,
        named={"features": dict(zip(SAMPLE_FEATURES, SAMPLE_ROW, strict=True))},
        positional={"X_test": SAMPLE_ROW},
    ),
    responses={200: response_object(PREDICTION)},
    errors=(400, 404, 422, 503),  # 404: a version the model lacks
)
def predict(version: int | None = None) -> Response:
    """Answer one row as one prediction, or many rows (instances, 2-D X_test) in one call."""
    s = services()
    m = s.model()  # the request's model, looked up once
    named = requested_version(version)
    body = request_json()
    # read once: the request ends on this version (the champion, or a canary, unless named)
    model = s.dataplane.model(m.versions, named, body_key(body))
    X, single = predict_rows(body, model.schema, m.settings.server.max_rows_per_request)
    if single:
        return jsonio.json_response(
            s.dataplane.predict_one(m.name, model, X, "predict", request_id())
        )
    out = s.dataplane.predict(m.name, model, X, "predict", request_id())
    body = {"predictions": out.values, "model_version": out.version}
    if out.probabilities is not None:
        body["probabilities"] = out.probability_maps()
    return jsonio.json_response(body)


CONTRIBUTIONS = {"type": "object", "additionalProperties": NUMBER}
EXPLAINED = obj(
    optional=["note"],
    model_version=STRING,
    space={"type": "string", "enum": list(SPACES)},
    note=STRING,
    explanations=array(
        obj(
            optional=["label", "class"],
            prediction=NUMBER,
            base_value=NUMBER,
            contributions=CONTRIBUTIONS,
            label={"description": "a classifier's predicted class"},
            **{"class": {"description": "multiclass: the class whose value is explained"}},
        )
    ),
)


@bp.post("/explain")
@bp.post("/versions/<id:version>/explain")
@operation(
    "Explain rows (any /predict body): per row the prediction, a base value and one"
    " contribution per feature, base + contributions = prediction (linear models; logistic"
    " regression in log-odds; tree ensembles through the shap extra)",
    query=[VERSION_QUERY],
    body=json_body(
        PREDICT_BODY,
        named={"features": dict(zip(SAMPLE_FEATURES, SAMPLE_ROW, strict=True))},
    ),
    responses={200: response_object(EXPLAINED)},
    errors=(400, 404, 422, 503),  # 404: a version the model lacks
)
def explain_rows(version: int | None = None) -> Response:
    """Split each row's answer into a base value and one contribution per feature."""
    s = services()
    m = s.model()
    model = s.dataplane.model(m.versions, requested_version(version))
    X, _ = predict_rows(request_json(), model.schema, m.settings.server.max_rows_per_request)
    return jsonio.json_response(s.dataplane.explain(m.name, model, X, "explain", request_id()))
