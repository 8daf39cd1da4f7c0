"""A model's live traffic over HTTP: ``GET``/``PUT /traffic`` and ``GET /challenger``.

``PUT`` (role ``operate``, audited like every state-changing call) stores the setting in the
model's state database, where every replica reads it within a second; ``GET /challenger``
shows the per-day figures: each version's answers (the champion's and a canary's) and the
shadow's agreement with the champion, and the canary rule's checks (its last evaluation). A
person promotes or rolls back with ``POST /models/<v>/promote`` or ``PUT /traffic`` ``off``; a
canary set with a ``rule`` is promoted or rolled back by the leader's scheduler
(``scoring.traffic.check``).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, current_app, has_request_context, jsonify, request

from scoring.api.audited import note
from scoring.api.auth import current_key_name
from scoring.api.context import services
from scoring.api.jsonio import request_json
from scoring.api.openapi import (
    ANY_OBJECT,
    NUMBER,
    STRING,
    array,
    json_body,
    nullable,
    obj,
    operation,
    response_object,
)
from scoring.errors import ValidationFailed
from scoring.traffic.figures import SERVED
from scoring.traffic.router import Traffic
from scoring.traffic.rule import RULE_DOCS, RULE_FIELDS
from scoring.traffic.setting import MODES, pair_of, parse_setting

bp = Blueprint("traffic", __name__)

TRAFFIC_KEY = "dropscore.traffic"  # app.extensions: the app's Traffic
DEFAULT_KEY_HEADER = "X-Canary-Key"  # the sticky key's header when the setting names none

SETTING = obj(
    ("rule",),
    mode={"type": "string", "enum": list(MODES)},
    version={"description": 'a version number, or "latest"'},
    fraction=NUMBER,
    key=nullable(STRING),
    rule=nullable(
        obj(
            RULE_FIELDS,  # a field left out keeps its default
            **{name: {**NUMBER, "description": doc} for name, doc in RULE_DOCS.items()},
        )
    ),
)
RULE_STATE = obj(
    canary_set_at=STRING,
    counted_since=STRING,  # the set, or the last restart for a new champion or challenger
    champion=nullable(NUMBER),
    challenger=nullable(NUMBER),
    passes=NUMBER,
    failures=NUMBER,
    last=nullable(ANY_OBJECT),
)
CURRENT = {"allOf": [SETTING, obj(challenger=nullable(STRING))]}
DAY = obj(day=STRING, version=STRING, figures=ANY_OBJECT)


def traffic_of(app: Flask) -> Traffic:
    """Return the app's traffic (the router its dataplane asks)."""
    found: Traffic = app.extensions[TRAFFIC_KEY]
    return found


def request_key(name: str | None) -> str | None:
    """Find the request's sticky key: the named header, else ``X-Canary-Key``; None: random."""
    if not has_request_context():
        return None
    return request.headers.get(name or DEFAULT_KEY_HEADER) or None


def scores_rows() -> bool:
    """Say whether the request in hand scores rows (a POST); reads describe the champion."""
    return has_request_context() and request.method == "POST"


def body_key(body: Any) -> Any:
    """Make a key finder that also reads a one-row body's field of the key's name."""

    def key_of(name: str | None) -> str | None:
        found = request_key(name)
        features = body.get("features") if isinstance(body, dict) else None
        if found is None and name and isinstance(features, dict):
            value = features.get(name)
            found = None if value is None or isinstance(value, (dict, list)) else str(value)
        return found

    return key_of


def _current() -> dict[str, Any]:
    m = services().model()
    now = traffic_of(current_app).current(m.name)
    body = now.setting.to_dict()
    body["challenger"] = None if now.challenger is None else str(now.challenger)
    return body


@bp.get("/traffic")
@operation(
    "The model's traffic setting (off, shadow or canary) and the challenger it resolves to",
    responses={200: response_object(CURRENT)},
)
def show_traffic() -> Response:
    """Show the traffic setting as this replica follows it."""
    return jsonify(_current())


@bp.put("/traffic")
@operation(
    "Set the model's traffic: off, shadow (a fraction of requests repeated by the challenger,"
    " off the request path) or canary (a fraction answered by it, sticky by key; with a rule,"
    " promoted or rolled back by its live figures)",
    body=json_body(
        SETTING,
        shadow={"mode": "shadow", "version": "latest", "fraction": 1.0},
        canary={
            "mode": "canary",
            "version": "latest",
            "fraction": 0.1,
            "rule": {"min_requests": 200, "max_p99_ratio": 1.5},
        },
    ),
    responses={200: response_object(CURRENT)},
    errors=(400, 422),
)
def set_traffic() -> Response:
    """Validate and store the setting; every replica follows it within a second."""
    m = services().model()
    setting = parse_setting(request_json())
    if isinstance(setting.version, int) and setting.mode != "off":
        known = m.versions.known()
        if setting.version not in known:
            raise ValidationFailed(
                f"model {m.name!r} has no version {setting.version}; its versions are "
                f"{', '.join(map(str, known)) or 'none yet'}",
                [{"field": "version", "problem": "not a registered version",
                  "versions": [str(v) for v in known]}],
            )  # fmt: skip
        note(version=setting.version)
    m.traffic.set(setting, by=current_key_name(), pair=pair_of(setting, m.registry))
    traffic_of(current_app).forget(m.name)  # this replica follows at once
    return jsonify(_current())


@bp.get("/challenger")
@operation(
    "Each version's live figures per day: answers, rows, errors and latency, and the"
    " shadow's agreement with the champion (share equal, or mean |difference| and correlation)",
    responses={
        200: response_object(
            obj(traffic=CURRENT, served=array(DAY), shadow=array(DAY), rule=nullable(RULE_STATE))
        )
    },
)
def show_challenger() -> Response:
    """Show the per-day figures of every version on live traffic, this replica's included."""
    m = services().model()
    traffic = traffic_of(current_app)
    traffic.worker.flush()  # what this replica counted but has not written yet
    served: list[dict[str, Any]] = []
    shadow: list[dict[str, Any]] = []
    for key, figures in m.traffic.days():
        day = {"day": key.day, "version": str(key.version), "figures": figures.summary(key.kind)}
        (served if key.kind == SERVED else shadow).append(day)
    state = m.traffic.rule_state()
    rule = None if state is None else state.to_dict()
    return jsonify({"traffic": _current(), "served": served, "shadow": shadow, "rule": rule})
