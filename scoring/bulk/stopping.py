"""A failed file's stop signal to its tasks: one Dask event per scratch folder.

Dask cannot stop a running task, and a cancelled one that a worker already took runs on; a
snapshot of what the workers hold misses a task handed to one a moment after it. Either could
write into a failed file's scratch folder after the client removed it, leaving a hidden
``.parts`` folder behind. So the client sets the scratch's event and waits, uncancelled, for
every task to end; each task looks at the event before its first write and between batches
(at most every ``LOOK_SECONDS``) and stops with ``Stopped``. When every task has ended, nothing
can write there any more: the client removes the scratch, then clears the event (the scheduler
forgets a cleared event nobody waits on).

(The waits are each future's own: ``distributed.wait`` looks for a default client, and ours is
never the default, so it raised at once, hidden by a ``suppress`` that was meant for timeouts.)
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from ingest.base.errors import IngestError

LOOK_SECONDS = 0.5  # a task asks the scheduler at most this often (one round trip each)
WAIT_SECONDS = 120.0  # how long a failed file waits for its tasks to end before cleaning up


class Stopped(IngestError):
    """A task saw its file's stop signal and ended without writing more."""


def event_name(scratch: str) -> str:
    """Name the event of one scratch folder (unique: the folder's name carries a token)."""
    return f"dropscore-stop:{scratch}"


class Look:
    """Ask, on a worker, whether the scratch's file was stopped; at most every LOOK_SECONDS.

    Off a Dask worker (a function called in-process, as a test does) there is nothing to ask.
    """

    def __init__(self, scratch: str) -> None:
        self._event: Any = _event(scratch)
        self._next = 0.0

    def __call__(self) -> None:
        """Raise ``Stopped`` when the file was stopped; the first call always asks."""
        if self._event is None or time.monotonic() < self._next:
            return
        if self._event.is_set():
            raise Stopped("the file's scoring was stopped: another part failed")
        self._next = time.monotonic() + LOOK_SECONDS


def _event(scratch: str) -> Any:
    """Return the scratch's event when running in a Dask task, else None."""
    try:
        from distributed import Event, get_worker

        get_worker()
    except (ImportError, ValueError):
        return None
    return Event(event_name(scratch))


def stop_tasks(client: Any, futures: list[Any], scratch: str) -> bool:
    """Signal the tasks of a failed file and wait until each has ended (see the module).

    Futures are not cancelled before they end: a cancelled future's wait returns at once
    while its task may still run. Past ``WAIT_SECONDS`` the rest are cancelled (a task that
    long between two looks is not expected); then False is returned, and the event must stay
    set: a task a worker took before the cancel runs on and must still see it.
    """
    from distributed import Event

    with contextlib.suppress(Exception):  # a lost scheduler: the waits below say so
        Event(event_name(scratch), client=client).set()
    deadline = time.monotonic() + WAIT_SECONDS
    for future in futures:  # each future's own client (``distributed.wait`` needs a default)
        with contextlib.suppress(Exception):  # its error is the point, or already reported
            future.exception(timeout=max(0.0, deadline - time.monotonic()))
    left = [future for future in futures if not future.done()]
    client.cancel(left)
    return not left


def forget(client: Any, scratch: str) -> None:
    """Clear the scratch's event once the scratch is gone (the scheduler then drops it)."""
    from distributed import Event

    with contextlib.suppress(Exception):
        Event(event_name(scratch), client=client).clear()
