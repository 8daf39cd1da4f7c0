"""What every view needs, built once by ``create_app`` and reached through one accessor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import current_app

from scoring.api.monitoring import Monitoring
from scoring.lifecycle.champion import ChampionHolder
from scoring.lifecycle.registry import Registry
from scoring.settings import Settings

if TYPE_CHECKING:
    from ingest.ledger import Ledger
    from scoring.keys import KeyRing


@dataclass
class Services:
    """The per-app objects (settings, registry, champion, metrics) reached via ``services()``."""

    settings: Settings
    registry: Registry
    champion: ChampionHolder
    monitoring: Monitoring
    ledger: Ledger
    # Liveness of what this process runs besides the API (watcher, scheduler), by name.
    probes: dict[str, Callable[[], dict[str, Any]]] = field(default_factory=dict)
    # The keys this process accepts (set by create_app once auth is registered).
    keyring: KeyRing | None = None


def services() -> Services:
    """Return the current app's services; the one accessor views use, no globals."""
    return current_app.extensions["dropscore"]
