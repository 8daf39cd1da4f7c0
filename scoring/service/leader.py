"""Leader election for the scheduler: exactly one process across replicas runs the schedules.

Every ``serve``/``worker`` process starts a ``Leader`` over its ``Schedule``. The leader is the
process that holds the ``scheduler.lock`` kept with the shared state database
(``ingest.state.locks.locks_beside``):

- **SQLite**: an ``flock`` beside ``state.db``. The worker lock already lets one process per data
  folder run, so that process is the leader at once, as it always was.
- **PostgreSQL**: a session-level advisory lock held on one dedicated connection. A standby
  tries again every ``retry_seconds`` (5). A leader killed with -9 loses its session as the kernel
  closes its socket, and the server frees the lock at once; a leader whose machine vanished
  (power, network) is dropped by the server's keepalive probes on that connection within about
  20 s (``tcp_keepalives_*`` and ``tcp_user_timeout``, set on the lock's session). So a standby
  takes over within 30 s of any death. Keepalives rather than ``idle_session_timeout``: the
  lock's connection is idle by design, and keepalives end it only when its peer is gone.
- The leader checks its own lock every ``retry_seconds`` (a ``SELECT 1`` on that connection,
  bounded by the client's ``tcp_user_timeout``): a leader cut off from the database stops its
  scheduler without waiting for its jobs, so it never runs a schedule beside the new leader.

No scheduled run is lost or doubled on a takeover: the jobs and their next run times live in
APScheduler's job store in the shared database, written by whichever process leads; the new
leader reads them, runs within its grace a run the old one missed (``coalesce``: once), and the
retrain lock in the database refuses a retrain the old leader still runs.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any, Protocol

from ingest.state.locks import Lock, Locks

log = logging.getLogger("dropscore.leader")

LEADER_LOCK = "scheduler.lock"
RETRY_SECONDS = 5.0  # a standby's retry, and a leader's check of its own lock
LEADER, STANDBY = "leader", "standby"


class Schedulable(Protocol):
    """What a leader starts and stops: ``schedules.scheduler.Schedule``."""

    def start(self) -> None:
        """Start running the schedules."""
        ...

    def stop(self, wait: bool = True) -> None:
        """Stop running them (``wait``: for a running job to end)."""
        ...

    def status(self) -> dict[str, Any]:
        """Report the schedules, for /health."""
        ...


def holder_name() -> str:
    """Describe this process to a refused one: its machine and pid."""
    return f"{socket.gethostname()} pid {os.getpid()}"


class Leader:
    """Run ``schedule`` while this process holds the scheduler lock; stand by otherwise."""

    def __init__(
        self, locks: Locks, schedule: Schedulable, retry_seconds: float = RETRY_SECONDS
    ) -> None:
        self.locks = locks
        self.schedule = schedule
        self.retry_seconds = retry_seconds
        self._lock: Lock | None = None
        self._stop = threading.Event()
        self._changing = threading.Lock()  # one election step at a time (the thread, ``stop``)
        self._thread: threading.Thread | None = None

    @property
    def role(self) -> str:
        """Say whether this process runs the schedules (``leader``) or waits (``standby``)."""
        return LEADER if self._lock is not None else STANDBY

    def start(self) -> None:
        """Try to lead at once (a lone process starts its scheduler before serving), then keep
        trying, or checking the lock, from a daemon thread."""
        self._step()
        if self.role == STANDBY:
            log.info("scheduler standby", extra={"leader": self.locks.holder(LEADER_LOCK)})
        self._thread = threading.Thread(target=self._watch, name="leader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop trying; a leader stops its scheduler (after a running job) and lets go."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._changing:
            lock, self._lock = self._lock, None
            if lock is not None:
                try:
                    self.schedule.stop()
                finally:
                    lock.release()

    def status(self) -> dict[str, Any]:
        """Report this process's role and its scheduler, for /health's ``scheduler``."""
        return {"role": self.role, **self.schedule.status()}

    def _watch(self) -> None:
        while not self._stop.wait(self.retry_seconds):
            try:
                self._step()
            except Exception:  # a database that is down: try again at the next tick
                log.exception("scheduler election step failed")

    def _step(self) -> None:
        with self._changing:
            if self._stop.is_set() and self._thread is not None:
                return
            if self._lock is None:
                self._try_to_lead()
            elif not self._lock.held():
                self._stand_down()

    def _try_to_lead(self) -> None:
        lock = self.locks.try_acquire(LEADER_LOCK, holder=holder_name())
        if lock is None:
            return
        try:
            self.schedule.start()
        except BaseException:
            lock.release()
            raise
        self._lock = lock
        log.info("scheduler leader", extra={"holder": holder_name()})

    def _stand_down(self) -> None:
        """The lock's session is gone: another process may lead now, so stop at once."""
        lock, self._lock = self._lock, None
        log.warning("scheduler lock lost; standing by", extra={"holder": holder_name()})
        try:
            self.schedule.stop(wait=False)
        finally:
            if lock is not None:
                lock.release()
