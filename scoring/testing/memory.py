"""A process's memory as Linux reports it in ``/proc``: one field, its peak, this process's growth.

Read from ``/proc/<pid>/status`` with the standard library, so no test extra is needed: ``VmRSS``
(resident now) and ``VmHWM`` (its high-water mark, per address space, reset at exec).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

POLL = 0.02  # seconds between samples


def status_kb(pid: int, key: str) -> int:
    """Read one ``kB`` field of /proc/<pid>/status; 0 once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class PeakWatch:
    """Poll a process's VmHWM and VmRSS in a thread; ``peak_mb`` is the highest seen.

    With ``high_water=False`` only the resident size is sampled: the peak of the watched window
    alone, not of the process's life so far (its start-up, say).
    """

    def __init__(self, pid: int, poll: float = POLL, high_water: bool = True) -> None:
        self.pid = pid
        self.poll = poll
        self.high_water = high_water
        self.hwm_kb = 0
        self.rss_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.poll)

    def sample(self) -> None:
        """Take one sample now (also called by whoever reaps the process, just before)."""
        if self.high_water:
            self.hwm_kb = max(self.hwm_kb, status_kb(self.pid, "VmHWM"))
        self.rss_kb = max(self.rss_kb, status_kb(self.pid, "VmRSS"))

    def __enter__(self) -> PeakWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def peak_mb(self) -> float:
        """The highest of the high-water mark and the resident size seen, in MB."""
        return max(self.hwm_kb, self.rss_kb) / 1024


def rss_growth(fn: Callable[[], Any], poll: float = 0.01) -> tuple[float, float, Any]:
    """Run fn here; return this process's peak RSS growth in MB, the seconds, and fn's result.

    The resident size is sampled every ``poll`` seconds while fn runs, from before it starts: a
    caller that holds data fn reads in another process shows it as growth.
    """
    pid = os.getpid()
    base = status_kb(pid, "VmRSS")
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(poll):
            peak[0] = max(peak[0], status_kb(pid, "VmRSS"))

    watcher = threading.Thread(target=sample)
    watcher.start()
    started = time.perf_counter()
    try:
        result = fn()
    finally:
        done.set()
        watcher.join()
    return (peak[0] - base) / 1024, time.perf_counter() - started, result
