"""Reload the settings file in a running process: models added or removed, nothing restarted.

``SIGHUP`` (``serve``, ``worker``, ``api``) and ``POST /admin/reload`` both land here. The file is
read and validated whole first: an invalid one is refused in one line and nothing changes. A new
``[models.X]`` section is then served (its folders made, its inboxes watched and its jobs added
where this process runs the background work), a removed one stops (its jobs and inboxes first,
then its routes answer 404), and the other models are never touched. What cannot change in a
running process (the server's port, its threads, the data folder, an existing model's own
keys, which model is the default) is reported as needing a restart, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scoring.models.factory import open_model
from scoring.models.model import Models
from scoring.settings import (
    PER_MODEL_SECTIONS,
    SECTIONS,
    ModelEntry,
    Settings,
    SettingsError,
    load_settings,
)

if TYPE_CHECKING:
    from scoring.service.runtime import Background

log = logging.getLogger("dropscore")


# Where create_app keeps the app's reloader (app.extensions), for the endpoint and the signal.
RELOADER_KEY = "dropscore.reloader"


def reload_on_sighup(reloader: Reloader) -> None:
    """Reload the settings on SIGHUP, in a thread of its own: a first training of a new model
    must not hold up the thread that received the signal (it serves the API in ``serve``)."""

    def handler(_signum: int, _frame: Any) -> None:
        log.info("reloading settings", extra={"signal": "SIGHUP"})
        threading.Thread(
            target=reloader.reload_logged, name="dropscore-reload", daemon=True
        ).start()

    signal.signal(signal.SIGHUP, handler)


class ReloadRefused(Exception):
    """The settings file cannot be used; the running configuration stays. One line why."""


@dataclass(frozen=True)
class ReloadReport:
    """What one reload changed, and what it could not change without a restart."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    needs_restart: tuple[str, ...]  # each a "[section] key" or "[models.X]" that changed
    models: tuple[str, ...]  # every model served after the reload

    def to_dict(self) -> dict[str, Any]:
        """Return the report as the JSON answer and the log line's fields."""
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "needs_restart": list(self.needs_restart),
            "models": list(self.models),
        }


class Reloader:
    """Apply a fresh settings file to a running process's models (and background work)."""

    def __init__(
        self,
        load: Callable[[], Settings],
        models: Models,
        background: Background | None = None,
    ) -> None:
        self._load = load
        self._models = models
        self._background = background
        self._lock = threading.Lock()  # one reload at a time
        # Called after a reload changed the served models (the app's spec follows them).
        self.on_change: list[Callable[[], None]] = []

    def reload(self) -> ReloadReport:
        """Read the settings again and apply what can be applied; ReloadRefused if invalid."""
        with self._lock:
            try:
                new = self._load()
            except SettingsError as exc:
                raise ReloadRefused(f"settings not reloaded: {exc}") from None
            old = self._models.root
            added = [n for n in new.model_names if n not in old.model_names]
            removed = [n for n in old.model_names if n not in new.model_names and n != old.name]
            restart = needs_restart(old, new)
            kept = {n: e for n, e in _entries(old).items() if n not in removed}
            root = dataclasses.replace(old, models={**kept, **{n: new.models[n] for n in added}})
            for name in removed:
                self._remove(name, root)
            for name in added:
                self._add(name, root)
            report = ReloadReport(
                tuple(added), tuple(removed), tuple(restart), tuple(self._models)
            )
            if added or removed:
                for hook in self.on_change:
                    hook()
            log.info("settings reloaded", extra=report.to_dict())
            return report

    def reload_logged(self) -> None:
        """Reload from a signal: the outcome goes to the log (a refusal in one line)."""
        try:
            self.reload()
        except ReloadRefused as exc:
            log.error(str(exc))
        except Exception:
            log.exception("settings reload failed; the running configuration stays")

    def _add(self, name: str, root: Settings) -> None:
        """Open one new model; where background work runs, prepare it (folders, recovery, first
        training) and watch it before it is served."""
        model = open_model(root, name, server=self._models.shared.db)
        if self._background is not None:
            self._background.add(model, root)
        self._models.add(model, root)

    def _remove(self, name: str, root: Settings) -> None:
        """Stop one model's jobs and inboxes, then its routes (they answer 404 from here)."""
        if self._background is not None:
            self._background.remove(name, root)
        self._models.remove(name, root).stop()


def changed_outside_models(old: Settings, new: Settings) -> list[str]:
    """Name each changed key outside the model sections (``[server] port``, …)."""
    return [
        f"[{section}] {field.name}"
        for section in SECTIONS
        if section not in PER_MODEL_SECTIONS
        for field in dataclasses.fields(getattr(old, section))
        if getattr(getattr(old, section), field.name) != getattr(getattr(new, section), field.name)
    ]


def needs_restart(old: Settings, new: Settings) -> list[str]:
    """Name each changed setting a running process cannot apply: every key outside the model
    sections, an existing model's own section, and which model is the default."""
    changed = changed_outside_models(old, new)
    if new.name != old.name:
        changed.append(f"the default model ({old.name!r} → {new.name!r}, the first section)")
    old_entries, new_entries = _entries(old), _entries(new)
    changed += [
        old.for_model(name).section("training")
        for name, entry in old_entries.items()
        if name in new_entries and new_entries[name] != entry
    ]
    return changed


def _entries(settings: Settings) -> dict[str, Any]:
    """Every model's own settings by name (one for a file without ``[models.X]`` sections)."""
    if settings.models:
        return dict(settings.models)
    return {settings.name: ModelEntry(settings.model, settings.training)}


def reread_file(
    settings: Settings,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    check_params: bool = True,
) -> Settings:
    """Read the file these settings came from again (with the same overrides), seen by the
    same model; SettingsError if it is now invalid, or if there was no file."""
    if settings.source is None:
        raise SettingsError("this service was started without a settings file: nothing to reload")
    again = load_settings(settings.source, overrides=overrides, check_params=check_params)
    return again.for_model(settings.name)
