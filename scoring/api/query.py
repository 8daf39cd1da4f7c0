"""Refuse query parameters a route does not declare, in one place for every API route.

A parameter the view does not read was silently ignored (``/predict?version=1`` answered with
the champion), which reads as if it had worked. The parameters a route takes are the ones its
``@operation(query=...)`` declares for the OpenAPI spec, so the spec and the check cannot drift:
any other name is a 422 naming it and the ones the route takes, in the protocol's error shape.
The dashboard's pages (not API operations) keep their own parameters.
"""

from __future__ import annotations

from flask import Flask, current_app, request

from scoring.api.openapi import Operation
from scoring.errors import ValidationFailed
from scoring.value_kinds import name_shown


def declared_query(note: Operation) -> list[str]:
    """Return the query parameter names an operation note declares."""
    return [str(param["name"]) for param in note.query]


def register_query_check(app: Flask) -> None:
    """Check every described route's query string against its declared parameters."""

    @app.before_request
    def _check_query() -> None:
        if not request.args or request.endpoint is None:
            return
        view = current_app.view_functions.get(request.endpoint)
        note = getattr(view, "openapi", None)
        if not isinstance(note, Operation):
            return  # pages, static files: not API operations
        allowed = declared_query(note)
        unknown = [name for name in request.args if name not in allowed]
        if unknown:
            takes = f"it takes {', '.join(allowed)}" if allowed else "it takes none"
            named = [name_shown(n) for n in unknown[:5]]
            raise ValidationFailed(
                f"this endpoint does not take the query parameter"
                f"{'s' if len(unknown) > 1 else ''} {', '.join(named)}; {takes}",
                [
                    {"field": name_shown(n), "problem": "unknown query parameter"}
                    for n in unknown[:20]
                ],
            )

