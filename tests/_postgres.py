"""The tests' PostgreSQL server: one per session (``tests/conftest.py``'s ``postgres`` fixture).

Every process of the session (each xdist worker) reaches the same server: the first to ask
starts it through ``scoring.testing.shared`` and the last to leave stops it. Each test still
makes its own database on it (``pg_url``), named by its process id, so workers never collide.
The server itself is ``scoring.testing.postgres``, where the benches reach it too.
"""

from collections.abc import Iterator
from pathlib import Path

from scoring.testing.postgres import PostgresServer, attached_postgres
from scoring.testing.shared import shared

__all__ = ["PostgresServer", "shared_postgres"]


def shared_postgres(session: Path) -> Iterator[PostgresServer]:
    """Yield the session's server (started on first use); leave it for the last user to stop."""
    with shared("postgres", session) as info:
        yield attached_postgres(info)
