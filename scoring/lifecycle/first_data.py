"""Train the first model as soon as the training lake holds ``[training] min_rows`` labelled rows.

Without this, a model with no champion answers 503 until the nightly retrain, so a user's first
labelled drop changes nothing for hours. The intake calls this hook after each drop reaches the
lake (on the ingest thread): while there is no champion and the lake holds enough labelled rows,
it queues a run with trigger ``first_data`` and trains it in a thread of its own, passing the
serving process's champion refresh, so ``/ready`` is green by the time the run reads as done.
Once a first model exists (the champion, or a challenger kept for a person under
``promote = "never"``) it does nothing; drops below ``min_rows`` wait for the next drop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ingest.base.logs import bound
from ingest.state.ledger import FileRecord
from scoring.lifecycle.champion import ChampionHolder
from scoring.lifecycle.contract import model_features
from scoring.lifecycle.registry import Registry
from scoring.lifecycle.runner import PendingRun, begin_retrain, execute
from scoring.lifecycle.runs import RetrainBusy, Runs
from scoring.lifecycle.schema import normalize_name
from scoring.settings import Settings

log = logging.getLogger("dropscore.runs")

TRIGGER = "first_data"


def first_data_trigger(
    settings: Settings, registry: Registry, champion: ChampionHolder, runs: Runs | None = None
) -> Callable[[FileRecord], None]:
    """Build the intake hook that trains the first model once enough labelled rows arrived.

    ``runs`` is the serving process's run store for the model (opened per run when None).
    """

    def hook(record: FileRecord) -> None:
        with bound(model=settings.name):
            check(record)

    def check(record: FileRecord) -> None:
        if record.kind != "train" or trained_before(registry):
            return
        rows = lake_rows(settings)
        if rows < settings.training.min_rows:
            log.info(
                "first model waits for more rows",
                extra={"file_id": record.id, "rows": rows, "min_rows": settings.training.min_rows},
            )
            return
        try:
            pending = begin_retrain(settings, TRIGGER, runs=runs)
        except RetrainBusy:  # a retrain is already running: it will make the first model
            return
        log.info("first model training", extra={"run_id": pending.run_id, "rows": rows})
        start(pending, registry, champion)

    return hook


def trained_before(registry: Registry) -> bool:
    """Tell whether a first model exists: a champion, or a version kept for a person to promote
    (``promote = "never"``), which another drop must not train again and again."""
    return registry.champion_version() is not None or bool(registry.list())


def lake_rows(settings: Settings) -> int:
    """Count the labelled rows a first model would train on (a quarantined drop left the lake)."""
    from scoring.lifecycle.dataset import labelled_rows  # pandas and pyarrow: only when counting
    from scoring.storage import lake_store

    target = normalize_name(settings.model.target)
    features = model_features(settings, None)  # no champion: the configured features, if any
    return labelled_rows(lake_store(settings, "train"), target, features)


def start(pending: PendingRun, registry: Registry, champion: ChampionHolder) -> threading.Thread:
    """Train a queued run off the caller's thread; a promotion goes live here before it is done."""
    # Not a daemon: a stopping service lets the run finish and record itself.
    thread = threading.Thread(
        target=execute,
        args=(pending, registry, None, champion.refresh),
        name=f"retrain-{pending.run_id}",
    )
    thread.start()
    return thread
