"""Dashboard sessions kept server-side, in ``state.db`` next to the keys they were opened with.

The cookie carries only a random session id (32 bytes, ``secrets.token_urlsafe``); the table
keeps its SHA-256 (a random token needs no slow hash, as for keys), the key it was opened with
(name and stored hash) and when it started and was last used. So a session ends for good when
the row goes: at logout, when its key is revoked, and after the idle or the absolute lifetime;
a copy of the cookie kept after that opens nothing. A lookup is one primary-key read; the
last-used time is written at most once a minute per session, not on every request, and each
request thread reads through a connection of its own instead of opening one per request.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ingest.state.sqlite import Tables, connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id_hash    TEXT PRIMARY KEY,
    key_name   TEXT NOT NULL,
    key_hash   TEXT NOT NULL,
    created_at REAL NOT NULL,
    seen_at    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_key ON sessions(key_hash);
"""
# How stale the stored last-used time may get: idle expiry is this much coarser than the setting.
TOUCH_SECONDS = 60.0


@dataclass(frozen=True)
class Lifetimes:
    """How long a session lives: unused (idle) and at most, from login (absolute)."""

    idle_seconds: float
    max_seconds: float


def hash_id(session_id: str) -> str:
    """Return what the table keeps of a session id (its SHA-256, hex)."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def end_sessions_of(conn: sqlite3.Connection, key_hash: str) -> int:
    """End every session opened with a key (by its stored hash), inside the caller's transaction."""
    return conn.execute("DELETE FROM sessions WHERE key_hash=?", (key_hash,)).rowcount


class SessionStore:
    """The ``sessions`` table; a connection per call keeps it safe across threads and forks."""

    def __init__(
        self, db_path: Path, lifetimes: Lifetimes, clock: Callable[[], float] = time.time
    ) -> None:
        self.lifetimes = lifetimes
        self._clock = clock
        self._path = db_path
        self._db = Tables(db_path, SCHEMA).connect
        self._reader = threading.local()

    def start(self, key_name: str, key_hash: bytes) -> str:
        """Open a session for a key and return its id, the only time it is readable."""
        session_id = secrets.token_urlsafe(32)
        stamp = self._clock()
        with self._db() as conn:
            self._sweep(conn, stamp)
            conn.execute(
                "INSERT INTO sessions (id_hash, key_name, key_hash, created_at, seen_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (hash_id(session_id), key_name, key_hash.hex(), stamp, stamp),
            )
        return session_id

    def find(self, session_id: str) -> bytes | None:
        """Return the stored hash of the key a live session was opened with; end it if expired."""
        stamp = self._clock()
        digest = hash_id(session_id)
        row = self._lookup().execute(
            "SELECT key_hash, created_at, seen_at FROM sessions WHERE id_hash=?", (digest,)
        ).fetchone()
        if row is None:
            return None
        if self._expired(row["created_at"], row["seen_at"], stamp):
            self.end(session_id)
            return None
        if stamp - row["seen_at"] >= TOUCH_SECONDS:
            with self._db() as conn:
                conn.execute("UPDATE sessions SET seen_at=? WHERE id_hash=?", (stamp, digest))
        return bytes.fromhex(row["key_hash"])

    def end(self, session_id: str) -> None:
        """End one session (logout, or its key no longer works)."""
        with self._db() as conn:
            conn.execute("DELETE FROM sessions WHERE id_hash=?", (hash_id(session_id),))

    def count(self) -> int:
        """Return how many sessions are stored, expired ones not yet swept included."""
        with self._db() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0])

    def _lookup(self) -> sqlite3.Connection:
        """Return this thread's reading connection, opened once per thread and process.

        Opening a connection (and its pragmas) costs about a millisecond; the read itself a few
        microseconds. A session is looked up on every request a page makes, so the request
        threads keep one each; writes still take a connection per call.
        """
        reader = self._reader
        if getattr(reader, "pid", None) != os.getpid():
            with self._db():  # the schema, made once
                pass
            reader.conn = connect(self._path)
            reader.pid = os.getpid()
        conn: sqlite3.Connection = reader.conn
        return conn

    def _expired(self, created_at: float, seen_at: float, stamp: float) -> bool:
        return (
            stamp - seen_at > self.lifetimes.idle_seconds
            or stamp - created_at > self.lifetimes.max_seconds
        )

    def _sweep(self, conn: sqlite3.Connection, stamp: float) -> None:
        """Drop expired sessions, so the table holds only sessions that could still be used."""
        conn.execute(
            "DELETE FROM sessions WHERE seen_at < ? OR created_at < ?",
            (stamp - self.lifetimes.idle_seconds, stamp - self.lifetimes.max_seconds),
        )
