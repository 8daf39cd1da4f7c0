"""Locks: one interface for every named exclusive lock, and its host-local ``flock`` kind.

Some work must happen once at a time: one worker per data folder (``worker.lock``), one retrain
per model (``retrain.lock``), one trainer process per machine (``trainer.lock``), one lake write
per kind and one retry per model (``processing/.lake-<kind>.lock``, ``.retry.lock``). Each asks a
``Locks`` for a lock by name and holds the ``Lock`` it gets, taken at once or not at all
(``try_acquire``) or after waiting (``acquire``). A lock ends with ``release`` (or its ``with``
block) and with the process that holds it, so a kill -9 never leaves one behind. A holder may
describe itself (its pid), for the message a refused process prints (``holder``).

``FileLocks`` is the kind for one machine: a lock is an ``flock`` on a file in one folder, named
by its path below that folder; the kernel drops it when its process dies. ``AdvisoryLocks`` is
the kind for replicas sharing a PostgreSQL state database: ``pg_try_advisory_lock`` (tried
again with backoff to wait) on a connection of its own kept for the lock's life, the name (and the
schema of the database it guards) hashed to the key, the holder's description in the
connection's ``application_name``. It too is exclusive, taken with or without waiting, and
dropped with the session when its process dies: the server sees the socket close at once after
a kill -9, and within seconds after a machine vanished (TCP keepalives and ``tcp_user_timeout``
on both ends of the lock's connection). ``locks_beside`` picks the kind from the database, so a
retrain lock shared by replicas, or leader election, is another ``Locks`` handed to the same
callers, not another way of locking. ``Lock.held`` asks whether a lock still holds (a lost
connection means a lost advisory lock), for a holder that must stop when it is gone.

Two file locks here are no named locks and stay on one machine by nature. A claim locks the
claimed drop itself, so the lock follows the file through its rename (``try_hold``,
``create_held``); ``held_for_writing`` asks the kernel for a read lease to learn whether a writer
still has a file open. They live here because this is the one module that speaks to ``fcntl``.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import signal
import threading
import time
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

if TYPE_CHECKING:
    from ingest.state.db import StateDB

try:  # POSIX advisory locks; elsewhere every lock is granted, as claims always were
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]


class Lock(Protocol):
    """An exclusive lock this process holds until it lets go or dies."""

    @property
    def name(self) -> str:
        """Say which lock this is."""
        ...

    def release(self) -> None:
        """Let go of the lock; a second call does nothing."""
        ...

    def held(self) -> bool:
        """Tell whether the lock still holds (an advisory lock ends with its connection)."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None: ...


class Locks(Protocol):
    """Named exclusive locks: files on one machine today, a database's advisory locks tomorrow."""

    def try_acquire(self, name: str, holder: str | None = None) -> Lock | None:
        """Take the lock if it is free, else None at once; ``holder`` says who took it."""
        ...

    def acquire(self, name: str, holder: str | None = None) -> Lock:
        """Take the lock, waiting as long as another process holds it."""
        ...

    def holder(self, name: str) -> str | None:
        """Say who holds the lock, as it described itself; None when it said nothing.

        Meant for a refused ``try_acquire``: a free lock may still show its last holder.
        """
        ...


class FileLock:
    """An ``flock`` held through an open descriptor; the kernel drops it if the process dies."""

    def __init__(self, name: str, fd: int) -> None:
        self._name = name
        self._fd: int | None = fd

    @property
    def name(self) -> str:
        """Say which lock this is (its name, or the locked file's path)."""
        return self._name

    def release(self) -> None:
        """Unlock and close the descriptor; a second call does nothing."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        if fcntl is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
        with contextlib.suppress(OSError):
            os.close(fd)

    def held(self) -> bool:
        """Tell whether the lock still holds: until released (the kernel keeps it till then)."""
        return self._fd is not None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.release()


class FileLocks:
    """Named locks on one machine: an ``flock`` on a lock file below ``folder``, named by its path.

    The lock files stay when released (an empty file is cheap, and removing one another process
    has just opened would let two processes lock two different files of one name).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def try_acquire(self, name: str, holder: str | None = None) -> FileLock | None:
        """Take the lock if it is free, else None at once; ``holder`` is written into its file."""
        return _hold(name, self._open(name), wait=False, holder=holder)

    def acquire(self, name: str, holder: str | None = None) -> FileLock:
        """Take the lock, waiting as long as another process holds it."""
        lock = _hold(name, self._open(name), wait=True, holder=holder)
        if lock is None:  # pragma: no cover - a waiting flock returns only once it holds the lock
            raise BlockingIOError(f"lock {name!r} was not taken")
        return lock

    def holder(self, name: str) -> str | None:
        """Say who holds the lock, as written by its holder; None when nothing was written."""
        try:
            text = self.path(name).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None
        return text or None

    def path(self, name: str) -> Path:
        """Give the lock file of ``name``: a relative path that stays below the folder."""
        relative = PurePosixPath(name)
        if not relative.parts or relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"lock name {name!r}: expected a relative path below the lock folder")
        return self.folder.joinpath(*relative.parts)

    def _open(self, name: str) -> int:
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


def try_hold(path: Path) -> FileLock | None:
    """Lock an existing file itself without waiting: None when another holder has it.

    Raises FileNotFoundError when the file is gone. The descriptor is read-only, so
    ``held_for_writing`` never mistakes the holder for a writer, and the lock follows the file
    through a rename.
    """
    return _hold(str(path), os.open(path, os.O_RDONLY), wait=False)


def create_held(path: Path) -> FileLock:
    """Create a new empty file and lock it before anything is written to it.

    The lock is held on a read-only descriptor, so ``held_for_writing`` never mistakes the
    holder for a writer (the content is written through a descriptor of its own).
    """
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o644)
    lock = _hold(str(path), fd, wait=False)
    if lock is None:  # another process locked the file in the instant after its creation
        raise BlockingIOError(f"{path.name} is locked by another process")
    return lock


def held_for_writing(path: Path) -> bool:
    """Tell whether some process holds the file open for writing; False where it cannot be told.

    Linux grants a read lease only when no process has the file open for writing; the lease is
    released at once. Its break notice is set to SIGURG (ignored by default), so a writer that
    opens the file in that instant can never stop this process. Elsewhere (not Linux, a file of
    another owner, a network share) the answer is False and stability alone decides.
    """
    lease = getattr(fcntl, "F_SETLEASE", None)
    if lease is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, lease, fcntl.F_RDLCK)
    except OSError as exc:
        return exc.errno in (errno.EAGAIN, errno.EBUSY)
    else:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, lease, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


def _hold(name: str, fd: int, *, wait: bool, holder: str | None = None) -> FileLock | None:
    """Lock an open descriptor exclusively, then write ``holder`` into the file if given;
    None (the descriptor closed) when another process holds it."""
    try:
        if not _flock(fd, wait=wait):
            os.close(fd)
            return None
        if holder is not None:
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder.encode("utf-8"), 0)
    except BaseException:
        os.close(fd)
        raise
    return FileLock(name, fd)


def _flock(fd: int, *, wait: bool) -> bool:
    if fcntl is None:  # pragma: no cover - not POSIX
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def locks_beside(db: StateDB) -> Locks:
    """Give the locks kept with a state database: lock files beside its SQLite file, or the
    PostgreSQL server's advisory locks.

    A lock that guards what a database holds (a model's retrain lock guards its runs) lives
    where the database lives, so every process that shares the database shares the lock.
    """
    if db.dialect == "postgresql":
        return AdvisoryLocks(db)
    if db.path is None:
        raise ValueError(f"no locks for a {db.dialect} state database")
    return FileLocks(db.path.parent)


# The server drops a lock holder's session this long after its machine went silent: keepalive
# probes from the server's end (idle, interval, count) and a cap on unacknowledged data.
_SERVER_KEEPALIVES = (
    "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3"
    " -c tcp_user_timeout=10000"
)
_RETRY_CAP_SECONDS = 0.5  # longest pause between two tries for a held advisory lock
_APPLICATION = "dropscore:"  # application_name of a lock's connection: this, then its holder
_HOLDER = (
    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND l.classid::bigint = :high AND l.objid::bigint = :low"
)


class AdvisoryLock:
    """A PostgreSQL session-level advisory lock, held by the one connection that took it."""

    def __init__(self, name: str, conn: Any, key: int) -> None:
        self._name = name
        self._conn: Any = conn
        self._key = key

    @property
    def name(self) -> str:
        """Say which lock this is."""
        return self._name

    def held(self) -> bool:
        """Ask the server over the lock's own connection; False once that connection is gone."""
        conn = self._conn
        if conn is None:
            return False
        try:
            conn.execute("SELECT 1").fetchone()
        except Exception:  # any failure of the connection is a lost session, so a lost lock
            return False
        return True

    def release(self) -> None:
        """Unlock and close the connection; a second call does nothing."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):  # a broken connection's lock is gone already
            conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
        with contextlib.suppress(Exception):
            conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.release()


class AdvisoryLocks:
    """Named locks across machines: advisory locks of the PostgreSQL server holding ``db``.

    Names are scoped to the database's schema (a model's retrain lock is its own), and each lock
    is held on a connection opened for it (autocommit, keepalives on both ends), never a pooled
    one: the lock lives exactly as long as that session.
    """

    def __init__(self, db: StateDB) -> None:
        self.db = db
        # One thread per name tries for a lock the server holds elsewhere; the others wait here,
        # with no connection, so a backlog of waiters never adds up to max_connections.
        self._gates: dict[str, threading.Lock] = {}
        self._gates_lock = threading.Lock()

    def key(self, name: str) -> int:
        """Give the advisory key of a lock's name in this database's schema."""
        from ingest.state.db import advisory_key

        return advisory_key("lock", self.db.schema or "", name)

    def try_acquire(self, name: str, holder: str | None = None) -> AdvisoryLock | None:
        """Take the lock if no session holds it, else None at once."""
        return self._take(name, holder, "SELECT pg_try_advisory_lock(%s)")

    def acquire(self, name: str, holder: str | None = None) -> AdvisoryLock:
        """Take the lock, waiting as long as another session holds it.

        The wait is try-lock and backoff on one connection per name, never a session parked in
        ``pg_advisory_lock`` per waiting thread: other threads of this process wanting the same
        lock queue on a gate in memory, so waiting costs the server one connection per name.
        """
        with self._gate(name):
            key = self.key(name)
            conn = self._connect(holder)
            try:
                for attempt in itertools.count(1):
                    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
                    if row and row[0]:
                        return AdvisoryLock(name, conn, key)
                    time.sleep(min(0.01 * 2 ** min(attempt, 10), _RETRY_CAP_SECONDS))
            except BaseException:
                conn.close()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _gate(self, name: str) -> threading.Lock:
        """Give the in-process gate of one lock's name, made on first use."""
        with self._gates_lock:
            return self._gates.setdefault(name, threading.Lock())

    def holder(self, name: str) -> str | None:
        """Say who holds the lock, as its holder described itself; None when free or unsaid."""
        from sqlalchemy import text  # Deferred: commands that take file locks never load it

        key = self.key(name)
        with self.db.read() as conn:
            found = conn.execute(
                text(_HOLDER), {"high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF}
            ).scalar()
        if not found or not str(found).startswith(_APPLICATION):
            return None
        return str(found)[len(_APPLICATION) :] or None

    def _take(self, name: str, holder: str | None, query: str) -> AdvisoryLock | None:
        key = self.key(name)
        conn = self._connect(holder)
        try:
            row = conn.execute(query, (key,)).fetchone()
        except BaseException:
            conn.close()
            raise
        if not row or not row[0]:
            conn.close()
            return None
        return AdvisoryLock(name, conn, key)

    def _connect(self, holder: str | None) -> Any:
        """Open the lock's own connection, with the engine's address and keepalives."""
        import psycopg  # Deferred: only a PostgreSQL state database needs the driver

        from ingest.state.db import PG_KEEPALIVES

        engine = self.db.engine
        _args, params = engine.dialect.create_connect_args(engine.url)
        params.update(PG_KEEPALIVES)
        params["tcp_user_timeout"] = 10_000  # ms a send may go unacknowledged before it fails
        params["options"] = _SERVER_KEEPALIVES
        params["application_name"] = (_APPLICATION + (holder or ""))[:63]
        return psycopg.connect(autocommit=True, **params)
