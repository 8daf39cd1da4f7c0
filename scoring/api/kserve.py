"""KServe's v1 prediction protocol: ``instances`` in, ``predictions`` out, errors ``{"error"}``."""

from __future__ import annotations

from flask import Blueprint, Response

from scoring.api import openapi as oa
from scoring.api.context import services
from scoring.api.jsonio import json_response, request_json
from scoring.api.oip import error_body
from scoring.api.protocol import Protocol
from scoring.api.request_ids import request_id
from scoring.inference.payloads import kserve_rows

bp = Blueprint("kserve", __name__)

ERRORS = oa.protocol_errors(oa.OIP_ERROR, (401, 403, 404, 503))


@bp.get("/v1/models")
@oa.operation(
    "KServe v1: the model names this server answers",
    responses={200: oa.response_object(oa.obj(models=oa.array(oa.STRING))), **ERRORS},
)
def list_models() -> Response:
    """List the model names a KServe v1 client can call."""
    return json_response({"models": list(services().models)})


@bp.get("/v1/models/<model:name>")
@oa.operation(
    "KServe v1: whether the model is ready",
    responses={200: oa.response_object(oa.obj(name=oa.STRING, ready=oa.BOOLEAN)), **ERRORS},
)
def model_status(name: str) -> Response:
    """Say whether the model is ready, as KServe's model status endpoint does."""
    s = services()
    s.dataplane.model(s.model(name).versions)
    return json_response({"name": name, "ready": True})


@bp.post("/v1/models/<model:name>:predict")
@oa.operation(
    "KServe v1: score `instances` (lists by position or objects by name)",
    body=oa.json_body(
        oa.obj(instances=oa.array({"description": "a row"})),
        by_position={
            "instances": [
                [0.038, 0.05, 0.061, 0.021, -0.044, -0.034, -0.043, -0.002, 0.019, -0.017]
            ]
        },
    ),
    responses={
        200: oa.response_object(oa.obj(predictions=oa.array({}))),
        **ERRORS,
        **oa.protocol_errors(oa.OIP_ERROR, (400, 413, 422)),
    },
)
def predict(name: str) -> Response:
    """Score ``instances`` (lists by position or objects by name) into ``predictions``."""
    s = services()
    m = s.model(name)  # looked up once
    model = s.dataplane.model(m.versions)
    X = kserve_rows(request_json(), model.schema, m.settings.server.max_rows_per_request)
    out = s.dataplane.predict(m.name, model, X, "kserve", request_id())
    return json_response({"predictions": out.values})


PROTOCOL = Protocol(
    blueprint=bp,
    error_body=error_body,  # KServe v1 answers errors as OIP does
    roles={"list_models": "predict", "model_status": "predict", "predict": "predict"},
    prefixes=("/v1/",),
    model_arg="name",  # /v1/models/<name>…
)
