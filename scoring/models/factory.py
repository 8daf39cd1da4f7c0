"""The one place the stores are constructed: every model's, and the shared ones, from settings.

One ``StateDB`` per state database is opened here and held on the object that owns it (each
model's ``state.db``, the data folder's shared one); a store of another backend is a change to
this module only. ``tests/test_imports.py`` keeps every store constructor call in this package.

With ``[state] url`` set, every store is on that PostgreSQL database instead: the shared stores
in its default schema, each model's in a schema of its own (``ingest.state.db.model_schema``),
all on the one engine (and pool) of the shared ``StateDB``.
"""

from __future__ import annotations

from ingest.state.db import StateDB, model_schema
from scoring.models.model import Model, Models, SharedStores
from scoring.settings import Settings


def open_models(settings: Settings) -> Models:
    """Open every model the settings name, and the stores they share; nothing is loaded."""
    shared = open_shared(settings)
    by_name = {one.name: open_model(one, server=shared.db) for one in settings.each_model()}
    return Models(settings, by_name, shared)


def open_model(
    settings: Settings, name: str | None = None, *, server: StateDB | None = None
) -> Model:
    """Open one model (``name``, else the one this settings view is for); nothing is loaded.

    ``server`` is an open PostgreSQL state database whose engine the model's schema shares.
    """
    # Deferred: the registry reaches its artifacts through pyarrow, which `dropscore keys` and
    # `audit` (the shared stores only) need not import.
    from ingest.state.ledger import Ledger
    from scoring.jobs.store import JobStore
    from scoring.lifecycle.registry import Registry
    from scoring.lifecycle.runs import RunStore
    from scoring.monitoring.outcomes import OutcomeStore
    from scoring.monitoring.records import DriftStore
    from scoring.storage import artifact_store
    from scoring.traffic.store import TrafficStore

    view = settings.for_model(name or settings.name)
    db = model_db(view, server)
    return Model(
        settings=view,
        db=db,
        ledger=Ledger(db, view.db_path.parent),  # the folder its recorded paths are relative to
        registry=Registry(view.models_dir, db, artifact_store(view)),
        runs=RunStore(db),
        traffic=TrafficStore(db),
        jobs=JobStore(db),
        drift=DriftStore(db),
        outcomes=OutcomeStore(db),
    )


def open_shared(settings: Settings) -> SharedStores:
    """Open the data folder's shared stores: API keys, the audit trail, page sessions."""
    from scoring.audit import AuditLog
    from scoring.keys import KeyStore
    from scoring.sessions import Lifetimes, SessionStore

    path = settings.shared_db_path
    server = settings.server
    lifetimes = Lifetimes(server.session_idle_minutes * 60.0, server.session_max_hours * 3600.0)
    db = StateDB(settings.state.url) if settings.state.url else StateDB.at(path)
    return SharedStores(
        db=db,
        keys=KeyStore(db),
        audit=AuditLog(db),
        sessions=SessionStore(db, lifetimes),
    )


def model_db(view: Settings, server: StateDB | None = None) -> StateDB:
    """Open one model's state database: its ``state.db``, or its schema on the server."""
    if not view.state.url:
        return StateDB.at(view.db_path)
    return (server or StateDB(view.state.url)).for_schema(model_schema(view.name))
