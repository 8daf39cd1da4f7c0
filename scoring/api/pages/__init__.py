"""The dashboard: server-rendered pages over the same functions as the JSON API.

``/`` is the overview; the other pages live under ``/ui/``. Templates and static files ship
inside this package, so the pages work offline and from a non-editable install.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, redirect, request, url_for
from werkzeug.wrappers import Response

from scoring.api.pages import session, traffic_control  # noqa: F401  (its routes, on bp)
from scoring.api.pages.views import bp
from scoring.keys import Identity, KeyRing
from scoring.sessions import SessionStore
from scoring.settings import Settings


@dataclass(frozen=True)
class PageSessions:
    """How the API's auth recognises a person signed in to the dashboard (``auth.SessionAuth``)."""

    blueprint: str = bp.name

    def identify(self, ring: KeyRing) -> Identity | None:
        """Return the key of the request's live session, or None."""
        return session.identify(ring)

    def csrf_ok(self) -> bool:
        """Say whether a request that changes state carries the session's CSRF token."""
        return session.csrf_ok(request)

    def login_redirect(self) -> Response:
        """Send a person without a session to the login form, then back where they were."""
        target = request.full_path.rstrip("?") if request.method == "GET" else "/"
        return redirect(url_for("pages.login", next=target))


def register_pages(app: Flask, settings: Settings, store: SessionStore) -> PageSessions:
    """Mount the pages over the session table; return what lets sessions past the key check."""
    session.install(app, settings, store)
    app.register_blueprint(bp)
    return PageSessions()
