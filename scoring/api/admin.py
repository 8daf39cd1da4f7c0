"""``POST /admin/reload``: read the settings file again and serve the models it now names.

The same reload ``SIGHUP`` runs (``scoring.service.reload``): new ``[models.X]`` sections are
served, removed ones answer 404, the others never stop; an invalid file is a 422 naming the
problem and the running configuration stays. Admin keys only, and audited like every change.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from scoring.api.openapi import STRING, array, obj, operation, response_object
from scoring.errors import ValidationFailed
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
