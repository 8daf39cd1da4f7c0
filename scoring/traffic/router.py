"""What the dataplane asks about a model's traffic: which version answers, and what to count.

``Traffic.choose`` picks the version of a request that names none: the champion, or in canary
mode the challenger for a fraction of requests — by a hash of the request's sticky key, so one
key always gets one version, else at random. ``Traffic.observe`` is a dataplane observer: it
counts each version's answers and, in shadow mode, hands the champion's event to the shadow
thread. The setting is read from the model's state database at most once a second per process
(``REFRESH_SECONDS``), so every replica follows a change within a second.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from scoring.inference.dataplane import KeyOf, Scored
from scoring.lifecycle.predictor import LoadedModel
from scoring.lifecycle.versions import VersionCache
from scoring.models.model import Models
from scoring.traffic.figures import SERVED
from scoring.traffic.setting import OFF, TrafficSetting, resolve
from scoring.traffic.shadow import ShadowWorker

log = logging.getLogger("dropscore.traffic")

REFRESH_SECONDS = 1.0  # how stale a process's copy of the setting may be
# The routes whose answers are predictions (explanations and bulk files are not shadowed).
PREDICTING = frozenset({"predict", "invocations", "kserve", "infer"})
HASH_SPACE = float(2**64)


@dataclass(frozen=True)
class Current:
    """A model's setting as this process follows it, with ``latest`` resolved to a number."""

    setting: TrafficSetting
    challenger: int | None  # None: no version to send traffic to (then it is off)
    read_at: float


def in_canary(model: str, fraction: float, key: str | None) -> bool:
    """Say whether a request goes to the challenger: by its key's hash, else at random."""
    if fraction <= 0.0:
        return False
    if key is None:
        return random.random() < fraction
    digest = hashlib.blake2b(f"{model}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / HASH_SPACE < fraction


def sampled(fraction: float) -> bool:
    """Say whether a request is shadowed (every one at 1.0)."""
    return fraction >= 1.0 or random.random() < fraction


class Traffic:
    """Every served model's traffic, as one process follows it: the choice and the counts."""

    def __init__(
        self,
        models: Models,
        default_key: KeyOf | None = None,
        scoring: Callable[[], bool] | None = None,
    ) -> None:
        self.models = models
        self.default_key = default_key  # where a protocol passing no key finds one (a header)
        # Whether the request in hand scores rows: a read (a protocol's metadata, readiness)
        # describes the champion, never a canary drawn at random.
        self.scoring = scoring
        self.worker = ShadowWorker(
            lambda name: models.model(name).traffic,
            lambda name, version: models.model(name).versions.get(version),
        )
        self._current: dict[str, Current] = {}
        self._lock = threading.Lock()

    def current(self, name: str) -> Current:
        """Return a model's setting, read again when this process's copy is a second old."""
        found = self._current.get(name)
        if found is not None and time.monotonic() - found.read_at < REFRESH_SECONDS:
            return found
        fresh = self._read(name)
        with self._lock:
            self._current[name] = fresh
        return fresh

    def forget(self, name: str) -> None:
        """Drop this process's copy of a model's setting (it was just changed here)."""
        with self._lock:
            self._current.pop(name, None)

    def choose(self, versions: VersionCache, key_of: KeyOf | None = None) -> LoadedModel:
        """Pick who answers a request naming no version: the champion, or the canary."""
        champion = versions.champion.current()
        now = self.current(versions.name)
        setting = now.setting
        if setting.mode != "canary" or now.challenger is None:
            return champion
        if self.scoring is not None and not self.scoring():
            return champion
        finder = key_of or self.default_key
        key = finder(setting.key) if finder is not None else None
        if not in_canary(versions.name, setting.fraction, key):
            return champion
        try:
            return versions.get(now.challenger)
        except Exception:  # a version gone, a file that no longer loads: the champion answers
            log.warning(
                "canary challenger unavailable; the champion answers",
                exc_info=True,
                extra={"model": versions.name, "version": now.challenger},
            )
            return champion

    def observe(self, event: Scored) -> None:
        """Count a version's answer; in shadow mode, queue the champion's for the challenger."""
        if event.protocol not in PREDICTING or event.features is None:
            return
        version = int(event.version)
        self.worker.count(event.model, version, event.rows, event.seconds)
        now = self.current(event.model)
        setting = now.setting
        if setting.mode != "shadow" or now.challenger is None or now.challenger == version:
            return
        champion = self.models.model(event.model).champion.peek()
        if champion is None or champion.version != event.version:
            return  # a call that named another version: not the champion's traffic
        if sampled(setting.fraction):
            self.worker.offer(event, now.challenger)

    def failed(self, name: str, version: str) -> None:
        """Count a request a version could not answer (the error itself goes to the client)."""
        if version.isdigit():
            self.worker.error(name, int(version), SERVED)

    def stop(self) -> None:
        """Stop the shadow thread after writing what it holds."""
        self.worker.stop()

    def _read(self, name: str) -> Current:
        model = self.models.model(name)
        try:
            setting = model.traffic.get()
        except Exception:  # an unreadable setting must not stop the champion answering
            log.exception("could not read the traffic setting", extra={"model": name})
            setting = OFF
        challenger: int | None = None
        if setting.mode != OFF.mode:
            challenger = resolve(setting, model.registry.champion_version(), model.versions.known())
        return Current(setting, challenger, time.monotonic())
