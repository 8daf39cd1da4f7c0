"""Bearer-key authentication for every endpoint but the probes."""

from __future__ import annotations

import hmac

from flask import Flask, request

from scoring.errors import Unauthorized

# Probes stay open so orchestrators need no key: ours, MLflow's /ping, OIP's /v2/health/*.
OPEN_ENDPOINTS = frozenset(
    {"health.health", "health.ready", "mlflow.ping", "oip.live", "oip.ready"}
)


def register_auth(app: Flask, keys: list[str]) -> None:
    """Require ``Authorization: Bearer <key>`` when keys are configured."""
    if not keys:
        return
    encoded = [k.encode() for k in keys]

    @app.before_request
    def _check() -> None:
        if request.endpoint in OPEN_ENDPOINTS:
            return
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("send 'Authorization: Bearer <key>'")
        if not key_matches(token.strip().encode(), encoded):
            raise Unauthorized("the API key is not valid")


def key_matches(token: bytes, keys: list[bytes]) -> bool:
    """Compare against every key in constant time, so timing reveals neither key nor index."""
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(token, key)
    return ok
