"""``create_app(settings)``: the one factory that the servers, the CLI and the tests call.

Every model the settings name is served by the same routes: today's paths answer for the
default model, and each model-scoped route also answers under ``/models/<name>/…`` (the
registry's ``/models/…`` become ``/models/<name>/versions/…``), with the same endpoint names, so
roles, the OpenAPI spec and the views need nothing per model.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flask import Flask, g

from scoring.api import (
    admin,
    audit,
    catalog,
    docs,
    drift,
    files,
    health,
    jobs,
    metrics,
    models,
    openapi,
    performance,
    predict,
    runs,
    score,
    timeline,
    traffic,
)
from scoring.api.adapters import PROTOCOLS
from scoring.api.auth import register_auth
from scoring.api.context import (
    MODEL_KEY,
    Services,
    bind_request_model,
    unbind_request_model,
)
from scoring.api.converters import IdConverter, ModelNameConverter, model_name_converter
from scoring.api.errors import register_error_handlers
from scoring.api.jsonio import StrictJSONProvider
from scoring.api.limits import register_body_limits
from scoring.api.monitoring import Monitoring, drift_gauges
from scoring.api.openapi import CACHE_KEY
from scoring.api.pages import register_pages
from scoring.api.proxies import trust_proxies
from scoring.api.query import register_query_check
from scoring.api.request_ids import register_request_ids
from scoring.inference.dataplane import Dataplane
from scoring.models.factory import open_models
from scoring.models.model import Model, Models
from scoring.monitoring.live import LIVE_KEY, watch_live
from scoring.service.reload import RELOADER_KEY, Reloader, reread_file
from scoring.settings import Settings
from scoring.traffic.router import Traffic

if TYPE_CHECKING:
    from ingest.state.ledger import Ledger
    from scoring.lifecycle.registry import Registry

# Blueprints whose routes act on one model: each also answers under /models/<name>.
MODEL_SCOPED = ("predict", "score", "runs", "files", "models", "traffic", "jobs", "drift",
                "performance", "timeline")  # fmt: skip
MODEL_PREFIX = "/models/<model:model>"


def create_app(
    settings: Settings,
    *,
    served: Models | None = None,
    registry: Registry | None = None,
    ledger: Ledger | None = None,
    probes: dict[str, Callable[[], dict[str, Any]]] | None = None,
    dataplane: Dataplane | None = None,
    reloader: Reloader | None = None,
    reread: Callable[[], Settings] | None = None,
    reload_all: bool = False,
) -> Flask:
    """Build the API over a settings object; nothing is loaded until the first request.

    ``served`` passes the models a ``serve`` process already holds (``scoring.models``), so the
    API and the background work share their stores and champions; without it they are opened
    here. ``registry`` and ``ledger`` stand in for the default model's (tests pass their own);
    ``dataplane`` is the one a ``serve`` process's scored drops already report to. ``reloader``
    is the one ``serve`` reloads its background work with; else ``reread`` (or the settings
    file again) feeds one over these models alone; ``reload_all`` (a gunicorn worker) also
    has the master replace every worker once this one's reload changed the models.
    """
    app = Flask("dropscore")
    app.json = StrictJSONProvider(app)  # strict JSON everywhere: no NaN/Infinity in answers
    app.url_map.converters["id"] = IdConverter  # every whole number in a path: <id:name>
    # a served model's name in a path: <model:name>
    app.url_map.converters["model"] = model_name_converter(settings.model_names)
    # An API replica may start before any worker made the data folder; state.db lives there.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    opened = served or open_models(settings)
    if registry is not None or ledger is not None:
        opened = opened.using(settings.name, registry=registry, ledger=ledger)
    services = Services(
        root=settings,
        models=opened,
        monitoring=Monitoring(lambda: {name: _gauges(m) for name, m in opened.items()}),
        probes=dict(probes or {}),
        dataplane=dataplane or Dataplane(),
    )
    services.dataplane.add(services.monitoring.count_rows)  # the first observer: rows scored
    routed = Traffic(opened, traffic.request_key, traffic.scores_rows)
    app.extensions[traffic.TRAFFIC_KEY] = routed
    services.dataplane.router = routed  # canary: who answers; shadow: the next observer
    services.dataplane.add(routed.observe)
    app.extensions[LIVE_KEY] = watch_live(settings, opened, services.dataplane)  # log, windows
    app.extensions["dropscore"] = services
    reloader = reloader or Reloader(reread or (lambda: reread_file(settings)), opened)
    reloader.on_change.append(lambda: _follow_models(app, services))
    if reload_all:
        reloader.on_change.append(lambda: os.kill(os.getppid(), signal.SIGHUP))
    app.extensions[RELOADER_KEY] = reloader
    metrics.register_instrumentation(app)
    sessions = register_pages(app, settings, opened.shared.sessions)
    services.keyring = register_auth(app, settings, opened.shared, sessions)
    register_body_limits(app, settings)  # after auth: a client without a key learns nothing
    register_query_check(app)  # after auth too: a query parameter no route takes is a 422
    register_error_handlers(app)
    register_request_ids(app)  # a scoring request's id, echoed (X-Request-Id)
    trust_proxies(app, settings)  # forwarded headers: applied from trusted proxies, else dropped
    for module in (
        health, predict, score, models, catalog, files, runs, metrics, audit, openapi, docs,
        admin, traffic, jobs, drift, performance, timeline,
    ):  # fmt: skip
        app.register_blueprint(module.bp)
    for protocol in PROTOCOLS:  # the other protocols, each as its adapter declares it
        app.register_blueprint(protocol.blueprint)
    _add_model_routes(app, settings.name)
    return app


def _add_model_routes(app: Flask, default: str) -> None:
    """Answer each model-scoped route under ``/models/<name>`` too, with the same endpoint."""
    # blueprint → the route argument naming the model (the protocols' own scheme, <model:name>)
    model_args = {p.name: p.model_arg for p in PROTOCOLS if p.model_arg}
    # blueprints whose routes naming no model answer for the default one
    defaulted = frozenset((*MODEL_SCOPED, *(p.name for p in PROTOCOLS if p.default_model)))
    for rule in list(app.url_map.iter_rules()):
        if rule.endpoint.partition(".")[0] not in MODEL_SCOPED:
            continue
        path = rule.rule
        if path.startswith("/models"):  # the registry: /models/<name>/versions/…
            path = "/versions" + path[len("/models") :]
        app.add_url_rule(
            MODEL_PREFIX + path,
            endpoint=rule.endpoint,
            view_func=app.view_functions[rule.endpoint],
            methods=rule.methods,
        )

    @app.url_value_preprocessor
    def _pick_model(endpoint: str | None, values: dict[str, Any] | None) -> None:
        """Keep the path's model for ``services()`` (checked there, after auth)."""
        blueprint = endpoint.partition(".")[0] if endpoint else ""
        arg = model_args.get(blueprint)
        if values and "model" in values:
            g.setdefault(MODEL_KEY, values.pop("model"))
        elif values and arg and arg in values:
            g.setdefault(MODEL_KEY, values[arg])  # the protocols' /v2/models/<name>, …
        elif blueprint in defaulted:
            g.setdefault(MODEL_KEY, default)  # today's routes: the default model
        bind_request_model()

    app.teardown_request(unbind_request_model)


def _follow_models(app: Flask, services: Services) -> None:
    """After a reload: the spec's model names and ``services().root`` follow the served set."""
    services.root = services.models.root
    converter = app.url_map.converters["model"]
    if issubclass(converter, ModelNameConverter):
        converter.openapi = {"type": "string", "enum": list(services.models)}
    app.extensions.pop(CACHE_KEY, None)  # the spec is built again on its next request


def warm(app: Flask) -> Flask:
    """Load every champion now, so the first request does not pay for it; call after fork."""
    for model in app.extensions["dropscore"].models.values():
        model.champion.peek()
    return app


def _gauges(m: Model) -> dict[str, Any]:
    model = m.champion.peek()
    listed = m.registry.list()
    last = datetime.fromisoformat(listed[-1].created_at).timestamp() if listed else 0
    return {
        "model_version": int(model.version) if model else 0,
        "last_retrain_ts": last,
        "files": m.ledger.counts_by_state(),
        "drift": drift_gauges(m.drift),
    }
