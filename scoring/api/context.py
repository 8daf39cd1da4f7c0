"""What every view needs, built once by ``create_app`` and reached through one accessor.

Each served model has its own settings view, registry, champion and ledger
(``ModelServices``). A request names its model in the path (``/models/<name>/…``, the protocols'
``<name>``) or means the default one; ``services().registry`` and the like answer for the model
of the request in hand, so a view written for one model serves each of many.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import current_app, g, has_request_context

from ingest.base.logs import bound
from scoring.api.monitoring import Monitoring
from scoring.errors import NotFound
from scoring.inference.dataplane import Dataplane
from scoring.lifecycle.champion import ChampionHolder
from scoring.lifecycle.registry import Registry
from scoring.lifecycle.versions import VersionCache
from scoring.settings import Settings

if TYPE_CHECKING:
    from ingest.state.ledger import Ledger
    from scoring.keys import KeyRing

# The request's model, as the URL named it (set by create_app's URL value preprocessor).
MODEL_KEY = "model_name"
# The request's bound log fields (``ingest.base.logs.bound``), ended when the request ends.
LOG_FIELDS_KEY = "log_fields"


@dataclass
class ModelServices:
    """One served model: its settings view, registry, champion holder, other versions, ledger."""

    settings: Settings
    registry: Registry
    champion: ChampionHolder
    ledger: Ledger
    # Every other version, loaded when a call names it (built from the fields above).
    versions: VersionCache = field(init=False, repr=False)

    def __post_init__(self) -> None:
        size = self.settings.server.cached_versions
        self.versions = VersionCache(self.name, self.registry, self.champion, size)

    @property
    def name(self) -> str:
        """The model's name, as settings and URLs spell it."""
        return self.settings.name


@dataclass
class Services:
    """The per-app objects reached via ``services()``: every model's, and what they share."""

    root: Settings  # the settings as loaded; ``root.name`` is the default model
    models: dict[str, ModelServices]
    monitoring: Monitoring
    # Liveness of what this process runs besides the API (watcher, scheduler), by name.
    probes: dict[str, Callable[[], dict[str, Any]]] = field(default_factory=dict)
    # The keys this process accepts (set by create_app once auth is registered).
    keyring: KeyRing | None = None
    # The scoring step every protocol goes through, and its observers (metrics first).
    dataplane: Dataplane = field(default_factory=Dataplane)

    def model(self, name: str | None = None) -> ModelServices:
        """Return a model by name, else the request's, else the default; 404 names the models."""
        if name is None:
            name = g.get(MODEL_KEY) if has_request_context() else None
        if name is None:
            name = self.root.name
        found = self.models.get(name)
        if found is None:
            raise NotFound(
                f"no model by that name; this server has: {', '.join(self.models)}",
                [{"models": list(self.models)}],
            )
        return found

    @property
    def settings(self) -> Settings:
        """The settings seen by the request's model."""
        return self.model().settings

    @property
    def registry(self) -> Registry:
        """The request's model's registry."""
        return self.model().registry

    @property
    def champion(self) -> ChampionHolder:
        """The request's model's champion holder."""
        return self.model().champion

    @property
    def ledger(self) -> Ledger:
        """The request's model's file ledger."""
        return self.model().ledger


@dataclass(frozen=True)
class Readiness:
    """Which models can answer now; ``ready`` is what /ready and OIP's server-ready report."""

    versions: dict[str, str | None]  # each model's loaded champion, None while it has none
    broken: list[str]  # models whose registry names a champion this process could not load

    @property
    def ready(self) -> bool:
        """Every champion the registries name is loaded, and at least one model answers.

        A model that has no champion yet (added by ``dropscore init``, waiting for its first
        labelled drop) does not take the others out of a load balancer; one whose champion
        cannot be loaded does.
        """
        return not self.broken and any(v is not None for v in self.versions.values())

    @property
    def waiting(self) -> list[str]:
        """The models with no champion loaded, for the 503's message and the body."""
        return [name for name, version in self.versions.items() if version is None]


def readiness(s: Services) -> Readiness:
    """Look at every model's champion once, for the readiness probes."""
    versions: dict[str, str | None] = {}
    broken = []
    for m in s.models.values():
        loaded = m.champion.peek()
        versions[m.name] = loaded.version if loaded else None
        if loaded is None and m.registry.champion_version() is not None:
            broken.append(m.name)
    return Readiness(versions, broken)


def services() -> Services:
    """Return the current app's services; the one accessor views use, no globals."""
    return current_app.extensions["dropscore"]


def bind_request_model() -> None:
    """Name the request's model in every event logged while it runs (errors, refusals, runs)."""
    name = g.get(MODEL_KEY)
    if name is None:
        return
    unbind_request_model()
    stack = ExitStack()
    stack.enter_context(bound(model=name))
    setattr(g, LOG_FIELDS_KEY, stack)


def unbind_request_model(_exc: BaseException | None = None) -> None:
    """End the request's log fields, so the server's thread carries none to its next request."""
    stack = g.pop(LOG_FIELDS_KEY, None)
    if stack is not None:
        stack.close()
