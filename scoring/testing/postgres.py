"""A real PostgreSQL server for the tests and benches: one per session, a fresh database per test.

Debian's binaries (``initdb``/``pg_ctl`` of the ``postgresql`` package) start a server on a
temporary folder and a free port on 127.0.0.1; when the tests run as root the server runs as the
``postgres`` user (PostgreSQL refuses root), which owns the folder. Without the Debian binaries
the binaries of the ``pgserver`` wheel from PyPI stand in (``DROPSCORE_TEST_PGSERVER=1`` forces
them), so ``make test`` needs no root on a fresh machine.
The server is tuned for throw-away data (no fsync), never for a deployment.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scoring.testing.ports import HOST, free_port

START_TIMEOUT_SECONDS = 120  # a loaded 2-core machine; the start measures 1-3 s on a quiet one
SERVER_OPTIONS = (
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    " -c max_connections=300 -c shared_buffers=32MB"
)


def _binaries() -> Path | None:
    """Find the folder of Debian's PostgreSQL programs, or None when they are not installed."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


@dataclass
class PostgresServer:
    """One running server: its folder, its port, and the databases made on it."""

    folder: Path
    port: int
    user: str
    stop_server: Callable[[], None]  # stops the server process
    host: str = HOST
    _numbers: itertools.count[int] = field(default_factory=itertools.count)

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        """Give a SQLAlchemy URL of one database of this server (psycopg 3)."""
        auth = self.user if password is None else f"{self.user}:{password}"
        return f"postgresql+psycopg://{auth}@{self.host}:{self.port}/{database}"

    def create_database(self, prefix: str = "t") -> str:
        """Make a fresh empty database (from template0: a copy, fast) and return its URL."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._numbers)}"
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0'.encode())
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a test's database, closing whatever the test left connected to it."""
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())

    def conninfo(self, database: str) -> str:
        """Give libpq's form of a database's address, for a plain psycopg connection."""
        return f"host={self.host} port={self.port} user={self.user} dbname={database}"

    def stop(self) -> None:
        """Stop the server at once and remove its folder (kept if the stop fails: it may run)."""
        self.stop_server()
        shutil.rmtree(self.folder, ignore_errors=True)

    def info(self) -> dict[str, Any]:
        """Say how another process reaches this server (``attached_postgres`` reads it)."""
        return {"folder": str(self.folder), "port": self.port, "user": self.user}


def attached_postgres(info: dict[str, Any]) -> PostgresServer:
    """Reach a server another process runs and stops (``scoring.testing.shared``'s host)."""

    def not_ours() -> None:
        raise RuntimeError("this PostgreSQL belongs to the session's host process: it stops it")

    return PostgresServer(Path(info["folder"]), int(info["port"]), str(info["user"]), not_ours)


@contextmanager
def hosted_postgres(folder: Path) -> Iterator[dict[str, Any]]:
    """Run a server for the session's other processes; yield how they reach it, then stop it."""
    server = start_postgres()
    try:
        yield server.info()
    finally:
        server.stop()


def start_postgres() -> PostgresServer:
    """Start a server: Debian's binaries when installed, else the ``pgserver`` wheel."""
    binaries = _binaries()
    if binaries is not None and not os.environ.get("DROPSCORE_TEST_PGSERVER"):
        return _start_debian(binaries)
    return _start_pgserver()


def _as_owner(command: list[str]) -> list[str]:
    """Run a PostgreSQL program as ``postgres`` when we are root (the server refuses root)."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _start_debian(binaries: Path) -> PostgresServer:
    folder = Path(tempfile.mkdtemp(prefix="dropscore-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data, port = folder / "data", free_port()
    user = "postgres" if os.geteuid() == 0 else _current_user()
    subprocess.run(
        _as_owner(
            [str(binaries / "initdb"), "-D", str(data), "-U", user, "-A", "trust", "--no-sync"]
        ),
        check=True,
        capture_output=True,
        timeout=START_TIMEOUT_SECONDS,
    )
    options = f"-p {port} -c listen_addresses={HOST} -k {folder} {SERVER_OPTIONS}"
    log = folder / "server.log"
    pg_ctl = [str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options]
    subprocess.run(
        _as_owner([*pg_ctl, "-w", "-t", str(START_TIMEOUT_SECONDS), "start"]),
        check=True,
        capture_output=True,
        timeout=START_TIMEOUT_SECONDS,
    )

    def stop() -> None:
        subprocess.run(
            _as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
            timeout=START_TIMEOUT_SECONDS,
        )

    return PostgresServer(folder, port, user, stop)


def _current_user() -> str:
    import getpass

    return getpass.getuser()


def _start_pgserver() -> PostgresServer:
    """Start the PostgreSQL the ``pgserver`` wheel brings, the way Debian's is started here.

    The wheel's own start listens on a socket file only; its binaries are those of any
    PostgreSQL, so they run exactly as Debian's do: a temporary folder, a port on 127.0.0.1.
    """
    from pgserver._commands import POSTGRES_BIN_PATH

    return _start_debian(Path(POSTGRES_BIN_PATH))
