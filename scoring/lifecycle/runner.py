"""Run a retrain: take the lock, record the run, train in a child process, apply the decision.

The nightly job, ``POST /train``, ``dropscore train`` and the first start all go through
``run_retrain`` (or its two halves, ``begin_retrain`` and ``execute``, when the caller answers
before the training ends), so every retrain is recorded the same way (``scoring.lifecycle.runs``).
A retrain walk holds one run store and one retrain lock (``scoring.lifecycle.run_locks``), from
``begin_retrain`` to the end of ``execute``.
A failed retrain never touches the champion. The training itself runs in a child process
(``scoring.lifecycle.trainer``); this process records the run (with the trainer's pid and peak
RSS) and applies the decision, so a promotion is live here before the run reads as done.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ingest.base.logs import bound
from ingest.state.locks import Lock
from scoring.errors import DropscoreError
from scoring.lifecycle.outcome import Outcome, apply, too_few_rows
from scoring.lifecycle.registry import Registry, now
from scoring.lifecycle.run_locks import take_retrain, trainer_slot
from scoring.lifecycle.runs import RunRecord, Runs
from scoring.lifecycle.trainer import run_trainer
from scoring.models.factory import open_model
from scoring.settings import Settings

log = logging.getLogger("dropscore.runs")


@dataclass
class PendingRun:
    """A queued run that holds the retrain lock until ``execute`` finishes it."""

    run_id: int
    settings: Settings
    trigger: str
    force: bool
    runs: Runs
    lock: Lock


def open_runs(settings: Settings) -> Runs:
    """Open the model's run store (its retrain lock kept with it)."""
    return open_model(settings).runs


class RetrainNotWanted(Exception):
    """The caller's condition, checked under the retrain lock, says no run is wanted any more."""


def begin_retrain(
    settings: Settings,
    trigger: str,
    *,
    force: bool = False,
    requested_by: str | None = None,
    runs: Runs | None = None,
    wanted: Callable[[], bool] | None = None,
) -> PendingRun:
    """Take the lock and queue a run; raise RetrainBusy while another retrain runs.

    ``runs`` is the model's run store the caller already holds (a serving process passes its
    own, so a request opens no database); a one-shot command leaves it to be opened here.
    ``wanted`` is asked once the lock is held (RetrainNotWanted when it says no): a check made
    before taking the lock, such as a cooldown, may be stale by then, since another process
    may have queued and finished a run in between.
    """
    runs = runs if runs is not None else open_runs(settings)
    lock = take_retrain(runs)
    try:
        if wanted is not None and not wanted():
            raise RetrainNotWanted(f"no {trigger} run wanted any more")
        abandoned = runs.abandon_unfinished()  # we hold the lock: those runs died with a process
        if abandoned:
            with bound(model=settings.name):
                log.warning("unfinished runs marked failed", extra={"runs": abandoned})
        run_id = runs.create(trigger, force, requested_by=requested_by)
    except BaseException:
        lock.release()
        raise
    return PendingRun(run_id, settings, trigger, force, runs, lock)


def execute(
    pending: PendingRun,
    registry: Registry,
    progress: Callable[[str], None] | None = None,
    on_promoted: Callable[[], None] | None = None,
) -> RunRecord:
    """Run a queued retrain to its end, record the result and release the lock.

    ``on_promoted`` runs after a promotion and before the run is recorded as done: a serving
    process passes its champion's refresh, so its new champion is live by then.
    """
    # Every event of the run, here and in what it calls, names its model and run (run ids are
    # per model: two models' first runs are both run 1).
    with bound(model=pending.settings.name, run_id=pending.run_id):
        return _execute(pending, registry, progress, on_promoted)


def _execute(
    pending: PendingRun,
    registry: Registry,
    progress: Callable[[str], None] | None,
    on_promoted: Callable[[], None] | None,
) -> RunRecord:
    run_id = pending.run_id
    try:
        pending.runs.update(run_id, state="running", started_at=now())
        log.info("retrain started", extra={"run_id": run_id, "trigger": pending.trigger})
        record = _attempt(pending, registry, progress, on_promoted)
    finally:
        pending.lock.release()
    log.info(
        "retrain finished",
        extra={
            "run_id": run_id,
            "state": record.state,
            "version": record.version,
            "promoted": record.promoted,
            "reason": record.reason,
            "error": record.error,
            "rows": record.rows,
            "sampled_from": record.sampled_from,
            "peak_rss_mb": record.peak_rss_mb,
        },
    )
    return record


def run_retrain(
    settings: Settings,
    registry: Registry,
    trigger: str,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
    on_promoted: Callable[[], None] | None = None,
    runs: Runs | None = None,
) -> RunRecord:
    """Retrain now (the training in a child process) and return the recorded run.

    Raises RetrainBusy while another retrain runs. ``runs`` as for ``begin_retrain``.
    """
    pending = begin_retrain(settings, trigger, force=force, runs=runs)
    return execute(pending, registry, progress, on_promoted)


def record_skipped(
    settings: Settings, trigger: str, reason: str, skip: str, runs: Runs | None = None
) -> RunRecord:
    """Record a run that never started (missed, or refused by the lock), so operators see it."""
    runs = runs if runs is not None else open_runs(settings)
    run_id = runs.create(trigger, state="skipped")
    stamp = now()
    return runs.update(run_id, started_at=stamp, finished_at=stamp, reason=reason, skip=skip)


def _attempt(
    pending: PendingRun,
    registry: Registry,
    progress: Callable[[str], None] | None,
    on_promoted: Callable[[], None] | None,
) -> RunRecord:
    """Train in a child process and decide, turning every way a retrain ends into one record."""
    from scoring.storage import lake_store  # pyarrow and pandas: only when a retrain starts

    settings, run_id, store = pending.settings, pending.run_id, pending.runs
    unchanged = None if pending.force else unchanged_since_champion(settings, registry)
    if unchanged:
        return _finish(store, run_id, "skipped", reason=unchanged, skip="no_new_data")
    if not lake_store(settings, "train").names():  # a new model's first start: no trainer
        return _finish(store, run_id, "skipped", reason=too_few_rows(0, settings), skip="refused")
    try:
        with trainer_slot(settings.layout, waiting=progress or _log_waiting(run_id)):
            ended = run_trainer(
                settings,
                pending.trigger,
                progress=progress,
                started=lambda pid: store.update(run_id, trainer_pid=pid),
            )
        if ended.outcome is not None:
            outcome = Outcome.from_dict(ended.outcome)
            apply(outcome, registry)
            if outcome.decision.promote and on_promoted is not None:
                _live(on_promoted, run_id)
    except Exception as exc:  # a failed retrain is recorded; the champion keeps serving
        log.exception("retrain failed", extra={"run_id": run_id})
        return _failed(store, run_id, f"{type(exc).__name__}: {exc}")
    memory = {"peak_rss_mb": ended.peak_rss_mb}
    if ended.refused is not None:
        return _finish(store, run_id, "skipped", reason=ended.refused, skip="refused", **memory)
    if ended.outcome is None:
        log.error("retrain failed", extra={"run_id": run_id, "error": ended.error})
        return _failed(store, run_id, ended.error or "the trainer gave no outcome", **memory)
    return _finish(store, run_id, "succeeded", **_outcome_fields(outcome), **memory)


def _live(on_promoted: Callable[[], None], run_id: int) -> None:
    """Make the promotion live in this process; a failure here is no failed run (it promoted),
    and the champion's poller loads it on its next turn."""
    try:
        on_promoted()
    except Exception:
        log.exception("new champion not loaded here yet", extra={"run_id": run_id})


def _log_waiting(run_id: int) -> Callable[[str], None]:
    return lambda message: log.info(message, extra={"run_id": run_id})


def _failed(store: Runs, run_id: int, error: str, **fields: Any) -> RunRecord:
    reason = "the retrain failed; the champion keeps serving"
    return _finish(store, run_id, "failed", reason=reason, error=error, **fields)


def _finish(store: Runs, run_id: int, state: str, **fields: Any) -> RunRecord:
    return store.update(run_id, state=state, finished_at=now(), **fields)


def _outcome_fields(outcome: Outcome) -> dict[str, Any]:
    data = outcome.card.get("training_data", {})
    return {
        "rows": data.get("rows"),
        "sampled_from": data.get("sampled_from"),
        "version": outcome.version,
        "champion_version": outcome.champion_version,
        "metrics": outcome.metrics,
        "champion_metrics": outcome.champion_metrics,
        "promoted": int(outcome.decision.promote),
        "reason": outcome.decision.reason,
    }


def unchanged_since_champion(settings: Settings, registry: Registry) -> str | None:
    """Say why a retrain would learn nothing new, or None when the data or model settings moved.

    The champion's card lists the lake files it was trained on (named by content hash); when the
    training lake holds exactly those files and the model settings are the same, a retrain would
    fit the same model again.
    """
    from scoring.storage import lake_store  # pyarrow and pandas: only when a retrain starts

    version = registry.champion_version()
    if version is None:
        return None
    try:
        card = registry.card(version)
    except DropscoreError:
        return None
    known = (card.get("training_data") or {}).get("lake_files")
    if known is None:
        return None
    current = lake_store(settings, "train").names()
    if sorted(known) != sorted(current) or _model_key(card) != _settings_key(settings):
        return None
    return (
        f"no new training data since champion v{version} ({len(current)} lake files) and the"
        " same model settings; force the retrain to train anyway"
    )


def _model_key(card: dict[str, Any]) -> tuple[Any, ...]:
    target = (card.get("schema") or {}).get("target")
    return (
        card.get("estimator"),
        card.get("params"),
        card.get("test_size"),
        card.get("random_state"),
        target,
        card.get("features"),
        card.get("id_columns"),
    )


def _settings_key(settings: Settings) -> tuple[Any, ...]:
    """The same key from settings, names normalized as the card stores them."""
    from scoring.lifecycle.schema import normalize_name

    m = settings.model
    return (
        m.estimator,
        json.loads(json.dumps(m.params)),
        m.test_size,
        m.random_state,
        normalize_name(m.target),
        [normalize_name(f) for f in m.features],
        [normalize_name(c) for c in m.id_columns],
    )
