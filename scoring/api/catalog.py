"""``GET /models/<name>``: one served model at a glance, and where its routes are."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from ingest.base.layout import KINDS
from scoring.api.context import services
from scoring.api.openapi import BOOLEAN, STRING, nullable, obj, operation, response_object

bp = Blueprint("catalog", __name__)

SERVED = obj(
    name=STRING,
    ready=BOOLEAN,
    champion=nullable(STRING),
    target=STRING,
    estimator=STRING,
    inboxes=obj(train=STRING, score=STRING),
)


@bp.get("/models/<model:model>")
@operation(
    "One served model: its champion, what it predicts, and its inboxes",
    responses={200: response_object(SERVED)},
)
def show_model() -> Response:
    """Describe one served model, so a client finds its routes and an operator its folders."""
    m = services().model()
    loaded = m.champion.peek()
    layout = m.settings.layout
    return jsonify(
        {
            "name": m.name,
            "ready": loaded is not None,
            "champion": loaded.version if loaded else None,
            "target": m.settings.model.target,
            "estimator": m.settings.model.estimator,
            "inboxes": {
                kind: str(layout.inbox(kind).relative_to(m.settings.data_dir))
                for kind in KINDS
            },
        }
    )
