"""A real Dask cluster on 127.0.0.1: a ``dask scheduler`` and ``dask worker`` processes.

Used by the tests (one cluster per session) and by ``bench.dask_score`` (1 and 2 workers), so
both start the parts exactly as an operator would: separate processes, a TCP address, workers
with their own memory limit. Workers stop before the scheduler, so none is left reconnecting.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scoring.testing.memory import status_kb
from scoring.testing.ports import HOST, free_port
from scoring.testing.processes import Process, started
from scoring.testing.waiting import wait_for

START_SECONDS = 120.0  # a loaded 2-core machine imports distributed slowly


@dataclass
class Cluster:
    """A running cluster: its address and the processes that make it."""

    address: str
    scheduler: Process
    workers: list[Process] = field(default_factory=list)

    def worker_pids(self) -> list[int]:
        """Ask each worker for its process id (the processes scoring runs in, not nannies)."""
        from distributed import Client

        with Client(self.address, set_as_default=False, timeout=30) as client:
            return sorted(client.run(_pid).values())

    def peak_rss_kb(self) -> int:
        """Return the largest high-water mark of resident memory among the workers, in kB."""
        return max((status_kb(pid, "VmHWM") for pid in self.worker_pids()), default=0)


def _pid() -> int:
    return os.getpid()


def _dask(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("dask")), *args]


@contextmanager
def dask_cluster(
    folder: Path,
    nworkers: int = 2,
    *,
    nthreads: int = 1,
    memory_limit: str = "1GiB",
    env: Mapping[str, str] | None = None,
) -> Iterator[Cluster]:
    """Start a scheduler and ``nworkers`` worker processes; stop workers, then the scheduler.

    ``env`` is added to the processes' environment (an object store's ``AWS_*`` credentials:
    workers take them from there, never from a task; a ``PYTHONPATH``: the scheduler, too,
    unpickles the task graph).
    """
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    address = f"tcp://{HOST}:{port}"
    with ExitStack() as stack:
        scheduler = stack.enter_context(
            _process(
                _dask("scheduler", "--host", HOST, "--port", str(port), "--no-dashboard"),
                folder / "scheduler.log",
                env,
            )
        )
        cluster = Cluster(address, scheduler)
        args = _dask(
            "worker", address, "--host", HOST, "--nworkers", str(nworkers),
            "--nthreads", str(nthreads), "--memory-limit", memory_limit,
            "--no-dashboard", "--local-directory", str(folder / "workers"),
        )  # fmt: skip
        worker = stack.enter_context(_process(args, folder / "workers.log", env))
        cluster.workers.append(worker)
        _wait_workers(cluster, nworkers)
        yield cluster
        # ExitStack stops in reverse: the workers first, then the scheduler.


@contextmanager
def hosted_cluster(folder: Path) -> Iterator[dict[str, Any]]:
    """Run the session's cluster for its other processes (in this process's environment)."""
    with dask_cluster(folder) as cluster:
        yield {"address": cluster.address}


def _wait_workers(cluster: Cluster, n: int) -> None:
    """Wait for ``n`` workers with one client (it retries the connection while the scheduler
    starts); fail at once if a process exits."""
    from distributed import Client

    def alive() -> bool:
        if cluster.scheduler.poll() is not None or cluster.workers[0].poll() is not None:
            raise RuntimeError("a dask process exited at start; see its log beside the cluster")
        return True

    def connected() -> Client | None:
        alive()
        try:
            return Client(cluster.address, set_as_default=False, timeout=10)
        except OSError:
            return None

    client = wait_for(connected, timeout=START_SECONDS, interval=0.2, what="the dask scheduler")
    with client:
        wait_for(
            lambda: alive() and len(client.scheduler_info(n_workers=-1)["workers"]) >= n,
            timeout=START_SECONDS,
            interval=0.1,
            what=f"{n} dask workers",
        )


def _process(
    args: list[str], log: Path, env: Mapping[str, str] | None = None
) -> AbstractContextManager[Process]:
    """Run one of the cluster's commands in this environment plus ``env``."""
    return started(args, {**os.environ, **(env or {})}, log)
