"""The model registry over HTTP: list, inspect, promote (rollback included)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from scoring.api.auth import current_key_name
from scoring.api.context import services
from scoring.errors import NoModel, NotFound

bp = Blueprint("models", __name__)


@bp.get("/models")
def list_models() -> Response:
    s = services()
    return jsonify({"models": [m.to_dict() for m in s.registry.list()]})


@bp.get("/models/current")
def current_model() -> Response:
    s = services()
    version = s.registry.champion_version()
    if version is None:
        raise NoModel("no champion yet")
    return jsonify(_detail(version))


@bp.get("/models/<version>")
def show_model(version: str) -> Response:
    return jsonify(_detail(_parse(version)))


@bp.post("/models/<version>/promote")
def promote_model(version: str) -> Response:
    s = services()
    record = s.registry.promote(_parse(version), "promoted by API", by=current_key_name())
    return jsonify(record.to_dict())


def _parse(version: str) -> int:
    if not version.isdigit():
        raise NotFound(f"model version {version!r} does not exist")
    return int(version)


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
