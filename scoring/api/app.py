"""``create_app(settings)``: the one factory that the servers, the CLI and the tests call."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Flask

from ingest.ledger import Ledger
from scoring.api import (
    audit,
    docs,
    files,
    health,
    kserve,
    metrics,
    mlflow,
    models,
    oip,
    openapi,
    predict,
    runs,
    score,
)
from scoring.api.auth import register_auth
from scoring.api.context import Services
from scoring.api.converters import IdConverter, ModelNameConverter
from scoring.api.errors import register_error_handlers
from scoring.api.jsonio import StrictJSONProvider
from scoring.api.limits import register_body_limits
from scoring.api.monitoring import Monitoring
from scoring.api.pages import register_pages
from scoring.lifecycle.champion import ChampionHolder
from scoring.lifecycle.registry import Registry
from scoring.settings import Settings


def create_app(
    settings: Settings,
    *,
    registry: Registry | None = None,
    ledger: Ledger | None = None,
    champion: ChampionHolder | None = None,
    probes: dict[str, Callable[[], dict[str, Any]]] | None = None,
) -> Flask:
    """Build the API over a settings object; nothing is loaded until the first request."""
    app = Flask("dropscore")
    app.json = StrictJSONProvider(app)  # strict JSON everywhere: no NaN/Infinity in answers
    app.url_map.converters["id"] = IdConverter  # every whole number in a path: <id:name>
    app.url_map.converters["model"] = ModelNameConverter  # a served model's name: <model:name>
    # An API replica may start before any worker made the data folder; state.db lives there.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    registry = registry or Registry(settings.models_dir, settings.db_path)
    ledger = ledger or Ledger(settings.db_path)
    champion = champion or ChampionHolder(registry)
    services = Services(
        settings=settings,
        registry=registry,
        champion=champion,
        monitoring=Monitoring(lambda: _gauges(champion, registry, ledger)),
        ledger=ledger,
        probes=dict(probes or {}),
    )
    app.extensions["dropscore"] = services
    metrics.register_instrumentation(app)
    sessions = register_pages(app, settings)
    services.keyring = register_auth(app, settings, sessions)
    register_body_limits(app, settings)  # after auth: a client without a key learns nothing
    register_error_handlers(app)
    for module in (
        health, predict, score, models, files, runs, metrics, audit, openapi, docs,
        mlflow, oip, kserve,
    ):  # fmt: skip
        app.register_blueprint(module.bp)
    return app


def warm(app: Flask) -> Flask:
    """Load the champion now, so the first request does not pay for it; call after fork."""
    app.extensions["dropscore"].champion.peek()
    return app


def _gauges(champion: ChampionHolder, registry: Registry, ledger: Ledger) -> dict[str, Any]:
    model = champion.peek()
    listed = registry.list()
    last = datetime.fromisoformat(listed[-1].created_at).timestamp() if listed else 0
    return {
        "model_version": int(model.version) if model else 0,
        "last_retrain_ts": last,
        "files": ledger.counts_by_state(),
    }
