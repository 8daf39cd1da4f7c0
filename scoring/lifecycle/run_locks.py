"""The locks of a retrain: the model's retrain lock, and the machine's one trainer slot.

A retrain holds its model's retrain lock from the moment its run is queued until the run is
recorded as ended, so a second retrain — from the schedule, ``POST /train``, ``dropscore train``,
any process — is refused (``RetrainBusy`` naming the run that holds it) rather than run twice.
The lock is kept with the model's runs (``Runs.locks``: beside its ``state.db`` today), so every
reader of the runs can tell a run whose process died (the lock is free) from a live one.

Each model retrains under its own lock, so with several models on one schedule all their trainers
would start at once, each as heavy as the machine allows. The trainer slot makes them take turns.
It guards this machine's memory and cores, so it stays a lock file in the data folder whatever
keeps the runs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from ingest.base.layout import RETRAIN_LOCK_FILE, TRAINER_LOCK_FILE, DataLayout
from ingest.state.locks import FileLocks, Lock
from scoring.lifecycle.runs import RetrainBusy, Runs


def take_retrain(runs: Runs, patience: float = 2.0) -> Lock:
    """Take the model's retrain lock, or raise RetrainBusy naming the run that holds it.

    A run is recorded as finished just before its lock is released; when no run is unfinished,
    the holder is finishing (or just starting), so wait up to ``patience`` seconds for it.
    """
    deadline = time.monotonic() + patience
    while True:
        lock = runs.locks.try_acquire(RETRAIN_LOCK_FILE)
        if lock is not None:
            return lock
        holder = runs.running()
        if holder is None and time.monotonic() < deadline:
            time.sleep(0.02)
            continue
        which = f"run {holder.id} ({holder.trigger})" if holder else "another retrain"
        raise RetrainBusy(f"a retrain is already running: {which}; retry when it ends")


@contextlib.contextmanager
def trainer_slot(
    layout: DataLayout, waiting: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the data folder's one trainer slot while a trainer process runs.

    The run stays ``running`` while it waits for the slot, and ``waiting`` hears why.
    Predictions never wait for it: they run in the serving process.
    """
    slots = FileLocks(layout.root)
    lock = slots.try_acquire(TRAINER_LOCK_FILE)
    if lock is None:
        if waiting is not None:
            waiting("waiting for another model's trainer to finish")
        lock = slots.acquire(TRAINER_LOCK_FILE)
    with lock:
        yield
