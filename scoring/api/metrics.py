"""``GET /metrics`` and the request instrumentation behind it."""

from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST

from scoring.api.context import MODEL_KEY, services
from scoring.api.openapi import STRING, operation

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
@operation(
    "Prometheus metrics: requests, latencies, rows scored, files by state, model version",
    responses={
        200: {
            "description": "Prometheus text format",
            "content": {"text/plain": {"schema": STRING}},
        }
    },
)
def metrics() -> Response:
    """Expose the Prometheus metrics in the text format scrapers read."""
    return Response(services().monitoring.render(), mimetype=CONTENT_TYPE_LATEST)


def register_instrumentation(app: Flask) -> None:
    """Count and time every request, errors included."""

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        started = g.get("started")
        if started is not None:
            s = services()
            model = g.get(MODEL_KEY) or ""
            if model not in s.models:  # a name no model has (a 404): never a new label value
                model = ""
            s.monitoring.observe(
                request.endpoint or "unmatched",
                request.method,
                response.status_code,
                time.perf_counter() - started,
                model,
            )
        return response
