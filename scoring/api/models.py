"""The model registry over HTTP: list, inspect, promote (rollback included)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from scoring.api.auth import current_key_name
from scoring.api.context import services
from scoring.api.openapi import (
    ANY_OBJECT,
    STRING,
    array,
    nullable,
    obj,
    operation,
    response_object,
)
from scoring.errors import NoModel

bp = Blueprint("models", __name__)

MODEL = obj(
    version=STRING,
    status={"type": "string", "enum": ["champion", "challenger", "archived", "rejected"]},
    created_at=STRING,
    promoted_at=nullable(STRING),
    reason=nullable(STRING),
    estimator=nullable(STRING),
    task=nullable(STRING),
    metrics=ANY_OBJECT,
)
MODEL_DETAIL = {"allOf": [MODEL, obj(features=array(STRING), card=ANY_OBJECT)]}


@bp.get("/models")
@operation(
    "List model versions, oldest first", responses={200: response_object(obj(models=array(MODEL)))}
)
def list_models() -> Response:
    """List every registered version with its status and metrics."""
    s = services()
    return jsonify({"models": [m.to_dict() for m in s.registry.list()]})


@bp.get("/models/current")
@operation(
    "The champion: status, metrics, features in X_test order, model card",
    responses={200: response_object(MODEL_DETAIL)},
    errors=(503,),
)
def current_model() -> Response:
    """Show the champion, so clients learn the feature order X_test expects."""
    s = services()
    version = s.registry.champion_version()
    if version is None:
        raise NoModel("no champion yet")
    return jsonify(_detail(version))


@bp.get("/models/<id:version>")
@operation("One model version in detail", responses={200: response_object(MODEL_DETAIL)})
def show_model(version: int) -> Response:
    """Show one version with its card; the path parser already refused non-ids."""
    return jsonify(_detail(version))


@bp.post("/models/<id:version>/promote")
@operation(
    "Make this version the champion (rollback included)",
    responses={200: response_object(MODEL)},
)
def promote_model(version: int) -> Response:
    """Promote (or roll back to) a version by moving the champion pointer."""
    s = services()
    record = s.registry.promote(version, "promoted by API", by=current_key_name())
    return jsonify(record.to_dict())


def _detail(version: int) -> dict:
    s = services()
    record = s.registry.get(version)
    card = s.registry.card(version)
    schema = card.get("schema", {})
    return {
        **record.to_dict(),
        "features": [f["name"] for f in schema.get("features", [])],
        "card": card,
    }
