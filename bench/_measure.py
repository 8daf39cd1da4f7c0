"""Run one process and measure it: wall time and its own peak RSS (VmHWM polled, wait4 reaped).

Peak RSS is the child's own high-water mark: ``VmHWM`` from ``/proc/<pid>/status`` polled every
20 ms (it is per address space and starts afresh at exec, so nothing of the harness leaks in),
cross-checked with an RSS sample at the same rate and the kernel's ``ru_maxrss``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from scoring.testing.memory import POLL, PeakWatch, status_kb

LIMIT_SECONDS = 1800.0  # no single measured process may run longer than this

_live: list[subprocess.Popen[bytes]] = []  # children to end on the way out, whatever happens


@dataclass
class Result:
    name: str
    rows: int
    seconds: float
    peak_mb: float
    cpu_seconds: float = 0.0  # user + system CPU of the process (wait4), when measured

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def measure(
    name: str, cmd: list[str], env: dict[str, str], rows: int, log: Path, cwd: Path | None = None
) -> Result:
    """Run cmd as a fresh process; wall time and its own peak RSS (see the module docstring)."""
    with open(log, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
        _live.append(proc)
        watch = PeakWatch(proc.pid)
        try:
            # Reap with wait4 ourselves so the last VmHWM sample is taken just before exit
            # and the kernel's own maxrss for this child comes back as a cross-check.
            deadline = time.monotonic() + LIMIT_SECONDS
            with watch:
                while True:
                    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                    if pid:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{name} ran longer than {LIMIT_SECONDS:.0f}s")
                    watch.sample()
                    time.sleep(POLL)
            seconds = time.perf_counter() - started
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            end(proc)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}):\n{log.read_text()[-3000:]}")
    # ru_maxrss may include this harness's own memory when the child was spawned with vfork
    # (Linux folds the old address space's high-water mark in at exec), so it is used only
    # when it cannot be ours: when it exceeds this process's own high-water mark.
    kernel_mb = usage.ru_maxrss / 1024
    own_mb = status_kb(os.getpid(), "VmHWM") / 1024
    peak = max(watch.peak_mb, kernel_mb if kernel_mb > own_mb else 0.0)
    return Result(name, rows, seconds, peak, usage.ru_utime + usage.ru_stime)


def end(proc: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """Stop a child we started (and its own children, e.g. gunicorn workers), by pid."""
    if proc in _live:
        _live.remove(proc)
    if proc.returncode is not None:
        return
    try:
        import psutil

        kids = psutil.Process(proc.pid).children(recursive=True)
    except Exception:  # already gone
        kids = []
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace)
    for kid in kids:
        with contextlib.suppress(Exception):
            kid.kill()


def track(proc: subprocess.Popen[bytes]) -> None:
    """Remember a child started elsewhere (a server) so ``end_all`` stops it too."""
    _live.append(proc)


def end_all(grace: float = 5.0) -> None:
    """Stop every child still running (on the way out, whatever happened)."""
    for proc in list(_live):
        end(proc, grace=grace)
