"""The dashboard's routes: thin views over ``pages.data`` and the API's own actions."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from flask import (
    Blueprint,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers import Response

from ingest.state.ledger import STATES
from scoring.api.audited import note
from scoring.api.auth import STALE_FORM, current_key_name
from scoring.api.context import MODEL_KEY, bind_request_model, services
from scoring.api.converters import MAX_ID
from scoring.api.files import requeue
from scoring.api.pages import data, explained, session
from scoring.api.pages import drift as drift_page
from scoring.api.params import int_arg
from scoring.api.request_ids import request_id
from scoring.bulk.batch import default_format_words
from scoring.errors import BadRequest, Conflict, NotFound, ValidationFailed
from scoring.keys import KeyRing
from scoring.lifecycle.runner import begin_retrain, execute
from scoring.lifecycle.runs import RetrainBusy
from scoring.value_kinds import kind_of

# What a browser ignores in a URL it is sent (WHATWG URL parsing): C0 controls and spaces at
# either end, tabs and newlines anywhere. Everything else outside printable ASCII is encoded.
_C0_AND_SPACE = "".join(chr(c) for c in range(0x21))
_BROWSER_DROPS = re.compile("[\t\r\n]")
_URL_SAFE = "/?#&=;:@!$'()*+,%~-._[]"

bp = Blueprint(
    "pages",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/ui/static",
)


@bp.before_request
def _guard() -> Response | None:
    """Refuse a POST without its CSRF token (who may see a page is the API's auth's job), and
    show the model the person picked (``?model=``, kept in the session) on every page."""
    if not session.csrf_ok(request):
        raise BadRequest(STALE_FORM)
    served = services().models
    picked = request.args.get("model")
    if picked is not None and len(served) > 1:
        if picked not in served:
            raise NotFound(
                f"model: no model by that name; this server has: {', '.join(served)}",
                [{"field": "model", "problem": f"unknown model, got {kind_of(picked)}"}],
            )
        session.pick_model(picked)
    chosen = session.picked_model()
    if chosen in served:
        g.setdefault(MODEL_KEY, chosen)
        bind_request_model()
    return None


@bp.context_processor
def _common() -> dict[str, Any]:
    served = services().models
    name = services().model().name
    return {
        "csrf_token": session.csrf_token,
        "keys_set": _ring().enabled(),
        "model_names": list(served),
        "model_name": name,
        # the picked model in every link and form, so two tabs on two models never mix them up
        "model_arg": {"model": name} if len(served) > 1 else {},
        # the API path of the picked model (/models/<name>/…), for the page's own calls
        "model_path": {"model": name} if name != services().root.name else {},
    }


@bp.app_template_filter("when")
def when(stamp: str | None) -> str:
    """Show an ISO time to the minute, in UTC as stored: '2026-11-25 15:52 UTC'."""
    if not stamp:
        return "—"
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return stamp
    return moment.strftime("%Y-%m-%d %H:%M UTC")


@bp.get("/")
def overview() -> str:
    """Render the dashboard's front page: champion, last run, ingest counts."""
    return render_template("overview.html", page="overview", **data.overview(services()))


@bp.get("/ui/models")
def models() -> str:
    """Render the model versions, with one selected for its metrics and plots."""
    selected = int_arg("v", 0, 0, 10**9) or None
    return render_template("models.html", page="models", **data.models(services(), selected))


@bp.post("/ui/models/<int:version>/promote")
def promote(version: int) -> Response:
    """Promote (or roll back to) a version: the same registry call as the API's promote."""
    services().registry.promote(version, "promoted from the dashboard", by=current_key_name())
    flash(f"version {version} is now the champion")
    return redirect(url_for("pages.models", v=version))


@bp.get("/ui/runs")
def runs() -> str:
    """Render the retrain runs, newest first, one page at a time."""
    offset = int_arg("offset", 0, 0, 10**9)
    return render_template("runs.html", page="runs", **data.runs(services(), offset))


@bp.post("/ui/runs/retrain")
def retrain() -> Response:
    """Start a retrain as ``POST /train`` does; the runs page follows it."""
    s = services()
    try:
        pending = begin_retrain(
            s.settings, "api", force=True, requested_by=current_key_name(), runs=s.runs
        )
    except RetrainBusy as exc:
        flash(f"not started: {exc}")
        return redirect(url_for("pages.runs"))
    threading.Thread(  # a promotion is live in this process before the run reads as done
        target=execute,
        args=(pending, s.registry, None, s.champion.refresh),
        name=f"retrain-{pending.run_id}",
    ).start()
    note(run_id=pending.run_id)  # the run this request started, for its audit row
    flash(f"retrain run {pending.run_id} started")
    return redirect(url_for("pages.runs"))


@bp.get("/ui/files")
def files() -> str:
    """Render the ledger's files, filtered by state and kind."""
    state = request.args.get("state") or None
    kind = request.args.get("kind") or None
    if state and state not in STATES:
        raise ValidationFailed(
            f"state must be a ledger state: {', '.join(STATES)}",
            [{"field": "state", "problem": f"got {kind_of(state)}"}],
        )
    if kind and kind not in data.KINDS:
        raise ValidationFailed(
            "kind must be train or score", [{"field": "kind", "problem": f"got {kind_of(kind)}"}]
        )
    offset = int_arg("offset", 0, 0, 10**9)
    return render_template(
        "files.html", page="files", **data.files(services(), state, kind, offset)
    )


@bp.post("/ui/files/<int:file_id>/retry")
def retry(file_id: int) -> Response:
    """Re-queue a quarantined drop: the same function as ``POST /files/<id>/retry``."""
    try:
        name = requeue(services().ledger, services().settings.layout, file_id)
    except (Conflict, NotFound) as exc:  # said on the page the person is looking at
        flash(f"not retried: {exc.message}")
    else:
        flash(f"file {file_id} was put back in the inbox as {name}")
    return redirect(_back(url_for("pages.files")))


@bp.get("/ui/score")
def score() -> str:
    """Render the form that scores an uploaded file through the API."""
    return render_template("score.html", page="score", default_format=default_format_words())


@bp.get("/ui/explain")
def explain() -> str:
    """Render a form for one row and, once sent, its explanation as a bar chart."""
    # the form sends its empty version field as ?v=: that asks for the champion, as no ?v= does
    named = bool(request.args.get("v", "").strip())
    version = (int_arg("v", 0, 0, 10**9) or None) if named else None
    found = explained.explanation(services(), version, request.args, request_id())
    return render_template("explain.html", page="explain", **found)


@bp.get("/ui/drift")
def drift() -> str:
    """Render the model's drift timeline, one record's histograms and the realized metrics."""
    record_id = int_arg("record", 0, 1, MAX_ID) if "record" in request.args else None
    file_id = int_arg("file", 0, 1, MAX_ID) if "file" in request.args else None
    offset = int_arg("offset", 0, 0, 10**9)
    found = drift_page.gather(services(), record_id, file_id, offset)
    return render_template("drift.html", page="drift", **found)


@bp.route("/ui/login", methods=["GET", "POST"])
def login() -> Response | str:
    """Ask for an API key once; a valid key starts a signed session."""
    target = _safe_next(request.values.get("next", "/"))
    if request.method == "GET":
        return render_template("login.html", page="login", next=target)
    if session.log_in(_ring(), request.form.get("key", "")):
        return redirect(target)
    # 200, not 401: the form is the answer, and a browser logs every 4xx as a console error
    return render_template("login.html", page="login", next=target, failed=True)


@bp.post("/ui/logout")
def logout() -> Response:
    """End the dashboard session and go back to the login form."""
    session.log_out()
    return redirect(url_for("pages.login"))


def _ring() -> KeyRing:
    ring = services().keyring
    assert ring is not None, "create_app registers auth before any request"
    return ring


def _back(fallback: str) -> str:
    """Return the page this request came from (its Referer), if it is a page of this service."""
    try:
        came_from = urlsplit(request.referrer or "")
    except ValueError:  # a netloc it cannot parse ("http://[x"): not a page of this service
        return fallback
    if came_from.netloc != request.host:
        return fallback
    return _safe_next(urlunsplit(("", "", came_from.path, came_from.query, "")))


def _safe_next(target: str) -> str:
    """Follow ``next`` only to a path on this site, judged as a browser will read it.

    A browser strips leading and trailing C0 controls and spaces, drops every tab, CR and LF, and
    reads a backslash as a slash, so ``/<tab>/evil.example`` and ``/<backslash>evil.example`` are
    the scheme-relative ``//evil.example`` to it: the check runs on that reading, and what is
    sent is that reading with anything else unusual percent-encoded, so no browser can read it
    again differently.
    """
    seen = _BROWSER_DROPS.sub("", target.strip(_C0_AND_SPACE)).replace("\\", "/")
    try:
        parts = urlsplit(seen)
    except ValueError:  # a netloc it cannot parse ("//["): no path on this site
        return "/"
    if parts.scheme or parts.netloc or not seen.startswith("/") or seen.startswith("//"):
        return "/"
    return quote(seen, safe=_URL_SAFE)
