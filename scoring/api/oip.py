"""Open Inference Protocol v2 (Triton, MLServer, KServe v2), so their clients work unchanged.

Server and model metadata, liveness and readiness, and ``…/infer`` with JSON or binary tensors
(``scoring.inference.tensors``). Errors are ``{"error": "..."}`` (built in ``scoring.api.errors``).
Only the champion is served: a URL naming another version is a 404 that says so.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from scoring.api.context import services
from scoring.api.jsonio import json_response
from scoring.errors import NoModel, UnsupportedMediaType
from scoring.inference.core import model_for, predict_many, server_version
from scoring.inference.tensors import (
    HEADER_LENGTH,
    OUTPUT_PREDICT,
    OUTPUT_PROBA,
    feature_datatype,
    output_datatype,
    outputs_for,
    read_request,
    tensors_to_matrix,
)
from scoring.lifecycle.predictor import LoadedModel

bp = Blueprint("oip", __name__)

EXTENSIONS = ["binary_tensor_data"]


@bp.get("/v2")
def server_metadata() -> Response:
    """Name the server and the binary tensor extension, which tritonclient looks for."""
    return json_response(
        {"name": "dropscore", "version": server_version(), "extensions": EXTENSIONS}
    )


@bp.get("/v2/health/live")
def live() -> Response:
    """Answer 200 while the process runs; open like ``/health``."""
    return json_response({"live": True})


@bp.get("/v2/health/ready")
def ready() -> Response:
    """Answer 200 once a model is loaded, else 503; open like ``/ready``."""
    if services().champion.peek() is None:
        raise NoModel("no model is loaded yet")
    return json_response({"ready": True})


@bp.get("/v2/models/<name>")
@bp.get("/v2/models/<name>/versions/<model_version>")
def model_metadata(name: str, model_version: str | None = None) -> Response:
    """Describe the model's inputs (one per feature) and outputs, as OIP clients read them."""
    model = model_for(services().champion, name, model_version)
    return json_response(_metadata(name, model))


@bp.get("/v2/models/<name>/ready")
@bp.get("/v2/models/<name>/versions/<model_version>/ready")
def model_ready(name: str, model_version: str | None = None) -> Response:
    """Answer 200 when this name (and version) is served, 404 when not, 503 before a model."""
    model = model_for(services().champion, name, model_version)
    return json_response({"name": name, "ready": True, "version": model.version})


@bp.post("/v2/models/<name>/infer")
@bp.post("/v2/models/<name>/versions/<model_version>/infer")
def infer(name: str, model_version: str | None = None) -> Response:
    """Score tensors (JSON or binary) and answer ``predict`` (+ ``predict_proba``) tensors."""
    s = services()
    model = model_for(s.champion, name, model_version)
    if request.content_encoding:
        raise UnsupportedMediaType("compressed request bodies are not accepted")
    parsed = read_request(request.get_data(cache=False), request.headers.get(HEADER_LENGTH))
    X = tensors_to_matrix(parsed.inputs, model.schema, s.settings.server.max_rows_per_request)
    out = predict_many(model, X)
    s.monitoring.rows_scored.labels("infer").inc(len(out.values))
    outputs, binary = outputs_for(out, parsed)
    body: dict = {"model_name": name, "model_version": model.version, "outputs": outputs}
    if parsed.id is not None:
        body["id"] = parsed.id
    if not binary:
        return json_response(body)
    header = json_response(body).get_data()
    return Response(
        header + binary,
        mimetype="application/octet-stream",
        headers={HEADER_LENGTH: str(len(header))},
    )


def _metadata(name: str, model: LoadedModel) -> dict:
    schema = model.schema
    outputs = [{"name": OUTPUT_PREDICT, "datatype": output_datatype(model.classes), "shape": [-1]}]
    if schema.task == "classification" and hasattr(model.pipeline, "predict_proba"):
        outputs.append(
            {"name": OUTPUT_PROBA, "datatype": "FP64", "shape": [-1, len(model.classes)]}
        )
    return {
        "name": name,
        "versions": [model.version],
        "platform": "sklearn",
        "inputs": [
            {"name": f.name, "datatype": feature_datatype(f.kind), "shape": [-1]}
            for f in schema.features
        ],
        "outputs": outputs,
        "parameters": {"task": schema.task, "classes": [str(c) for c in model.classes]},
    }
