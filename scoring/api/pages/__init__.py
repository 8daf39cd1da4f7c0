"""The dashboard: server-rendered pages over the same functions as the JSON API.

``/`` is the overview; the other pages live under ``/ui/``. Templates and static files ship
inside this package, so the pages work offline and from a non-editable install.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, request

from scoring.api.pages import session
from scoring.api.pages.views import bp
from scoring.settings import Settings


def register_pages(app: Flask, settings: Settings) -> Callable[[], bool]:
    """Mount the pages; return the hook that lets page sessions past the API's bearer check."""
    session.install(app, settings)
    app.register_blueprint(bp)
    keys, secret = settings.server.api_keys, app.secret_key

    def admit() -> bool:
        # The pages check their own session (and send people to the login form); an API call
        # made by a page (the score upload) needs a live session and its CSRF token.
        return request.blueprint == "pages" or session.lets_api_request_in(keys, str(secret))

    return admit
