"""One served model as one object, and the set of every model with the stores they share.

As in MLServer's model registry, a process holds one ``Model`` per served model and looks models
up by name in one ``Models``; the API, the background work, the CLI, the jobs, the runner and the
trainer all receive these instead of opening stores of their own (``scoring.models.factory``
builds them). Opening one loads nothing: the champion holder and the cache of other versions are
made on first use, so a command that lists runs never imports numpy, let alone scikit-learn.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from scoring.errors import NotFound
from scoring.models.job_ids import job_id

if TYPE_CHECKING:
    from ingest.base.layout import DataLayout
    from ingest.lake.store import Lake
    from ingest.state.db import StateDB
    from ingest.state.ledger import Ledger
    from scoring.audit import AuditLog
    from scoring.jobs.queue_protocol import JobQueue
    from scoring.keys import KeyStore
    from scoring.lifecycle.artifacts import ArtifactStore
    from scoring.lifecycle.champion import ChampionHolder
    from scoring.lifecycle.registry import Registry
    from scoring.lifecycle.runs import RunStore
    from scoring.lifecycle.versions import VersionCache
    from scoring.monitoring.outcomes import Outcomes
    from scoring.monitoring.records_protocol import DriftRecords
    from scoring.sessions import SessionStore
    from scoring.settings import Settings
    from scoring.traffic.store import TrafficStore


@dataclass
class _Serving:
    """What serving predictions needs beyond the stores: made once, on first use."""

    champion: ChampionHolder
    versions: VersionCache


@dataclass
class Model:
    """One served model: its settings view, state database, ledger, registry and runs.

    ``champion`` and ``versions`` are made on first use (they import numpy and pyarrow), once
    per object, so every thread of a process asks the same holder.
    """

    settings: Settings
    db: StateDB  # the model's state database: its ledger, registry index and runs live there
    ledger: Ledger
    registry: Registry
    runs: RunStore
    traffic: TrafficStore  # the shadow/canary setting and its per-day figures
    jobs: JobQueue  # batch jobs: queued here, run by whichever process claims them
    drift: DriftRecords  # the drift of each scored drop, upload, job and window
    outcomes: Outcomes  # labels joined to the answers given, and the realized metrics
    _serving: _Serving | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def name(self) -> str:
        """The model's name, as settings and URLs spell it."""
        return self.settings.name

    @property
    def layout(self) -> DataLayout:
        """Every folder and file of this model's data: inboxes, lake, outbox, locks."""
        return self.settings.layout

    @property
    def artifacts(self) -> ArtifactStore:
        """The store of this model's version files (the registry's; one object per model)."""
        return self.registry.artifacts

    def lake(self, kind: str) -> Lake:
        """The lake of one kind of this model's drops (``train`` or ``score``), as one object.

        Reading and writing lake files goes through it (``ingest.lake.store``), so a lake on
        another filesystem is a change to where this object is built, not to its callers.
        """
        from scoring.storage import lake_store  # Deferred: pyarrow, for commands never reading it

        return lake_store(self.settings, kind)

    def prediction_log(self) -> Lake:
        """The folder of this model's prediction log parts (``scoring.monitoring.predlog``):
        under ``[storage] url`` when set, as the lake is, so every replica logs to one place."""
        from scoring.storage import prediction_log_store  # Deferred: pyarrow, when never read

        return prediction_log_store(self.settings)

    @property
    def champion(self) -> ChampionHolder:
        """The champion this process serves (made on first use; loads nothing until asked)."""
        return self._served().champion

    @property
    def versions(self) -> VersionCache:
        """Every other version, loaded when a call names it."""
        return self._served().versions

    def job_id(self, kind: str) -> str:
        """Name this model's scheduled job of one kind (``retrain``, ``score_sweep``)."""
        return job_id(kind, self.name)

    def using(self, **stores: Any) -> Model:
        """Return this model with some stores replaced (tests hand in their own registry)."""
        return replace(self, **{k: v for k, v in stores.items() if v is not None})

    def stop(self) -> None:
        """Stop this model's serving threads (its champion's polling), when it is no longer
        served; a request still holding it finishes."""
        with self._lock:
            if self._serving is not None:
                self._serving.champion.stop()

    def _served(self) -> _Serving:
        with self._lock:
            if self._serving is None:
                # Deferred: numpy and pyarrow load only where a prediction may need them.
                from scoring.lifecycle.champion import ChampionHolder, poll_seconds_for
                from scoring.lifecycle.versions import VersionCache

                poll = poll_seconds_for(self.db.dialect)  # a server is read less often
                champion = ChampionHolder(self.registry, poll, model=self.name)
                size = self.settings.server.cached_versions
                versions = VersionCache(self.name, self.registry, champion, size)
                self._serving = _Serving(champion, versions)
            return self._serving


@dataclass
class SharedStores:
    """What every model of a data folder shares: API keys, the audit trail, page sessions."""

    db: StateDB  # the shared state database (``shared_db_path``)
    keys: KeyStore
    audit: AuditLog
    sessions: SessionStore


@dataclass
class Models(Mapping[str, Model]):
    """Every served model by name, the default one first, and the stores they share."""

    root: Settings  # the settings as loaded; ``root.name`` is the default model
    by_name: dict[str, Model]
    shared: SharedStores
    # Serializes ``add``/``remove``; readers take no lock: each change swaps in a new dict, so
    # a request iterating or looking up the old one finishes on a consistent set.
    _changing: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __getitem__(self, name: str) -> Model:
        return self.by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.by_name)

    def __len__(self) -> int:
        return len(self.by_name)

    @property
    def default(self) -> Model:
        """The model today's un-named paths and commands mean."""
        return self.by_name[self.root.name]

    def model(self, name: str | None = None) -> Model:
        """Return a model by name (the default for None); a NotFound (404) names the models."""
        found = self.by_name.get(self.root.name if name is None else name)
        if found is None:
            raise NotFound(
                f"no model by that name; this server has: {', '.join(self.by_name)}",
                [{"models": list(self.by_name)}],
            )
        return found

    def using(self, name: str, **stores: Any) -> Models:
        """Return the set with one model's stores replaced (tests hand in their own)."""
        return replace(self, by_name={**self.by_name, name: self.by_name[name].using(**stores)})

    def add(self, model: Model, root: Settings) -> None:
        """Serve one more model (a reload found its section); ``root`` is the new settings."""
        with self._changing:
            if model.name in self.by_name:
                raise ValueError(f"model {model.name!r} is already served")
            self.by_name = {**self.by_name, model.name: model}
            self.root = root

    def remove(self, name: str, root: Settings) -> Model:
        """Stop serving one model (its section was removed); later lookups answer 404."""
        with self._changing:
            if name == self.root.name:
                raise ValueError(f"model {name!r} is the default model: it needs a restart")
            found = self.by_name[name]
            self.by_name = {k: v for k, v in self.by_name.items() if k != name}
            self.root = root
            return found
