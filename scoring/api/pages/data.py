"""What each page shows, gathered from the same objects the JSON endpoints read.

Every function takes the app's ``Services`` and returns plain dicts for a template; none queries
SQLite itself: the registry, the ledger, the run store, the monitoring counters and the health
view's body are the one source of each fact.
"""

from __future__ import annotations

from typing import Any

from ingest.base.layout import KINDS
from ingest.pipeline.quarantine import what_to_do
from ingest.state.ledger import DUPLICATE, QUARANTINED, STATES
from ingest.state.records import BY_BYTES, SAME_AS
from scoring.api import health
from scoring.api.context import Services
from scoring.api.pages import drift, plots
from scoring.api.pages.traffic import traffic
from scoring.lifecycle.estimators import PRIMARY
from scoring.models.job_ids import RETRAIN

PAGE_SIZE = 50


def overview(s: Services) -> dict[str, Any]:
    """Gather the champion, the service's health and the traffic counters."""
    body = health.health().get_json()  # the /health body, built by the /health view itself
    scheduler = body.get("scheduler") or {}
    jobs = scheduler.get("jobs") or []
    model = s.model()
    wanted = model.job_id(RETRAIN)
    retrain = next((j for j in jobs if j.get("id") == wanted), None)
    exposition = s.monitoring.render()
    files = model.ledger.counts_by_state()
    return {
        "champion": champion(s),
        "health": body,
        "watcher": body.get("watcher"),
        "scheduler": scheduler or None,
        "next_retrain": retrain.get("next_run_time") if retrain else None,
        "traffic": traffic(exposition, model.name),  # this model's requests
        "traffic_total": traffic(exposition),  # every request the service answered
        "files": {state: files.get(state, 0) for state in STATES},  # this model's drops
        "train_inbox": str(model.settings.layout.inbox("train").relative_to(s.root.data_dir)),
    }


def champion(s: Services) -> dict[str, Any] | None:
    """Describe the serving model: version, estimator, when and on how many rows it trained."""
    version = s.registry.champion_version()
    if version is None:
        return None
    record = s.registry.get(version)
    card = s.registry.card(version)
    data = card.get("training_data") or {}
    return {
        **record.to_dict(),
        "trained_at": card.get("created_at", record.created_at),
        "rows": data.get("rows"),
        "train_rows": data.get("train_rows"),
        "holdout_rows": data.get("holdout_rows"),
        "trigger": card.get("trigger"),
    }


def models(s: Services, selected: int | None) -> dict[str, Any]:
    """List every version, plot the primary metric across them, and detail one version."""
    if selected is not None:
        s.registry.get(selected)  # a 404 for a version that does not exist
    records = s.registry.list()
    if not records:
        return {"models": [], "selected": None, "trend": None, "detail": None}
    current = s.registry.champion_version()
    chosen = selected if selected is not None else (current or records[-1].version)
    task = next((r.task for r in reversed(records) if r.task), "regression")
    metric = PRIMARY.get(task or "regression", ("r2", True))[0]
    index = next((i for i, r in enumerate(records) if r.version == chosen), None)
    trend = plots.trend(
        [str(r.version) for r in records], [r.metrics.get(metric) for r in records], metric, index
    )
    return {
        "models": [r.to_dict() for r in reversed(records)],
        "champion": current,
        "selected": chosen,
        "metric": metric,
        "trend": trend,
        "detail": version_detail(s, chosen),
    }


def version_detail(s: Services, version: int) -> dict[str, Any]:
    """Detail one version: its card's facts and the plots of its hold-out sample."""
    record = s.registry.get(version)
    card = s.registry.card(version)
    sample = s.registry.holdout(version)
    return {
        **record.to_dict(),
        "trigger": card.get("trigger"),
        "params": card.get("params"),
        "training_data": card.get("training_data") or {},
        "decision": card.get("decision"),
        "compared_with": card.get("compared_with"),
        "features": [f["name"] for f in (card.get("schema") or {}).get("features", [])],
        "plots": plots.for_holdout(sample) if sample else None,
    }


def runs(s: Services, offset: int) -> dict[str, Any]:
    """Return one page of retrain runs, newest first, and whether one is in progress."""
    store = s.runs
    page = store.list(limit=PAGE_SIZE + 1, offset=offset)
    return {
        "runs": [r.to_dict() for r in page[:PAGE_SIZE]],
        "running": store.running() is not None,
        "offset": offset,
        "more": len(page) > PAGE_SIZE,
        "page_size": PAGE_SIZE,
    }


def files(s: Services, state: str | None, kind: str | None, offset: int) -> dict[str, Any]:
    """Return one page of the ledger (paged in SQL), with quarantine reasons spelled out."""
    page = s.ledger.list(state=state, kind=kind, limit=PAGE_SIZE + 1, offset=offset)
    return {
        "files": [_file_row(r) for r in page[:PAGE_SIZE]],
        "state": state,
        "kind": kind,
        "states": STATES,
        "kinds": KINDS,
        "offset": offset,
        "more": len(page) > PAGE_SIZE,
        "page_size": PAGE_SIZE,
        "counts": s.ledger.counts_by_state(),
        "drift_words": drift.WORDS,  # a scored file's drift badge, in the drift page's words
        "drift_badges": drift.BADGE,
    }


def _file_row(record: Any) -> dict[str, Any]:
    row = record.to_dict()
    row["details"] = record.details  # the CLI's words: a duplicate of what, retried as what
    if record.state == DUPLICATE:
        row["same"] = SAME_AS.get(record.duplicate_by or BY_BYTES, "same content")
    if record.state == QUARANTINED:
        error = record.error or {}
        row["reason"] = error.get("message") or "no reason was recorded"
        row["what_to_do"] = what_to_do(error)
        row["retryable"] = error.get("code") != "symlink"  # a link is never read: nothing to take
    return row
