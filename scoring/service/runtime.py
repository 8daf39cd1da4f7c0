"""The composition root: wire ingest, scoring and (later) schedules into running processes.

Only the CLI calls this module. Library code never starts threads or reads files on its own.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.base.config import IngestConfig
from ingest.base.logs import bound_to
from ingest.lake.store import lake_files
from ingest.pipeline.intake import Intake
from ingest.pipeline.watcher import Watcher
from ingest.state.db import StateDB
from ingest.state.ledger import Ledger
from ingest.state.locks import FileLocks, Lock
from schedules.scheduler import Schedule
from scoring.bulk.drops import on_arrival, sweep
from scoring.inference.dataplane import Dataplane
from scoring.ingest_options import ingest_config
from scoring.lifecycle.champion import ChampionHolder
from scoring.lifecycle.contract import chain, train_drop_check
from scoring.lifecycle.first_data import first_data_trigger
from scoring.lifecycle.registry import Registry
from scoring.lifecycle.runner import run_retrain
from scoring.lifecycle.runs import RetrainBusy, RunStore
from scoring.settings import Settings

if TYPE_CHECKING:
    from scoring.api.context import ModelServices

log = logging.getLogger("dropscore")


class AlreadyRunning(Exception):
    """Another process already runs the watcher and scheduler on this data folder."""


def open_intake(settings: Settings) -> tuple[IngestConfig, Ledger, Intake]:
    """Make the data folders, open the ledger, and an intake that quarantines training drops the
    model cannot use."""
    config = ingest_config(settings)
    config.make_dirs()
    ledger = Ledger.at(config.db_path)
    intake = Intake(config, ledger)
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    intake.on_normalized = train_drop_check(settings, intake, registry)
    return config, ledger, intake


def start_scoring(
    settings: Settings, intake: Intake, champion: ChampionHolder, dataplane: Dataplane | None = None
) -> None:
    """Score drops on arrival (when configured), and catch up on any left while down."""
    if settings.scoring.on_arrival:
        score = on_arrival(settings, intake, champion.peek, dataplane)
        intake.on_normalized = chain(intake.on_normalized, score)
    sweep(settings, intake=intake, models=champion.peek, dataplane=dataplane)


def reap_interrupted(settings: Settings) -> None:
    """At start-up, mark runs a killed process left running as failed (interrupted)."""
    RunStore(StateDB.at(settings.db_path)).reap()


def bootstrap(settings: Settings, registry: Registry, intake: Intake) -> None:
    """On a first start, take the sample file into the lake and train the first model."""
    if settings.training.bootstrap_data is not None:
        if settings.training.bootstrap_data.is_file():
            intake.bootstrap(settings.training.bootstrap_data)
        else:
            log.warning(
                "bootstrap file missing", extra={"path": str(settings.training.bootstrap_data)}
            )
    if registry.champion_version() is not None:
        return
    if not lake_files(settings.layout.lake("train")):  # nothing to learn from: no run to record
        log.info(
            "no model yet: waiting for a first labelled drop",
            extra={"model": settings.name, "inbox": str(settings.layout.inbox("train"))},
        )
        return
    try:
        run = run_retrain(settings, registry, trigger="bootstrap")
    except RetrainBusy as exc:
        log.warning("no model yet", extra={"reason": str(exc)})
        return
    if run.state != "succeeded":
        log.warning("no model yet", extra={"run_id": run.id, "reason": run.error or run.reason})
        return
    log.info("first model", extra={"version": run.version, "metrics": run.metrics})


@contextmanager
def worker_lock(path: Path) -> Iterator[Lock]:
    """Hold an OS lock so one process per data folder runs the watcher and the scheduler."""
    locks = FileLocks(path.parent)
    lock = locks.try_acquire(path.name, holder=str(os.getpid()))
    if lock is None:
        holder = locks.holder(path.name) or "another process"
        raise AlreadyRunning(
            f"{path.parent} is already served by pid {holder}; stop it first, or run"
            " `dropscore api` for more API processes"
        )
    with lock:
        yield lock


@dataclass
class Served:
    """One model's part of the background work: its ledger, registry, champion and intake."""

    settings: Settings
    ledger: Ledger
    registry: Registry
    champion: ChampionHolder
    intake: Intake


@dataclass
class Background:
    """What runs beside (or instead of) the API in the process that owns the data folder."""

    models: dict[str, Served]
    watcher: Watcher
    schedule: Schedule
    dataplane: Dataplane  # scored drops' events; `serve` shares it with the API

    def served(self) -> dict[str, ModelServices]:
        """What the API needs of each model, sharing this process's registries and champions."""
        from scoring.api.context import ModelServices  # Flask: only where an API runs

        return {
            name: ModelServices(m.settings, m.registry, m.champion, m.ledger)
            for name, m in self.models.items()
        }


def _model_of(settings: Settings) -> dict[str, str]:
    return {"model": settings.name}


@bound_to(_model_of)  # its recovery, bootstrap and first training name the model they are for
def prepare_model(settings: Settings, dataplane: Dataplane | None = None) -> Served:
    """Open one model's folders and stores, recover its drops and runs, train its first model."""
    _config, ledger, intake = open_intake(settings)
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    registry.clean_incoming()
    reap_interrupted(settings)
    intake.resume()
    bootstrap(settings, registry, intake)
    champion = ChampionHolder(registry, model=settings.name)
    start_scoring(settings, intake, champion, dataplane)
    first = first_data_trigger(settings, registry, champion)  # a first model without waiting
    intake.on_normalized = chain(intake.on_normalized, first)
    return Served(settings, ledger, registry, champion, intake)


@contextmanager
def background(settings: Settings) -> Iterator[Background]:
    """Hold the folder lock; recover and bootstrap each model; then run one watcher over every
    model's inboxes and one scheduler with every model's jobs.

    On exit the scheduler stops first (waiting for a running job), then the watcher.
    """
    with worker_lock(settings.layout.worker_lock):
        dataplane = Dataplane()
        models = {one.name: prepare_model(one, dataplane) for one in settings.each_model()}
        intakes = [m.intake for m in models.values()]
        watcher = Watcher(intakes[0].config, *intakes)
        watcher.start()
        schedule = Schedule(settings)
        try:
            schedule.start()
            yield Background(models, watcher, schedule, dataplane)
        finally:
            schedule.stop()  # waits for a running job to finish
            watcher.stop()
            log.info("stopped")


def run_serve(settings: Settings) -> None:
    """API + watcher + scheduler in one process: the embedded default."""
    from scoring.service.front import front_options
    from scoring.service.server import body_cap, listen_sockets, serve_threaded, warn_if_open

    # Bind first: a port in use stops `serve` here, at once (before Flask and scikit-learn
    # load) and before the watcher and scheduler start.
    sockets = listen_sockets(settings.server.host, settings.server.port)
    warn_if_open(settings, sockets)
    # Deferred: Flask and the WSGI server load only in `serve`, never in `dropscore worker`.
    from scoring.api.app import create_app, warm

    with background(settings) as bg:
        app = create_app(
            settings,
            served=bg.served(),
            dataplane=bg.dataplane,
            probes={"watcher": bg.watcher.status, "scheduler": bg.schedule.status},
        )
        app.extensions["dropscore"].monitoring.registry.register(bg.schedule.collector())
        warm(app)
        serve_threaded(app, sockets, front_options(settings, body_cap(settings)))


def run_worker(settings: Settings) -> None:
    """Watcher + scheduler without the API, for deployments with separate API replicas."""
    stop = threading.Event()
    with background(settings):
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        log.info(
            "worker running",
            extra={"data_dir": str(settings.data_dir), "models": list(settings.model_names)},
        )
        stop.wait()
