"""``POST /admin/reload``: read the settings file again and serve the models it now names;
``POST /admin/bucket-events``: a bucket notification asks the bucket poller for a round now.

The same reload ``SIGHUP`` runs (``scoring.service.reload``): new ``[models.X]`` sections are
served, removed ones answer 404, the others never stop; an invalid file is a 422 naming the
problem and the running configuration stays. Admin keys only, and audited like every change.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from scoring.api.jsonio import request_json
from scoring.api.openapi import STRING, array, json_body, obj, operation, response_object
from scoring.errors import BadRequest, Conflict, ValidationFailed
from scoring.service.reload import RELOADER_KEY, Reloader, ReloadRefused

bp = Blueprint("admin", __name__)

_NAMES = array(STRING)


@bp.post("/admin/reload")
@operation(
    "Read the settings file again: serve added models, stop removed ones",
    responses={
        200: response_object(
            obj(
                added=_NAMES,
                removed=_NAMES,
                needs_restart=_NAMES,
                models=_NAMES,
            )
        )
    },
    errors=(422,),
    description=(
        "Settings outside the model sections (the port, threads, …) and changes to an existing"
        " model's section are listed in needs_restart, not applied."
    ),
)
def reload_settings() -> Response:
    """Reload the settings file; a 422 names what is wrong with it and nothing changes."""
    reloader: Reloader = current_app.extensions[RELOADER_KEY]
    try:
        report = reloader.reload()
    except ReloadRefused as exc:
        raise ValidationFailed(str(exc), [{"reason": "settings"}]) from None
    return jsonify(report.to_dict())


BUCKET_KEY = "dropscore.bucket"  # app.extensions: the bucket poller of a `serve` process
_EVENT = {
    "type": "object",
    "description": "an S3 or MinIO bucket notification: {'Records': [...]} (read as a hint only)",
}


@bp.post("/admin/bucket-events")
@operation(
    "A bucket notification (S3 or MinIO event JSON): poll the bucket's inboxes now",
    body=json_body(_EVENT, put={"EventName": "s3:ObjectCreated:Put", "Records": []}),
    responses={202: response_object(obj(poll=STRING), "A poll was asked for")},
    errors=(400, 409),
    description=(
        "Events are hints: the listing stays the truth (an event is never the reason a drop"
        " is taken, and a lost event only delays a drop until the next rescan). Point the"
        " bucket's webhook here with an operate key."
    ),
)
def bucket_events() -> tuple[Response, int]:
    """Ask this process's bucket poller for a round now; a 409 when it polls no bucket."""
    body = request_json()
    if not isinstance(body, dict) or not ("Records" in body or "EventName" in body):
        raise BadRequest(
            "expected an S3 or MinIO bucket event: a JSON object with Records",
            [{"field": "Records", "problem": "missing"}],
        )
    poller = current_app.extensions.get(BUCKET_KEY)
    if poller is None:
        raise Conflict(
            "this process polls no bucket: [storage] url is empty, or it is an API-only"
            " replica; send bucket events to a `serve` process (a `worker` polls the bucket"
            " but answers no HTTP)",
            [{"reason": "no_bucket_poller"}],
        )
    poller.poll_soon()
    return jsonify({"poll": "requested"}), 202
