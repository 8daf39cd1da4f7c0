"""Keep the current champion loaded in this process and swap it when the index changes.

Each process (a gunicorn worker, the ``serve`` process, the CLI) polls the registry's champion
pointer a few times a second from a daemon thread, loads a new version off the request path,
and then replaces one reference. Requests read that reference once, so a request in flight
finishes on the model it started with. The thread starts on first use in each process, which
keeps it alive across gunicorn's fork and keeps construction free of side effects.

A process that promotes (``POST /train``, a first-data or bootstrap retrain) calls ``refresh``
itself before the run reads as done, so its new champion is live at once; refreshes take turns,
so a slow load of an older version can never replace a newer one. While there is no champion,
``current`` reads the pointer itself before answering 503, so the first model is served the
moment it is promoted, whichever process promoted it.

The poll is the only read of the pointer on the serving path (a request reads the reference,
never the database). On a SQLite file it is a local read of microseconds, four times a second;
on a PostgreSQL server shared by replicas it is one indexed read (``one_champion``) every half
second per model per process: a promotion made on any replica is served by every other within
half a second plus the load, and a hundred replicas cost the server two hundred tiny reads a
second per model, whatever the request rate.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time

from sqlalchemy.exc import SQLAlchemyError

from ingest.base.layout import DEFAULT_MODEL
from ingest.base.logs import bound_to
from scoring.errors import DropscoreError, NoModel
from scoring.lifecycle.predictor import Fold, LoadedModel
from scoring.lifecycle.registry import Registry

log = logging.getLogger("dropscore.model")


def _model_of(holder: ChampionHolder) -> dict[str, str]:
    return {"model": holder.model}


_about_model = bound_to(_model_of)


def load_version(registry: Registry, version: int) -> LoadedModel:
    """Load one registered version, with its schema and compiled fast path."""
    card, stored = registry.card(version), registry.fold(version)
    fold = None if stored is None else Fold.from_dict(stored, len(card["schema"]["features"]))
    if fold is not None:  # served from plain numbers; scikit-learn loads when first needed
        return LoadedModel.from_fold(
            str(version), fold, card, lambda: registry.load_pipeline(version)
        )
    model = LoadedModel.build(str(version), registry.load_pipeline(version), card)
    if stored is None and isinstance(model.fast, Fold):  # registered before folds were stored
        registry.add_fold(version, model.fast.to_dict())
    return model


POLL_SECONDS = 0.25  # a SQLite file beside the process
SERVER_POLL_SECONDS = 0.5  # a database server shared by replicas


def poll_seconds_for(dialect: str) -> float:
    """Say how often a process reads the champion pointer in a state database of ``dialect``."""
    return POLL_SECONDS if dialect == "sqlite" else SERVER_POLL_SECONDS


class ChampionHolder:
    """The model this process serves, reloaded when the champion pointer moves."""

    def __init__(
        self, registry: Registry, poll_seconds: float = POLL_SECONDS, *, model: str = DEFAULT_MODEL
    ) -> None:
        self.registry = registry
        self.model = model  # named in its events: several holders log in one process
        self.poll_seconds = poll_seconds
        self._model: LoadedModel | None = None
        self._lock = threading.Lock()  # one start per process
        self._loading = threading.Lock()  # one refresh at a time: reads and swaps in order
        self._pid = 0
        self._stop = threading.Event()
        self.last_error: str | None = None

    def current(self) -> LoadedModel:
        """Return the champion, or raise NoModel (503) while there is none."""
        if self._pid != os.getpid():
            self._start()
        model = self._model
        if model is None and self.last_error is None:  # promoted since the last poll?
            with contextlib.suppress(SQLAlchemyError):  # a busy database: the poller retries
                self.refresh()
            model = self._model
        if model is None:
            raise NoModel("no model has been trained yet; drop a labelled file or run train")
        return model

    def peek(self) -> LoadedModel | None:
        """Return the champion without raising; for health and readiness."""
        try:
            return self.current()
        except NoModel:
            return None

    @_about_model
    def refresh(self) -> None:
        """Load the champion if the pointer moved; a broken version keeps the old one serving.

        When it returns, the champion the pointer named on entry (or a newer one) is live, or
        ``last_error`` says why not: a promoting process calls it before reporting the run done.
        """
        with self._loading:
            version = self.registry.champion_version()
            current = self._model
            if version is None or (current is not None and current.version == str(version)):
                return
            try:
                model = load_version(self.registry, version)
            except DropscoreError as exc:
                if self.last_error != exc.message:
                    log.error(
                        "champion not loaded", extra={"version": version, "error": exc.message}
                    )
                self.last_error = exc.message
                return
            self._model = model
            self.last_error = None
        log.info("champion loaded", extra={"version": version, "pid": os.getpid()})

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            if self._pid:  # started in the parent: a lock held across fork stays held here
                self._loading = threading.Lock()
            self._stop.clear()
            self.refresh()  # the first load happens before the first answer
            threading.Thread(target=self._poll, name="champion-poll", daemon=True).start()
            self._pid = os.getpid()  # only now: until then, other callers wait on the lock

    @_about_model
    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception:  # the poller must outlive a locked or briefly missing database
                log.exception("champion poll failed")
                time.sleep(self.poll_seconds)

    def stop(self) -> None:
        """Stop watching the pointer, so the polling thread ends."""
        self._stop.set()
