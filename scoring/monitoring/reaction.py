"""React to what monitoring sees: queue a retrain when data drifts or realized metrics fall.

With ``[monitoring] retrain_on_drift = true`` a drifted drop or live window queues a run with
trigger ``drift``, and realized metrics below the hold-out's by ``performance_margin`` queue one
with trigger ``performance``. Each trigger fires at most once per ``cooldown_minutes`` per model:
the cooldown is read from the model's run store (the newest run of that trigger), so every
process serving the model keeps the same one; it is read again under the retrain lock, since
every gunicorn worker of every replica reacts to the same live windows at about the same time.
The run goes through the runner like any other (``begin_retrain``, then trained off the
caller's thread), so it is recorded, locked and gated as a nightly one is; a retrain already
running makes the reaction a no-op, not a queue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from ingest.base.logs import bound
from scoring.inference.dataplane import Observer, Scored
from scoring.lifecycle.registry import now
from scoring.lifecycle.runner import PendingRun, RetrainNotWanted, begin_retrain
from scoring.lifecycle.runs import RetrainBusy
from scoring.models.model import Model
from scoring.monitoring.records_protocol import DROP
from scoring.monitoring.report import DRIFTED
from scoring.settings import MonitoringSettings

log = logging.getLogger("dropscore.monitoring")

DRIFT, PERFORMANCE = "drift", "performance"  # the triggers, as the runs store spells them
Starter = Callable[[PendingRun, Model], object]


def in_cooldown(last: str | None, minutes: float, at: str) -> bool:
    """Tell whether a run queued at ``last`` (ISO text) is less than ``minutes`` before ``at``."""
    if last is None:
        return False
    return datetime.fromisoformat(at) - datetime.fromisoformat(last) < timedelta(minutes=minutes)


def train_in_thread(pending: PendingRun, model: Model) -> object:
    """Train a queued run off the caller's thread; a promotion goes live in this process."""
    from scoring.lifecycle.first_data import start  # the same thread a first model trains in

    return start(pending, model.registry, model.champion)


class Reaction:
    """Queues the reaction retrains of every model, at most once per cooldown per trigger."""

    def __init__(self, monitoring: MonitoringSettings, starter: Starter = train_in_thread) -> None:
        self.monitoring = monitoring
        self.starter = starter

    @property
    def on(self) -> bool:
        """Say whether reactions are switched on (``retrain_on_drift``)."""
        return self.monitoring.retrain_on_drift

    def drifted(self, model: Model, why: str) -> int | None:
        """Queue a ``drift`` run for a drifted drop or window; return its id, None if not queued."""
        return self._react(model, DRIFT, why)

    def underperformed(self, model: Model, why: str) -> int | None:
        """Queue a ``performance`` run for fallen realized metrics; return its id, or None."""
        return self._react(model, PERFORMANCE, why)

    def _react(self, model: Model, trigger: str, why: str) -> int | None:
        if not self.on:
            return None
        with bound(model=model.name):

            def cooled() -> bool:
                last = model.runs.last_queued_at(trigger)
                return not in_cooldown(last, self.monitoring.cooldown_minutes, now())

            try:
                if not cooled():  # the cheap answer, without the lock
                    raise RetrainNotWanted(trigger)
                pending = begin_retrain(model.settings, trigger, runs=model.runs, wanted=cooled)
            except RetrainNotWanted:  # in the cooldown, perhaps by a run queued a moment ago
                log.info("reaction in cooldown", extra={"trigger": trigger, "why": why})
                return None
            except RetrainBusy:  # a retrain is under way: it will see the same data
                return None
            facts = {"trigger": trigger, "run_id": pending.run_id, "why": why}
            log.warning("retrain queued", extra=facts)
            self.starter(pending, model)
            return pending.run_id


def drifted_drops(model_of: Callable[[str], Model], reaction: Reaction) -> Observer:
    """Build the dataplane observer that reacts to a scored drop whose drift record drifted.

    A scored drop's event comes after its record is stored (``scoring.bulk.drops``), on the
    scoring thread, which may wait for a database read; a request never does.
    """

    def observe(event: Scored) -> None:
        if event.protocol != DROP or event.file_id is None or not reaction.on:
            return
        model = model_of(event.model)
        record = model.drift.for_file(event.file_id)
        if record is not None and record.verdict == DRIFTED:
            named = ", ".join(record.report.get("drifted_features", [])[:5])
            reaction.drifted(model, f"drop {event.file_id} drifted: {named}")

    return observe
