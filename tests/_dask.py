"""One real Dask cluster per test session: a scheduler and two single-thread worker processes.

Started as an operator would (``dask scheduler``, ``dask worker --nworkers 2 --nthreads 1
--memory-limit 1GiB`` on 127.0.0.1), on first use only, and stopped workers first at the end.
Every process of the session (each xdist worker) uses the same cluster: the first to ask starts
it through ``scoring.testing.shared`` (its logs in ``session/dask``), the last to leave stops it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from scoring.bulk.engines import close_clients
from scoring.testing.checkout import ROOT
from scoring.testing.cluster import Cluster
from scoring.testing.moto import CREDENTIALS
from scoring.testing.shared import shared


@pytest.fixture(scope="session")
def dask_address(shared_session: Path) -> Iterator[str]:
    """Yield the session's scheduler's address (the cluster starts on the session's first use)."""
    # The workers reach the session's moto bucket with its dummy credentials, from their own
    # environment as in production (never from a task); the checkout on their path lets a
    # test's own function (defined in tests/) run as a task.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**CREDENTIALS, "PYTHONPATH": path}
    with shared("dask", shared_session, env) as info:
        yield info["address"]
        close_clients()  # the clients engine_for opened on it, before it stops


__all__ = ["Cluster", "dask_address"]
