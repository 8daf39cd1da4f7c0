"""Connections shared fairly between the worker processes of one `dropscore api`.

Every worker polls the one listening socket its master opened, and the first to wake took the
whole burst: 16 keep-alive clients (wrk -c16) all landed on one of two workers in 4 runs of 8,
which then served at half the machine's speed with a longer tail, while the other worker idled.
Keep-alive clients stay where they landed, so the split at connect time decides the whole run.

So each worker publishes how many connections it holds in a small table the master made before
it forked them (shared memory, a few doubles per worker; written at every turn of its loop), and
takes a waiting connection only while it holds no more than the least loaded live worker, plus
a slack that grows with the count (a burst of a thousand is still taken in batches). Otherwise
it pauses its loop a moment and looks again (``scoring.service.front``), and takes the
connection anyway once it has waited a quarter of a second: a sibling slow to take its share
never keeps a client waiting long. For its first ``STARTING_SECONDS`` a worker also leaves their
share to the siblings not yet serving. A worker that stops publishing for ``STALE_SECONDS``
(dead, or stuck) no longer counts. The numbers are read without a lock; a stale read costs at
most one connection's imbalance.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any

SLOTS = 64  # workers a master may run at once, restarts included (a dead one's slot is reused)
# After its start, how long a worker leaves their share to siblings not yet serving (they fork
# together; the first one ready took a whole burst of clients while the second loaded its app).
STARTING_SECONDS = 2.0
STALE_SECONDS = 1.0  # a worker silent this long (its loop turns at least twice a second) is gone
PID, COUNT, BEAT = range(3)  # the fields of a worker's slot


class Balance:
    """The shared table of every worker's connection count, and one worker's view of it."""

    def __init__(self, workers: int, slots: int = SLOTS) -> None:
        # Made in the master, before the fork: each worker inherits the same memory.
        self._table: Any = multiprocessing.RawArray("d", slots * 3)
        self._lock: Any = multiprocessing.Lock()  # guards claiming a slot, nothing else
        self._slots = slots
        self._workers = workers  # how many the master runs
        self._mine: int | None = None  # this process's slot (each forked worker claims its own)
        self._joined = 0.0

    def join(self) -> None:
        """Claim a slot for this worker: a free one, or one whose worker is gone."""
        pid, now = os.getpid(), time.monotonic()
        if not self._lock.acquire(timeout=1.0):  # a worker killed while claiming held it
            self._mine = None  # then this one accepts freely, as a worker without a table
            return
        try:
            for slot in range(self._slots):
                owner = int(self._table[slot * 3 + PID])
                if owner == 0 or owner == pid or not self._live(slot, now):
                    self._table[slot * 3 + PID] = pid
                    self._table[slot * 3 + COUNT] = 0
                    self._table[slot * 3 + BEAT] = now
                    self._mine, self._joined = slot, now
                    return
        finally:
            self._lock.release()
        self._mine = None  # every slot taken by a live worker: this one accepts freely

    def leave(self) -> None:
        """Free this worker's slot (it stops serving)."""
        if self._mine is not None:
            self._table[self._mine * 3 + PID] = 0
            self._mine = None

    def publish(self, held: int) -> float:
        """Say that this worker holds ``held`` connections and is alive (each turn of its loop)."""
        now = time.monotonic()
        if self._mine is not None:
            base = self._mine * 3
            self._table[base + COUNT] = held
            self._table[base + BEAT] = now
        return now

    def may_accept(self, held: int) -> bool:
        """Publish that this worker holds ``held`` connections; say whether it takes one more."""
        now = self.publish(held)
        if self._mine is None:
            return True
        others = [
            self._table[slot * 3 + COUNT]
            for slot in range(self._slots)
            if slot != self._mine and self._table[slot * 3 + PID] and self._live(slot, now)
        ]
        if len(others) < self._workers - 1 and now - self._joined < STARTING_SECONDS:
            others.append(0)  # a sibling still starting holds nothing yet: leave it its share
        if not others:
            return True
        least = min(others)
        return held < least + slack(least)

    def _live(self, slot: int, now: float) -> bool:
        pid = int(self._table[slot * 3 + PID])
        if pid == 0 or now - self._table[slot * 3 + BEAT] > STALE_SECONDS:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # a reused pid of another user's: not our worker
            return False
        return True


def slack(least: float) -> int:
    """How far ahead of the least loaded worker one may be: 1 for a few, a batch for a flood."""
    return 1 + int(least) // 16
