"""Bearer keys with roles for every endpoint but the probes, and the audit of what keys changed.

Auth is on as soon as any key exists, in ``[server] api_keys`` or in the key store (``dropscore
keys add``). A missing or unknown key is a 401; a key whose role is too low is a 403 naming the
role needed. Every state-changing request that passed auth is logged and recorded in the audit
table with the key's name.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from flask import Flask, Response, g, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.wrappers import Response as BaseResponse

from scoring.api.adapters import PROTOCOLS
from scoring.api.audited import entry_for
from scoring.api.openapi import ACCESS_KEY, Access
from scoring.api.protocol import endpoint_roles, open_endpoints
from scoring.audit import AuditLog
from scoring.errors import BadRequest, Forbidden, Unauthorized
from scoring.keys import Identity, KeyRing, role_allows
from scoring.settings import Settings

if TYPE_CHECKING:
    from scoring.models.model import SharedStores


class SessionAuth(Protocol):
    """A second proof besides the bearer key: the dashboard's server-side session and CSRF token."""

    @property
    def blueprint(self) -> str:
        """Name the blueprint whose requests without a session are sent to log in."""

    def identify(self, ring: KeyRing) -> Identity | None:
        """Return the key behind this request's session, or None."""

    def csrf_ok(self) -> bool:
        """Say whether this request, if it changes state, carries the session's CSRF token."""

    def login_redirect(self) -> BaseResponse:
        """Answer a page request that has no session."""


log = logging.getLogger("dropscore.audit")

# Endpoints anyone may call, key or not: the probes orchestrators poll (ours, and the ones each
# protocol declares open: MLflow's /ping, OIP's /v2/health/*), and the dashboard's login form and
# its assets.
OPEN_ENDPOINTS = frozenset(
    {
        "health.health",
        "health.ready",
        "pages.login",
        "pages.logout",
        "pages.static",
    }
) | open_endpoints(PROTOCOLS)

# The one table of who may call what (blueprint.view → the lowest role allowed): dropscore's own
# endpoints here, each other protocol's from its declaration. An endpoint missing here needs
# ``admin``; tests/test_roles.py fails for any registered endpoint that is neither here nor
# open, so a new endpoint cannot slip through with the wrong role.
ENDPOINT_ROLES: dict[str, str] = {
    "predict.predict": "predict",
    "predict.explain_rows": "predict",
    "score.score_file": "predict",
    "models.list_models": "predict",
    "models.current_model": "predict",
    "models.show_model": "predict",
    "files.list_files": "predict",
    "files.show_file": "predict",
    "files.download_original": "predict",
    "files.download_output": "predict",
    "runs.list_runs": "predict",
    "runs.show_run": "predict",
    "metrics.metrics": "predict",
    "openapi.openapi_json": "predict",
    "docs.docs": "predict",
    "docs.asset": "predict",
    "catalog.show_model": "predict",
    "static": "predict",  # Flask's own /static/<file> route: assets are reads
    "runs.start_training": "operate",
    "models.promote_model": "operate",
    "files.retry_file": "operate",
    "traffic.show_traffic": "predict",
    "traffic.show_challenger": "predict",
    "traffic.set_traffic": "operate",
    "jobs.list_jobs": "predict",
    "jobs.show_job": "predict",
    "jobs.submit_job": "operate",
    "drift.file_drift": "predict",
    "drift.show_record": "predict",
    "performance.show_performance": "predict",
    "timeline.show_timeline": "predict",
    "audit.list_audit": "admin",
    "admin.reload_settings": "admin",
    "admin.bucket_events": "operate",  # a bucket webhook only asks for a poll
    # the dashboard: pages read; its buttons act with the same roles as the API they mirror
    "pages.overview": "predict",
    "pages.models": "predict",
    "pages.runs": "predict",
    "pages.files": "predict",
    "pages.score": "predict",
    "pages.explain": "predict",
    "pages.drift": "predict",
    "pages.promote": "operate",
    "pages.retrain": "operate",
    "pages.retry": "operate",
    "pages.set_traffic": "operate",
    **endpoint_roles(PROTOCOLS),  # the other protocols: as each declares its routes
}
DEFAULT_ROLE = "admin"
# A path that matches no endpoint (404, 405) needs a valid key of any role before it is told so.
UNROUTED_ROLE = "predict"
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Why a request riding on a dashboard session was refused: it lacked the session's CSRF token,
# so it may have been sent by another site through the person's browser (the key is the victim).
CSRF_REFUSED = "no CSRF token, or not the session's: maybe sent by another site"
STALE_FORM = "the form is stale or was not sent from a dropscore page; reload it"


def required_role(endpoint: str | None) -> str:
    """Return the role an endpoint needs; unknown endpoints need admin, the safe default."""
    if endpoint is None:
        return UNROUTED_ROLE
    return ENDPOINT_ROLES.get(endpoint, DEFAULT_ROLE)


def is_audited(method: str, role: str) -> bool:
    """Say whether a request changes state: a mutating method on an endpoint above ``predict``.

    What a ``predict`` key may call changes nothing by definition (``/predict`` and
    ``/score-file`` are POSTs that only compute), so auditing them would only bury the entries
    that matter under every prediction.
    """
    return method in MUTATING_METHODS and role != "predict"


def bearer_token() -> str | None:
    """Read the key from ``Authorization: Bearer <key>``; None when none was sent that way."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def current_identity() -> Identity | None:
    """Return the key that sent this request, or None while the API is open (no keys)."""
    return g.get("identity")


def current_key_name() -> str | None:
    """Return the name of the key that sent this request, for the records it changes."""
    identity = current_identity()
    return identity.name if identity else None


def register_auth(
    app: Flask, settings: Settings, shared: SharedStores, sessions: SessionAuth | None = None
) -> KeyRing:
    """Check every request's key and role, and audit the state-changing ones.

    ``shared`` holds the key table and the audit trail (opened once, by ``scoring.models``).
    ``sessions`` identifies a request by the dashboard's session instead of a bearer key; it is
    asked only when the request carries no Authorization header, and the role check is the same.
    """
    app.extensions[ACCESS_KEY] = Access(OPEN_ENDPOINTS, required_role)  # for the OpenAPI spec
    ring = KeyRing(shared.keys, settings.server.api_keys)
    trail = shared.audit

    @app.before_request
    def _authenticate() -> BaseResponse | None:
        if request.endpoint in OPEN_ENDPOINTS:
            return None
        need = required_role(request.endpoint)
        page = sessions is not None and request.blueprint == sessions.blueprint
        identity = None
        if sessions is not None and ring.enabled() and "Authorization" not in request.headers:
            identity = sessions.identify(ring)
            if identity is None and page:
                return sessions.login_redirect()
        # A session's request that changes state must carry its CSRF token, checked before the
        # request counts as its key's: a forged one is refused and logged, never audited as done.
        if sessions is not None and (page or identity) and not sessions.csrf_ok():
            _refused(400 if page else 401, identity, CSRF_REFUSED)
            if page:
                raise BadRequest(STALE_FORM)
            raise Unauthorized(
                "send 'Authorization: Bearer <key>'; a page's own requests send its X-CSRF-Token"
            )
        if ring.enabled():
            g.identity = _authorize(ring, need, identity)
        g.audited = is_audited(request.method, need)  # only requests that passed get here
        return None

    @app.after_request
    def _audit(response: Response) -> Response:
        if g.get("audited"):
            _record(trail, response)
        return response

    return ring


def _authorize(ring: KeyRing, need: str, identity: Identity | None = None) -> Identity:
    """Return the sender's identity, or raise 401 (no or unknown key) or 403 (role too low)."""
    token = None
    if identity is None:
        token = bearer_token()
        identity = ring.identify(token) if token else None
    if identity is None:
        _refused(401, None)
        raise Unauthorized(
            "the API key is not valid" if token else "send 'Authorization: Bearer <key>'"
        )
    if not role_allows(identity.role, need):
        _refused(403, identity)
        raise Forbidden(
            f"this endpoint needs a key with role {need!r} or higher;"
            f" key {identity.name!r} has role {identity.role!r}",
            [{"role_needed": need, "role": identity.role}],
        )
    return identity


def _refused(status: int, identity: Identity | None, reason: str | None = None) -> None:
    """Log a refused request and why; it changed nothing, so it is not in the audit table."""
    log.warning(
        "request refused",
        extra={
            "status": status,
            "reason": reason or ("no valid key" if status == 401 else "role too low"),
            "key_name": identity.name if identity else None,
            "method": request.method,
            "path": request.path,
            "remote_addr": request.remote_addr,
        },
    )


def _record(trail: AuditLog, response: Response) -> None:
    """Log and store one state-changing request; a failed write is logged, never a failed reply."""
    identity = current_identity()
    who = (identity.name, identity.role) if identity else (None, None)
    entry = entry_for(response, *who)
    log.info("audit", extra={k: v for k, v in entry.to_dict().items() if k not in ("ts", "id")})
    try:
        trail.record(entry)
    except SQLAlchemyError:
        log.exception("audit entry not stored", extra={"path": entry.path})
