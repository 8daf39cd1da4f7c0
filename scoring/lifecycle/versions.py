"""Every registered version of one model, loaded on demand for the calls that name a version.

The champion is the holder's instance (always loaded, never evicted here). Any other version —
a challenger, a rejected or an archived one — is loaded the first time a request names it and
kept in a small least-recently-used cache (``[server] cached_versions`` per model), so comparing
it with the champion on live traffic costs one load, not one per request. Concurrent first
calls for one version wait for a single load rather than each reading the files.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

from scoring.errors import NotFound
from scoring.lifecycle.champion import ChampionHolder, load_version
from scoring.lifecycle.predictor import LoadedModel
from scoring.lifecycle.registry import Registry

MAX_DIGITS = 18  # a version is a SQLite integer; longer strings are no version


class VersionCache:
    """One model's versions by number: the champion from its holder, others loaded and kept."""

    def __init__(self, name: str, registry: Registry, champion: ChampionHolder, size: int) -> None:
        self.name = name
        self.registry = registry
        self.champion = champion
        self.size = max(1, size)
        self.loads = 0  # versions this cache read from disk (the holder loads the champion)
        self._models: OrderedDict[int, LoadedModel] = OrderedDict()
        self._pid = os.getpid()
        self._lock = threading.Lock()  # guards _models, _loading and loads
        self._loading: dict[int, threading.Lock] = {}  # one gate per version being loaded

    def get(self, version: int | str) -> LoadedModel:
        """Return the named version, loading it once if needed; 404 names the versions there are."""
        number = self._number(version)
        champion = self.champion.peek()
        if champion is not None and champion.version == str(number):
            return champion
        if self._pid != os.getpid():  # forked (gunicorn): a lock held in the parent stays held
            self._pid, self._lock, self._loading = os.getpid(), threading.Lock(), {}
        with self._lock:
            model = self._models.get(number)
            if model is not None:
                self._models.move_to_end(number)
                return model
            gate = self._loading.setdefault(number, threading.Lock())
        try:
            with gate:  # the first caller loads; the others wait here, then find it cached
                with self._lock:
                    model = self._models.get(number)
                if model is None:
                    self._check_exists(number)
                    model = load_version(self.registry, number)
                    with self._lock:
                        self.loads += 1
                        self._models[number] = model
                        while len(self._models) > self.size:
                            self._models.popitem(last=False)
        finally:
            with self._lock:
                self._loading.pop(number, None)
        return model

    def cached(self) -> list[str]:
        """Return the versions held besides the champion, least recently used first."""
        with self._lock:
            return [str(v) for v in self._models]

    def known(self) -> list[int]:
        """Return every registered version of this model, oldest first."""
        return [r.version for r in self.registry.list()]

    def _number(self, version: int | str) -> int:
        if isinstance(version, int):
            return version
        text = version.strip()
        if text.isascii() and text.isdigit() and len(text) <= MAX_DIGITS:
            return int(text)
        raise self._missing(None)

    def _check_exists(self, number: int) -> None:
        if number not in self.known():
            raise self._missing(number)

    def _missing(self, number: int | None) -> NotFound:
        """The 404 listing the versions; it repeats the one asked for only as a parsed number
        (a client's text is described, never echoed)."""
        known = self.known()
        has = f"its versions are {', '.join(map(str, known))}" if known else "it has no version yet"
        asked = f"no version {number}" if number is not None else "no version by that name"
        return NotFound(
            f"model {self.name!r} has {asked}; {has}",
            [{"model": self.name, "versions": [str(v) for v in known]}],
        )
