"""Named API keys with a role: the store in ``state.db`` and the ring each API process checks.

A key is ``ds_`` plus 32 random bytes (``secrets.token_urlsafe``), shown once when it is made and
kept only as its SHA-256. A slow password hash (argon2, bcrypt) exists to make guessing a
low-entropy password expensive; a 256-bit random token cannot be guessed, so a fast hash is as
safe here and costs microseconds instead of milliseconds on every request. Keys listed in
``[server] api_keys`` keep working as ``admin`` keys named ``settings-1``, ``settings-2``…; they are
hashed in memory at start and never written anywhere.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import logging
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ingest.state.sqlite import Tables, transaction
from scoring.audit import now
from scoring.errors import Conflict, NotFound, ValidationFailed
from scoring.sessions import SCHEMA as SESSIONS_SCHEMA
from scoring.sessions import end_sessions_of

log = logging.getLogger("dropscore.keys")

# Each role can do what the roles before it can, and more.
ROLES = ("predict", "operate", "admin")
PREFIX = "ds_"
SETTINGS_PREFIX = "settings-"
# Keys typed into settings must be at least this long: a short one can be guessed (ours are 46).
MIN_KEY_LENGTH = 16
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.@-]{0,63}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    hash       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_live_name ON api_keys(name) WHERE revoked_at IS NULL;
"""


@dataclass(frozen=True)
class Identity:
    """Who sent a request: a key's name and role."""

    name: str
    role: str


@dataclass(frozen=True)
class KeyInfo:
    """A stored key as ``dropscore keys list`` shows it; the hash never leaves the store."""

    name: str
    role: str
    created_at: str
    revoked_at: str | None


def new_key() -> str:
    """Make a key that cannot be guessed, recognisable by its prefix in logs and secret scanners."""
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> bytes:
    """Hash a key for storage and lookup; SHA-256 suffices for random tokens (module docstring)."""
    return hashlib.sha256(key.encode()).digest()


def role_allows(have: str, need: str) -> bool:
    """Say whether a key of role ``have`` may call an endpoint that needs role ``need``."""
    return ROLES.index(have) >= ROLES.index(need)


def check_role(role: str) -> str:
    """Return a known role, or raise a 422 naming the ones there are."""
    if role not in ROLES:
        raise ValidationFailed(f"role {role!r} is not a role; expected one of {', '.join(ROLES)}")
    return role


def check_name(name: str) -> str:
    """Return a usable key name, or raise a 422 saying what a name may hold."""
    if not NAME_PATTERN.fullmatch(name):
        raise ValidationFailed(
            f"key name {name!r}: use 1-64 lower-case letters, digits and . _ @ -,"
            " starting with a letter or digit"
        )
    if name.startswith(SETTINGS_PREFIX):
        raise ValidationFailed(f"key names starting {SETTINGS_PREFIX!r} are the settings' keys")
    return name


class KeyStore:
    """The ``api_keys`` table; a connection per call keeps it safe across threads and forks."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self._db = Tables(db_path, _SCHEMA + SESSIONS_SCHEMA).connect

    def add(self, name: str, role: str) -> str:
        """Store a new key under ``name`` and return it: the only time it is ever readable."""
        check_name(name)
        check_role(role)
        key = new_key()
        with self._db() as conn, transaction(conn):
            if conn.execute(
                "SELECT 1 FROM api_keys WHERE name=? AND revoked_at IS NULL", (name,)
            ).fetchone():
                raise Conflict(f"a key named {name!r} exists; revoke it first to replace it")
            conn.execute(
                "INSERT INTO api_keys (name, role, hash, created_at) VALUES (?, ?, ?, ?)",
                (name, role, hash_key(key).hex(), now()),
            )
        return key

    def revoke(self, name: str) -> None:
        """Stop a key from working and end its dashboard sessions at once; the row stays, so the
        audit trail still names it."""
        with self._db() as conn, transaction(conn):
            row = conn.execute(
                "SELECT hash FROM api_keys WHERE name=? AND revoked_at IS NULL", (name,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no live key named {name!r}")
            conn.execute(
                "UPDATE api_keys SET revoked_at=? WHERE name=? AND revoked_at IS NULL",
                (now(), name),
            )
            end_sessions_of(conn, row["hash"])

    def list(self, include_revoked: bool = False) -> list[KeyInfo]:
        """Return keys oldest first, without their hashes."""
        where = "" if include_revoked else "WHERE revoked_at IS NULL"
        with self._db() as conn:
            rows = conn.execute(
                f"SELECT name, role, created_at, revoked_at FROM api_keys {where} ORDER BY id"
            ).fetchall()
        return [KeyInfo(r["name"], r["role"], r["created_at"], r["revoked_at"]) for r in rows]

    def live_hashes(self) -> builtins.list[tuple[bytes, Identity]]:
        """Return the hash and identity of every key that works now."""
        with self._db() as conn:
            rows = conn.execute(
                "SELECT name, role, hash FROM api_keys WHERE revoked_at IS NULL"
            ).fetchall()
        return [(bytes.fromhex(r["hash"]), Identity(r["name"], r["role"])) for r in rows]


def settings_entries(keys: list[str]) -> list[tuple[bytes, Identity]]:
    """Hash the plain ``[server] api_keys`` as admin keys named ``settings-1``, ``settings-2``…"""
    return [
        (hash_key(key), Identity(f"{SETTINGS_PREFIX}{i}", "admin"))
        for i, key in enumerate(keys, start=1)
    ]


def identify(token: str, entries: tuple[tuple[bytes, Identity], ...]) -> Identity | None:
    """Find the key a token is, comparing against every entry so timing reveals no index."""
    digest = hash_key(token)
    found = None
    for stored, identity in entries:
        if hmac.compare_digest(digest, stored):
            found = identity
    return found


class KeyRing:
    """The keys one process accepts, re-read from the store at most every ``refresh_seconds``.

    A key added or revoked with the CLI takes effect within that time in every running process,
    while a request costs one hash and a few comparisons, not a query. A failed re-read keeps the
    keys already loaded: auth never falls open because the database was briefly busy.
    """

    def __init__(
        self,
        store: KeyStore,
        plain_keys: list[str],
        refresh_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        self._static = tuple(settings_entries(plain_keys))
        self._entries: tuple[tuple[bytes, Identity], ...] | None = None
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def entries(self) -> tuple[tuple[bytes, Identity], ...]:
        """Return every accepted key, re-reading the store when the copy is stale."""
        entries = self._entries
        if entries is not None and self._clock() - self._loaded_at < self.refresh_seconds:
            return entries
        if entries is None:  # the first load: every request waits for it
            with self._lock:
                if self._entries is None:
                    self._reload()
            return self._entries or ()
        if self._lock.acquire(blocking=False):  # one thread re-reads; the others go on
            try:
                self._reload()
            except sqlite3.Error as exc:
                log.warning("keys not re-read; the loaded keys stay", extra={"error": str(exc)})
                self._loaded_at = self._clock()
            finally:
                self._lock.release()
        return self._entries or entries

    def _reload(self) -> None:
        self._entries = self._static + tuple(self.store.live_hashes())
        self._loaded_at = self._clock()

    def enabled(self) -> bool:
        """Say whether auth is on: as soon as any key exists, in settings or in the store."""
        return bool(self.entries())

    def identify(self, token: str) -> Identity | None:
        """Return who a bearer token belongs to, or None for a token that is no key."""
        return identify(token, self.entries())
