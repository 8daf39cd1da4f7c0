"""The tests' PostgreSQL server: one per session (``tests/conftest.py``'s ``postgres`` fixture).

The server itself is ``scoring.testing.postgres``, where the benches reach it too.
"""

from scoring.testing.postgres import PostgresServer, start_postgres

__all__ = ["PostgresServer", "start_postgres"]
