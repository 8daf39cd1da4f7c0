"""Where bulk scoring runs: in this process, or batch by batch on a Dask cluster.

There is one code path either way. The client reads and normalizes the input with the ingest
readers in ``batch_rows`` batches (so names, types and bad-row handling never depend on the
engine), an engine maps the per-batch scoring function over those batches and hands the results
back in input order, and the client writes them with the same atomic writer. Only where
``score_batch`` runs changes, so the local and Dask outputs are identical.

On Dask a task names the model's version by its artifact (``scoring.bulk.worker_models``), which
each worker loads once and keeps; at most a few batches per worker thread are in flight, so
memory stays bounded by ``batch_rows`` on both sides. Where the workers can reach a Parquet file
themselves, they read and write it without the client (``scoring.bulk.remote``). The
client is opened on first use, once per process and address, and closed when the process
exits; importing this module starts nothing.
"""

from __future__ import annotations

import atexit
import functools
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from scoring.settings import Settings, require_dask

if TYPE_CHECKING:
    from distributed import Client, Future

    from scoring.bulk.filesystems import Store
    from scoring.bulk.worker_models import ModelRef
    from scoring.lifecycle.registry import Registry

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
    """Score each batch on a Dask worker; results come back in input order.

    With ``refs`` (what ``engine_for`` gives: the model's registry) a task carries the version's
    ``ModelRef`` and each worker loads the artifact once (``scoring.bulk.worker_models``);
    without one (a model the registry does not hold) the model is scattered once per file.
    """

    def __init__(
        self,
        client: Client,
        in_flight: int | None = None,
        *,
        refs: Callable[[Any], ModelRef | None] | None = None,
        store: Store | None = None,
        address: str = "",
    ) -> None:
        self.client = client
        self.in_flight = in_flight
        self.refs = refs
        self.store = store
        self.address = address

    def map_batches(self, fn: BatchFn[R], batches: Iterable[Any], model: Any) -> Batches[R]:
        """Yield ``fn(batch, model)`` for each batch, in order, with a bounded window in flight."""
        client = self.client
        limit = self.in_flight or max(2, IN_FLIGHT_PER_THREAD * sum(client.nthreads().values()))
        ref = self.refs(model) if self.refs is not None else None
        shared = None if ref is not None else client.scatter(model, broadcast=True, hash=False)
        pending: deque[Future] = deque()
        try:
            for batch in batches:
                # Scatter rather than embed: the batch goes straight to a worker (round robin)
                # instead of through the scheduler inside the task graph.
                data = client.scatter(batch, hash=False)
                if ref is not None:
                    task = client.submit(with_model, fn, data, ref, self.store, pure=False)
                else:
                    task = client.submit(fn, data, shared, pure=False)
                pending.append(task)
                del data
                if len(pending) >= limit:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            # Stopped early (an error, a row cap): drop the work still queued for this file.
            if pending:
                client.cancel(list(pending))
            if shared is not None:
                client.cancel([shared])

    def ref(self, model: Any) -> ModelRef | None:
        """Name a loaded model's version for the workers; None when the registry lacks it."""
        return self.refs(model) if self.refs is not None else None


def with_model(fn: BatchFn[R], batch: Any, ref: ModelRef, store: Store | None) -> R:
    """Run ``fn(batch, model)`` on a worker with the model its cache holds for ``ref``."""
    from scoring.bulk.filesystems import Store
    from scoring.bulk.worker_models import current_models

    model = current_models().get(ref, (store or Store()).read_bytes)
    return fn(batch, model)


def engine_for(settings: Settings, *, registry: Registry | None = None) -> Engine:
    """Build the engine ``[scoring] engine`` names; Dask connects on first use per process.

    Pass the serving model's ``registry`` where the caller holds one: without it each use on
    Dask opens the model's state database for the lookup (and closes it after).
    """
    if settings.scoring.engine == "dask":
        from scoring.bulk.filesystems import Store

        address = settings.scoring.dask_address
        refs = functools.partial(registry_ref, settings, registry=registry)
        return DaskEngine(
            dask_client(address), refs=refs, store=Store.of(settings), address=address
        )
    return LocalEngine()


def registry_ref(
    settings: Settings, model: Any, *, registry: Registry | None = None
) -> ModelRef | None:
    """Name a loaded version of the settings' model by its artifact; None if it is not there.

    With no ``registry`` the model's state database is opened for this one lookup and its
    engine disposed after: left open, each scored file would keep a pool (on PostgreSQL, a
    server connection) until the process ends.
    """
    from scoring.models.factory import open_model

    if registry is not None:
        return _ref(settings, registry, model)
    opened = open_model(settings)
    try:
        return _ref(settings, opened.registry, model)
    finally:
        opened.db.dispose()


def _ref(settings: Settings, registry: Registry, model: Any) -> ModelRef | None:
    from scoring.bulk.worker_models import model_ref
    from scoring.errors import DropscoreError

    version = getattr(model, "version", "")
    if not str(version).isdigit():
        return None
    try:
        ref = model_ref(settings.name, registry, int(version))
    except (DropscoreError, OSError):
        return None
    # Only the version in hand: another registry's version of that number is another model.
    return ref if ref.card == getattr(model, "card", None) else None


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
