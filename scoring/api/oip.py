"""Open Inference Protocol v2 (Triton, MLServer, KServe v2), so their clients work unchanged.

Server and model metadata, liveness and readiness, and ``…/infer`` with JSON or binary tensors
(``scoring.inference.tensors``). Errors are ``{"error": "..."}`` (built in ``scoring.api.errors``).
The champion answers under the model's name; any registered version answers under
``…/versions/<v>/…`` (loaded on demand, see ``scoring.lifecycle.versions``); a version the model
lacks is a 404 listing the versions it has.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from scoring.api import openapi as oa
from scoring.api.context import readiness, services
from scoring.api.jsonio import json_response, request_json
from scoring.api.protocol import Protocol
from scoring.api.request_ids import request_id
from scoring.errors import NoModel, UnsupportedMediaType
from scoring.inference.core import server_version
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

ERRORS = oa.protocol_errors(oa.OIP_ERROR, (401, 403, 404, 503))


def error_body(status: int, code: str, message: str, details: list | None) -> dict:
    """The Open Inference Protocol's error body, ``{"error": "..."}`` (KServe v1's too)."""
    return {"error": message}
TENSOR = oa.obj(
    optional=["parameters", "data"],
    name=oa.STRING,
    datatype=oa.STRING,
    shape=oa.array(oa.INTEGER),
    data={"description": "the values, flat or nested (absent with binary data)"},
    parameters=oa.ANY_OBJECT,
)
INFER_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": oa.obj(
                optional=["id", "parameters", "outputs"],
                id=oa.STRING,
                inputs=oa.array(TENSOR),
                outputs=oa.array(oa.ANY_OBJECT),
                parameters=oa.ANY_OBJECT,
            )
        },
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
    "description": "JSON tensors, or the binary tensor extension: a JSON header of "
    "Inference-Header-Content-Length bytes, then the tensors' bytes",
}
CONFIG_TENSOR = oa.obj(name=oa.STRING, data_type=oa.STRING, dims=oa.array(oa.INTEGER))
MODEL_CONFIG = oa.obj(
    name=oa.STRING,
    platform=oa.STRING,
    backend=oa.STRING,
    version_policy=oa.ANY_OBJECT,
    max_batch_size=oa.INTEGER,
    input=oa.array(CONFIG_TENSOR),
    output=oa.array(CONFIG_TENSOR),
    parameters=oa.ANY_OBJECT,
)
INFER_OUT = oa.obj(
    optional=["id"],
    id=oa.STRING,
    model_name=oa.STRING,
    model_version=oa.STRING,
    outputs=oa.array(oa.ANY_OBJECT),
)


@bp.get("/v2")
@oa.operation(
    "Open Inference Protocol: server metadata",
    responses={
        200: oa.response_object(
            oa.obj(name=oa.STRING, version=oa.STRING, extensions=oa.array(oa.STRING))
        ),
        **ERRORS,
    },
)
def server_metadata() -> Response:
    """Name the server and the binary tensor extension, which tritonclient looks for."""
    return json_response(
        {"name": "dropscore", "version": server_version(), "extensions": EXTENSIONS}
    )


@bp.get("/v2/health/live")
@oa.operation(
    "Open Inference Protocol: liveness (open)",
    responses={200: oa.response_object(oa.obj(live=oa.BOOLEAN))},
)
def live() -> Response:
    """Answer 200 while the process runs; open like ``/health``."""
    return json_response({"live": True})


@bp.get("/v2/health/ready")
@oa.operation(
    "Open Inference Protocol: readiness, once a model is loaded (open)",
    responses={
        200: oa.response_object(oa.obj(ready=oa.BOOLEAN)),
        **oa.protocol_errors(oa.OIP_ERROR, (503,)),
    },
)
def ready() -> Response:
    """Answer 200 when ``/ready`` does, else 503 naming the models; open like ``/ready``."""
    state = readiness(services())
    if not state.ready:
        names = state.broken or state.waiting
        raise NoModel(f"no model is loaded yet for: {', '.join(names)}")
    return json_response({"ready": True})


REPOSITORY_ENTRY = oa.obj(
    name=oa.STRING, version=oa.nullable(oa.STRING), state=oa.STRING, reason=oa.STRING
)


@bp.get("/v2/models")
@oa.operation(
    "The models this server serves: name, champion version and state (READY or UNAVAILABLE)",
    responses={200: oa.response_object(oa.obj(models=oa.array(REPOSITORY_ENTRY))), **ERRORS},
)
def list_models() -> Response:
    """List every served model, so a client learns the names before it calls one."""
    return json_response({"models": _repository()})


@bp.post("/v2/repository/index")
@oa.operation(
    "Model repository index, as Triton and MLServer answer it: one entry per model",
    body=oa.json_body(oa.obj(ready=oa.BOOLEAN), required=False, ready={"ready": True}),
    responses={
        200: oa.response_object(oa.array(REPOSITORY_ENTRY)),
        **ERRORS,
        **oa.protocol_errors(oa.OIP_ERROR, (400, 413, 415)),
    },
)
def repository_index() -> Response:
    """List the served models in the repository-extension shape (``{"ready": true}`` filters)."""
    body = request_json() if request.content_length else {}
    only_ready = isinstance(body, dict) and body.get("ready") is True
    entries = [e for e in _repository() if not only_ready or e["state"] == "READY"]
    return json_response(entries)


def _repository() -> list[dict]:
    out = []
    for m in services().models.values():
        model = m.champion.peek()
        out.append(
            {
                "name": m.name,
                "version": model.version if model else None,
                "state": "READY" if model else "UNAVAILABLE",
                "reason": "" if model else "no model has been trained yet",
            }
        )
    return out


@bp.get("/v2/models/<model:name>")
@bp.get("/v2/models/<model:name>/versions/<model_version>")
@oa.operation(
    "Open Inference Protocol: the model's inputs (one per feature) and outputs",
    responses={200: oa.response_object(oa.ANY_OBJECT), **ERRORS},
)
def model_metadata(name: str, model_version: str | None = None) -> Response:
    """Describe the model's inputs (one per feature) and outputs, as OIP clients read them."""
    s = services()
    model = s.dataplane.model(s.model(name).versions, model_version)
    return json_response(_metadata(name, model))


@bp.get("/v2/models/<model:name>/ready")
@bp.get("/v2/models/<model:name>/versions/<model_version>/ready")
@oa.operation(
    "Open Inference Protocol: whether this model (and version) is served",
    responses={
        200: oa.response_object(oa.obj(name=oa.STRING, ready=oa.BOOLEAN, version=oa.STRING)),
        **ERRORS,
    },
)
def model_ready(name: str, model_version: str | None = None) -> Response:
    """Answer 200 when this name (and version) is served, 404 when not, 503 before a model."""
    s = services()
    model = s.dataplane.model(s.model(name).versions, model_version)
    return json_response({"name": name, "ready": True, "version": model.version})


@bp.post("/v2/models/<model:name>/infer")
@bp.post("/v2/models/<model:name>/versions/<model_version>/infer")
@oa.operation(
    "Open Inference Protocol: score tensors (JSON, or the binary tensor extension)",
    body=INFER_BODY,
    responses={
        200: {
            "description": "The outputs `predict` (and `predict_proba` for classifiers)",
            "content": {
                "application/json": {"schema": INFER_OUT},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        **ERRORS,
        **oa.protocol_errors(oa.OIP_ERROR, (400, 413, 415, 422)),
    },
)
def infer(name: str, model_version: str | None = None) -> Response:
    """Score tensors (JSON or binary) and answer ``predict`` (+ ``predict_proba``) tensors."""
    s = services()
    m = s.model(name)  # looked up once
    model = s.dataplane.model(m.versions, model_version)
    if request.content_encoding:
        raise UnsupportedMediaType("compressed request bodies are not accepted")
    parsed = read_request(request.get_data(cache=False), request.headers.get(HEADER_LENGTH))
    X = tensors_to_matrix(parsed.inputs, model.schema, m.settings.server.max_rows_per_request)
    out = s.dataplane.predict(m.name, model, X, "infer", request_id(parsed.id))
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


@bp.get("/v2/models/<model:name>/config")
@bp.get("/v2/models/<model:name>/versions/<model_version>/config")
@oa.operation(
    "Triton's model configuration (tritonclient's get_model_config): inputs and outputs with"
    " data_type and dims",
    responses={200: oa.response_object(MODEL_CONFIG), **ERRORS},
)
def model_config(name: str, model_version: str | None = None) -> Response:
    """Describe the model as Triton's config does, so Triton tooling can read its tensors."""
    s = services()
    m = s.model(name)
    model = s.dataplane.model(m.versions, model_version)
    return json_response(_config(name, model, m.settings.server.max_rows_per_request))


def _config(name: str, model: LoadedModel, max_rows: int) -> dict:
    """Triton's ``ModelConfig`` JSON, derived from the OIP metadata so the two cannot differ.

    ``max_batch_size`` is 0 because every tensor already has the batch as its first dimension
    (``-1``), as the metadata says; the row limit travels as a parameter instead.
    """
    meta = _metadata(name, model)

    def tensor(spec: dict) -> dict:
        return {
            "name": spec["name"],
            "data_type": triton_type(spec["datatype"]),
            "dims": spec["shape"],
        }

    return {
        "name": name,
        "platform": meta["platform"],
        "backend": "dropscore",
        "version_policy": {"all": {}},  # every registered version answers under /versions/<v>
        "max_batch_size": 0,
        "input": [tensor(t) for t in meta["inputs"]],
        "output": [tensor(t) for t in meta["outputs"]],
        "parameters": {
            "version": {"string_value": model.version},
            "task": {"string_value": model.schema.task},
            "max_rows_per_request": {"string_value": str(max_rows)},
        },
    }


def triton_type(datatype: str) -> str:
    """Spell an OIP datatype as Triton's config does: ``FP64`` → ``TYPE_FP64``, BYTES → STRING."""
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


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


PROTOCOL = Protocol(
    blueprint=bp,
    error_body=error_body,
    roles={
        "server_metadata": "predict",
        "model_metadata": "predict",
        "model_config": "predict",
        "model_ready": "predict",
        "infer": "predict",
        "list_models": "predict",
        "repository_index": "predict",
    },
    open=frozenset({"live", "ready"}),  # the health probes orchestrators poll
    paths=("/v2",),
    prefixes=("/v2/",),
    model_arg="name",  # /v2/models/<name>/…
)
