"""Where bulk scoring runs: in this process, or batch by batch on a Dask cluster.

There is one code path either way. The client reads and normalizes the input with the ingest
readers in ``batch_rows`` batches (so names, types and bad-row handling never depend on the
engine), an engine maps the per-batch scoring function over those batches and hands the results
back in input order, and the client writes them with the same atomic writer. Only where
``score_batch`` runs changes, so the local and Dask outputs are identical.

On Dask the model is scattered to every worker once per file and at most a few batches per
worker thread are in flight, so memory stays bounded by ``batch_rows`` on both sides. The
client is opened on first use, once per process and address, and closed when the process
exits; importing this module starts nothing.
"""

from __future__ import annotations

import atexit
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from scoring.settings import Settings, require_dask

if TYPE_CHECKING:
    from distributed import Client, Future

R = TypeVar("R")
BatchFn = Callable[[Any, Any], R]
Batches = Generator[R, None, None]

IN_FLIGHT_PER_THREAD = 2


class Engine(Protocol):
    """Runs a function over batches: in this process, or on a dask cluster."""

    def map_batches(self, fn: BatchFn[R], batches: Iterable[Any], model: Any) -> Batches[R]:
        """Yield ``fn(batch, model)`` for each batch, in input order."""
        ...


class LocalEngine:
    """Score in the calling thread: the default, and the reference for every other engine."""

    def map_batches(self, fn: BatchFn[R], batches: Iterable[Any], model: Any) -> Batches[R]:
        """Yield ``fn(batch, model)`` for each batch, in input order."""
        for batch in batches:
            yield fn(batch, model)


class DaskEngine:
    """Score each batch on a Dask worker; results come back in input order."""

    def __init__(self, client: Client, in_flight: int | None = None) -> None:
        self.client = client
        self.in_flight = in_flight

    def map_batches(self, fn: BatchFn[R], batches: Iterable[Any], model: Any) -> Batches[R]:
        """Yield ``fn(batch, model)`` for each batch, in order, with a bounded window in flight."""
        client = self.client
        limit = self.in_flight or max(2, IN_FLIGHT_PER_THREAD * sum(client.nthreads().values()))
        shared = client.scatter(model, broadcast=True, hash=False)
        pending: deque[Future] = deque()
        try:
            for batch in batches:
                # Scatter rather than embed: the batch goes straight to a worker (round robin)
                # instead of through the scheduler inside the task graph.
                data = client.scatter(batch, hash=False)
                pending.append(client.submit(fn, data, shared, pure=False))
                del data
                if len(pending) >= limit:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            # Stopped early (an error, a row cap): drop the work still queued for this file.
            if pending:
                client.cancel(list(pending))
            client.cancel([shared])


def engine_for(settings: Settings) -> Engine:
    """Build the engine ``[scoring] engine`` names; Dask connects on first use per process."""
    if settings.scoring.engine == "dask":
        return DaskEngine(dask_client(settings.scoring.dask_address))
    return LocalEngine()


class _Clients:
    """The clients this process opened, by address; one per address, closed at exit."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: dict[str, Client] = {}

    def get(self, address: str) -> Client:
        """Return the client for address, opening it on first use."""
        with self.lock:
            client = self.open.get(address)
            if client is None:
                if not self.open:
                    atexit.register(self.close)
                client = self.open[address] = _connect(address)
            return client

    def close(self) -> None:
        """Close every client opened so far; a later use opens a fresh one."""
        with self.lock:
            clients, self.open = list(self.open.values()), {}
        for client in clients:
            client.close()


# The one process-wide handle on Dask ("a client once per process"): constructing it opens
# nothing; the first ``get`` connects, and the lock makes concurrent first uses share one client.
_CLIENTS = _Clients()


def dask_client(address: str) -> Client:
    """Return this process's client for address (empty: a local cluster), opening it once."""
    require_dask()
    return _CLIENTS.get(address)


def close_clients() -> None:
    """Close every Dask client this process opened (tests; exit does it by itself)."""
    _CLIENTS.close()


def _connect(address: str) -> Client:
    # Deferred: Dask is an optional extra, imported only when a client is first needed.
    from distributed import Client

    if address:
        return Client(address, set_as_default=False)
    # A local cluster of worker processes owned by (and closed with) this client; no dashboard.
    return Client(dashboard_address=None, set_as_default=False)
