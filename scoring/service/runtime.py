"""The composition root: wire ingest, scoring and (later) schedules into running processes.

Only the CLI calls this module. Library code never starts threads or reads files on its own.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.base.config import IngestConfig
from ingest.base.logs import bound_to
from ingest.pipeline.intake import Intake
from ingest.pipeline.watcher import Watcher
from ingest.state.locks import FileLocks, Lock, locks_beside
from schedules.scheduler import Schedule
from scoring.bulk.drops import on_arrival, sweep
from scoring.inference.dataplane import Dataplane
from scoring.ingest_options import ingest_config
from scoring.jobs.runner import JobRunner
from scoring.lifecycle.contract import chain, train_drop_check
from scoring.lifecycle.first_data import first_data_trigger
from scoring.lifecycle.runner import run_retrain
from scoring.lifecycle.runs import RetrainBusy
from scoring.models.factory import open_model, open_models
from scoring.models.model import Model, Models
from scoring.monitoring.bulk import BulkDrift
from scoring.monitoring.labels import on_labels
from scoring.monitoring.reaction import Reaction, drifted_drops
from scoring.service.leader import Leader
from scoring.service.reload import Reloader, reload_on_sighup
from scoring.settings import Settings
from scoring.storage import bucket_watcher

if TYPE_CHECKING:
    from ingest.pipeline.bucket import BucketWatcher
    from ingest.state.ledger import Ledger

log = logging.getLogger("dropscore")


class AlreadyRunning(Exception):
    """Another process already runs the watcher and scheduler on this data folder."""


def open_intake(
    settings: Settings, model: Model | None = None
) -> tuple[IngestConfig, Ledger, Intake]:
    """Make the data folders, and an intake over the model's ledger that quarantines training
    drops the model cannot use (the model is opened from the settings when not given)."""
    model = model or open_model(settings)
    config = ingest_config(settings)
    config.make_dirs()
    intake = Intake(config, model.ledger)
    intake.on_normalized = train_drop_check(settings, intake, model.registry)
    return config, model.ledger, intake


def start_scoring(model: Model, intake: Intake, dataplane: Dataplane | None = None) -> None:
    """Score drops on arrival (when configured), and catch up on any left while down."""
    settings, champion = model.settings, model.champion
    drift = BulkDrift(model)  # each scored drop's drift, recorded with its verdict
    if settings.scoring.on_arrival:
        score = on_arrival(settings, intake, champion.peek, dataplane, drift, model.registry)
        intake.on_normalized = chain(intake.on_normalized, score)
    sweep(
        settings,
        intake=intake,
        models=champion.peek,
        dataplane=dataplane,
        drift=drift,
        registry=model.registry,
    )


def reap_interrupted(model: Model) -> None:
    """At start-up, mark runs a killed process left running as failed (interrupted)."""
    model.runs.reap()


def bootstrap(model: Model, intake: Intake) -> None:
    """On a first start, take the sample file into the lake and train the first model."""
    settings, registry = model.settings, model.registry
    if settings.training.bootstrap_data is not None:
        if settings.training.bootstrap_data.is_file():
            intake.bootstrap(settings.training.bootstrap_data)
        else:
            log.warning(
                "bootstrap file missing", extra={"path": str(settings.training.bootstrap_data)}
            )
    if registry.champion_version() is not None:
        return
    if not model.lake("train").names():  # nothing to learn from: no run to record
        log.info(
            "no model yet: waiting for a first labelled drop",
            extra={"model": settings.name, "inbox": str(settings.layout.inbox("train"))},
        )
        return
    try:
        run = run_retrain(settings, registry, trigger="bootstrap", runs=model.runs)
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
class Background:
    """What runs beside (or instead of) the API in the process that owns the data folder."""

    models: Models  # the API, when one runs here, serves these same objects
    intakes: dict[str, Intake]  # each model's intake, fed by the one watcher
    watcher: Watcher
    schedule: Schedule
    dataplane: Dataplane  # scored drops' events; `serve` shares it with the API
    leader: Leader  # runs the schedule while this process leads (one across replicas)
    bucket: BucketWatcher | None = None  # the bucket's inboxes' poller, with [storage] url

    def add(self, model: Model, root: Settings) -> None:
        """Prepare a model a reload added, then watch its inboxes and schedule its jobs."""
        intake = prepare_model(model, self.dataplane)  # folders, recovery, first training
        self.intakes[model.name] = intake
        self.watcher.add(intake)
        if self.bucket is not None:
            self.bucket.add(intake)
        self.schedule.add_model(root, model.name)

    def remove(self, name: str, root: Settings) -> None:
        """Stop a removed model's jobs (a running one ends first), then its inboxes."""
        self.schedule.remove_model(root, name)
        self.watcher.remove(name)
        if self.bucket is not None:
            self.bucket.remove(name)
        self.intakes.pop(name, None)


def _model_of(model: Model) -> dict[str, str]:
    return {"model": model.name}


@bound_to(_model_of)  # its recovery, bootstrap and first training name the model they are for
def prepare_model(model: Model, dataplane: Dataplane | None = None) -> Intake:
    """Make one model's folders, recover its drops and runs, train its first model; return its
    intake."""
    settings, registry = model.settings, model.registry
    _config, _ledger, intake = open_intake(settings, model)
    registry.clean_incoming()
    reap_interrupted(model)
    intake.resume()
    bootstrap(model, intake)
    start_scoring(model, intake, dataplane)
    first = first_data_trigger(settings, registry, model.champion, model.runs)  # no waiting
    labels = on_labels(model, Reaction(settings.monitoring))  # late labels: realized metrics
    intake.on_normalized = chain(intake.on_normalized, first, labels)
    return intake


@contextmanager
def background(settings: Settings, models: Models | None = None) -> Iterator[Background]:
    """Hold the folder lock; recover and bootstrap each model; then run one watcher over every
    model's inboxes and, while this process leads (``scoring.service.leader``), one scheduler
    with every model's jobs.

    On exit the scheduler stops first (waiting for a running job), then the watcher.
    """
    with worker_lock(settings.layout.worker_lock):
        dataplane = Dataplane()
        models = models or open_models(settings)
        if settings.monitoring.retrain_on_drift:  # a drifted drop queues a `drift` retrain
            dataplane.add(drifted_drops(models.model, Reaction(settings.monitoring)))
        intakes = {name: prepare_model(model, dataplane) for name, model in models.items()}
        watcher = Watcher(next(iter(intakes.values())).config, *intakes.values())
        watcher.start()
        # From the first thread started on, a failed start stops what did start.
        bucket: BucketWatcher | None = None
        leader: Leader | None = None
        jobs: JobRunner | None = None
        try:
            # [storage] url on a bucket: its inboxes are polled too (listing is the truth there)
            bucket = bucket_watcher(settings, intakes.values(), models.shared.db)
            if bucket is not None:
                bucket.start()
            schedule = Schedule(settings, models)
            log.info("state database", extra={"url": models.shared.db.masked_url})
            leader = Leader(locks_beside(models.shared.db), schedule)
            jobs = JobRunner(models)  # batch jobs queued by any process, run here
            leader.start()
            jobs.start()
            yield Background(models, intakes, watcher, schedule, dataplane, leader, bucket)
        finally:
            if jobs is not None:
                jobs.stop()
            if leader is not None:
                leader.stop()  # a leader's scheduler waits for a running job to finish
            if bucket is not None:
                bucket.stop()
            watcher.stop()
            log.info("stopped")


def run_serve(settings: Settings, load: Callable[[], Settings] | None = None) -> None:
    """API + watcher + scheduler in one process: the embedded default; ``load`` reads the
    settings again on SIGHUP or ``POST /admin/reload``."""
    from scoring.service.front import front_options
    from scoring.service.server import body_cap, listen_sockets, serve_threaded, warn_if_open

    # Bind first: a port in use stops `serve` here, at once (before Flask and scikit-learn
    # load) and before the watcher and scheduler start.
    sockets = listen_sockets(settings.server.host, settings.server.port)
    warn_if_open(settings, sockets)
    # Deferred: Flask and the WSGI server load only in `serve`, never in `dropscore worker`.
    from scoring.api.admin import BUCKET_KEY
    from scoring.api.app import create_app, warm
    from scoring.monitoring.live import LIVE_KEY

    with background(settings) as bg:
        reloader = Reloader(load or (lambda: settings), bg.models, bg)
        app = create_app(
            settings,
            served=bg.models,
            dataplane=bg.dataplane,
            probes={
                "watcher": bg.watcher.status,
                "scheduler": bg.leader.status,
                **({"bucket": bg.bucket.status} if bg.bucket is not None else {}),
            },
            reloader=reloader,
        )
        reload_on_sighup(reloader)
        if bg.bucket is not None:  # POST /admin/bucket-events asks it for a round now
            app.extensions[BUCKET_KEY] = bg.bucket
        app.extensions["dropscore"].monitoring.registry.register(bg.schedule.collector())
        warm(app)
        try:
            serve_threaded(app, sockets, front_options(settings, body_cap(settings)))
        finally:
            app.extensions[LIVE_KEY].stop()  # the prediction log's buffer, written


def run_worker(settings: Settings, load: Callable[[], Settings] | None = None) -> None:
    """Watcher + scheduler without the API, for deployments with separate API replicas."""
    stop = threading.Event()
    with background(settings) as bg:
        reload_on_sighup(Reloader(load or (lambda: settings), bg.models, bg))
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        log.info(
            "worker running",
            extra={"data_dir": str(settings.data_dir), "models": list(settings.model_names)},
        )
        stop.wait()
