"""Retrains over HTTP: ``POST /train`` starts one; ``GET /runs`` and ``GET /runs/<id>`` follow it.
"""

from __future__ import annotations

import threading

from flask import Blueprint, Response, jsonify, request

from scoring.api.context import services
from scoring.api.params import int_arg
from scoring.errors import Conflict, ValidationFailed
from scoring.lifecycle.runs import STATES, RetrainBusy, RunStore, begin_retrain, execute

bp = Blueprint("runs", __name__)


@bp.post("/train")
def start_training() -> tuple[Response, int, dict[str, str]]:
    """Queue a retrain and train in a background thread; 409 while another retrain runs."""
    s = services()
    try:
        pending = begin_retrain(s.settings, "api", force=_force())
    except RetrainBusy as exc:
        raise Conflict(str(exc)) from None
    # Not a daemon: a stopping server lets the retrain finish and record itself.
    threading.Thread(  # a promotion is live in this process before the run reads as done
        target=execute,
        args=(pending, s.registry, None, s.champion.refresh),
        name=f"retrain-{pending.run_id}",
    ).start()
    url = f"/runs/{pending.run_id}"
    return jsonify({"run_id": pending.run_id, "state": "queued", "url": url}), 202, {
        "Location": url
    }


@bp.get("/runs")
def list_runs() -> Response:
    """List retrain runs, newest first."""
    state = request.args.get("state") or None
    if state and state not in STATES:
        raise ValidationFailed(
            f"state {state!r} is not a run state; expected one of {', '.join(STATES)}",
            [{"field": "state", "problem": "unknown state"}],
        )
    limit = int_arg("limit", 50, 1, 1000)
    offset = int_arg("offset", 0, 0, 10**9)
    runs = RunStore(services().settings.db_path).list(limit=limit, offset=offset, state=state)
    return jsonify({"runs": [r.to_dict() for r in runs], "limit": limit, "offset": offset})


@bp.get("/runs/<int:run_id>")
def show_run(run_id: int) -> Response:
    return jsonify(RunStore(services().settings.db_path).get(run_id).to_dict())


def _force() -> bool:
    """Read ``force`` from the query string or a JSON body; anything else is a 422."""
    raw = request.args.get("force")
    if raw is None and request.get_data(cache=True):
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ValidationFailed('the body, when sent, must be a JSON object: {"force": true}')
        raw = body.get("force", False)
    if raw in (None, False, "0", "false", "no", ""):
        return False
    if raw in (True, "1", "true", "yes"):
        return True
    raise ValidationFailed(
        f"force must be true or false, got {raw!r}", [{"field": "force", "problem": "not a flag"}]
    )

