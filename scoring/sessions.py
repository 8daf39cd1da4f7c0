"""Dashboard sessions kept server-side, in ``state.db`` next to the keys they were opened with.

The cookie carries only a random session id (32 bytes, ``secrets.token_urlsafe``); the table
keeps its SHA-256 (a random token needs no slow hash, as for keys), the key it was opened with
(name and stored hash) and when it started and was last used. So a session ends for good when
the row goes: at logout, when its key is revoked, and after the idle or the absolute lifetime;
a copy of the cookie kept after that opens nothing. A lookup is one primary-key read; the
last-used time is written at most once a minute per session, not on every request. The table is
the one every release made (``sessions``, its index ``sessions_key``), in SQLAlchemy Core.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import (
    REAL,
    Column,
    Connection,
    Double,
    Index,
    MetaData,
    Table,
    Text,
    bindparam,
    func,
    or_,
    select,
)
from sqlalchemy.types import TypeEngine

from ingest.state.db import Migration, StateDB, create_tables

STORE = "sessions"  # this store's name in schema_versions

META = MetaData()
_SECONDS: TypeEngine[float] = Double().with_variant(
    REAL(), "sqlite"
)  # REAL as every release made it in SQLite
SESSIONS = Table(
    "sessions",
    META,
    # nullable as "TEXT PRIMARY KEY" made it in SQLite: the same table, column for column
    Column("id_hash", Text, primary_key=True, nullable=True),
    Column("key_name", Text, nullable=False),
    Column("key_hash", Text, nullable=False),
    Column("created_at", _SECONDS, nullable=False),
    Column("seen_at", _SECONDS, nullable=False),
)
Index("sessions_key", SESSIONS.c.key_hash)

STEPS = [Migration(1, "the sessions table", create_tables(META, "sessions"))]
# How stale the stored last-used time may get: idle expiry is this much coarser than the setting.
TOUCH_SECONDS = 60.0


@dataclass(frozen=True)
class Lifetimes:
    """How long a session lives: unused (idle) and at most, from login (absolute)."""

    idle_seconds: float
    max_seconds: float


# Built once: every dashboard request looks its session up, and building the statement cost as
# much as running it (measured 536 µs per lookup built per call, 261 µs prebuilt, loaded box).
_FIND = select(SESSIONS.c.key_hash, SESSIONS.c.created_at, SESSIONS.c.seen_at).where(
    SESSIONS.c.id_hash == bindparam("digest")
)


def hash_id(session_id: str) -> str:
    """Return what the table keeps of a session id (its SHA-256, hex)."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def end_sessions_of(conn: Connection, key_hash: str) -> int:
    """End every session opened with a key (by its stored hash), inside the caller's transaction."""
    return conn.execute(SESSIONS.delete().where(SESSIONS.c.key_hash == key_hash)).rowcount


class SessionStore:
    """The ``sessions`` table: ``Sessions`` in a state database."""

    def __init__(
        self, db: StateDB, lifetimes: Lifetimes, clock: Callable[[], float] = time.time
    ) -> None:
        self.lifetimes = lifetimes
        self._clock = clock
        self.db = db

    def _ready(self) -> StateDB:
        self.db.migrate(STORE, STEPS)  # once per process and database
        return self.db

    def start(self, key_name: str, key_hash: bytes) -> str:
        """Open a session for a key and return its id, the only time it is readable."""
        session_id = secrets.token_urlsafe(32)
        stamp = self._clock()
        with self._ready().write() as conn:
            self._sweep(conn, stamp)
            conn.execute(
                SESSIONS.insert().values(
                    id_hash=hash_id(session_id),
                    key_name=key_name,
                    key_hash=key_hash.hex(),
                    created_at=stamp,
                    seen_at=stamp,
                )
            )
        return session_id

    def find(self, session_id: str) -> bytes | None:
        """Return the stored hash of the key a live session was opened with; end it if expired."""
        stamp = self._clock()
        digest = hash_id(session_id)
        with self._ready().read() as conn:
            row = conn.execute(_FIND, {"digest": digest}).first()
        if row is None:
            return None
        found = row._mapping
        created_at, seen_at = float(found["created_at"]), float(found["seen_at"])
        if self._expired(created_at, seen_at, stamp):
            self.end(session_id)
            return None
        if stamp - seen_at >= TOUCH_SECONDS:
            with self._ready().write() as conn:
                conn.execute(
                    SESSIONS.update().where(SESSIONS.c.id_hash == digest).values(seen_at=stamp)
                )
        return bytes.fromhex(found["key_hash"])

    def end(self, session_id: str) -> None:
        """End one session (logout, or its key no longer works)."""
        with self._ready().write() as conn:
            conn.execute(SESSIONS.delete().where(SESSIONS.c.id_hash == hash_id(session_id)))

    def count(self) -> int:
        """Return how many sessions are stored, expired ones not yet swept included."""
        with self._ready().read() as conn:
            return int(conn.execute(select(func.count()).select_from(SESSIONS)).scalar_one())

    def _expired(self, created_at: float, seen_at: float, stamp: float) -> bool:
        return (
            stamp - seen_at > self.lifetimes.idle_seconds
            or stamp - created_at > self.lifetimes.max_seconds
        )

    def _sweep(self, conn: Connection, stamp: float) -> None:
        """Drop expired sessions, so the table holds only sessions that could still be used."""
        conn.execute(
            SESSIONS.delete().where(
                or_(
                    SESSIONS.c.seen_at < stamp - self.lifetimes.idle_seconds,
                    SESSIONS.c.created_at < stamp - self.lifetimes.max_seconds,
                )
            )
        )
