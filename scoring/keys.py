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
import threading
import time
from collections.abc import Callable

from sqlalchemy import Column, ColumnElement, Index, Integer, MetaData, Table, Text, select
from sqlalchemy.exc import SQLAlchemyError

from ingest.state.db import Migration, StateDB, create_tables
from scoring import sessions
from scoring.audit import now
from scoring.errors import Conflict, NotFound, ValidationFailed
from scoring.keys_protocol import ROLES, Identity, KeyInfo, Keys

log = logging.getLogger("dropscore.keys")

# Each role can do what the roles before it can, and more.
PREFIX = "ds_"
SETTINGS_PREFIX = "settings-"
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.@-]{0,63}")

STORE = "keys"  # this store's name in schema_versions

META = MetaData()
API_KEYS = Table(
    "api_keys",
    META,
    Column("id", Integer, primary_key=True, nullable=True),  # the rowid, declared as SQLite does
    Column("name", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("hash", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("revoked_at", Text),
    sqlite_autoincrement=True,  # an id is never reused, as every release made the table
)
_LIVE = API_KEYS.c.revoked_at.is_(None)
Index(
    "api_keys_live_name", API_KEYS.c.name, unique=True, sqlite_where=_LIVE, postgresql_where=_LIVE
)

STEPS = [Migration(1, "the api_keys table", create_tables(META, "api_keys"))]


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
    """The ``api_keys`` table: ``Keys`` in a state database, beside the sessions it ends."""

    def __init__(self, db: StateDB) -> None:
        self.db = db

    def _ready(self) -> StateDB:
        self.db.migrate(STORE, STEPS)  # once per process and database
        self.db.migrate(sessions.STORE, sessions.STEPS)  # revoke ends a key's sessions
        return self.db

    def add(self, name: str, role: str) -> str:
        """Store a new key under ``name`` and return it: the only time it is ever readable."""
        check_name(name)
        check_role(role)
        key = new_key()
        with self._ready().write() as conn:
            if conn.execute(select(API_KEYS.c.id).where(_named(name))).first() is not None:
                raise Conflict(f"a key named {name!r} exists; revoke it first to replace it")
            conn.execute(
                API_KEYS.insert().values(
                    name=name, role=role, hash=hash_key(key).hex(), created_at=now()
                )
            )
        return key

    def revoke(self, name: str) -> None:
        """Stop a key from working and end its dashboard sessions at once; the row stays, so the
        audit trail still names it."""
        with self._ready().write() as conn:
            stored = conn.execute(select(API_KEYS.c.hash).where(_named(name))).scalar_one_or_none()
            if stored is None:
                raise NotFound(f"no live key named {name!r}")
            conn.execute(API_KEYS.update().where(_named(name)).values(revoked_at=now()))
            sessions.end_sessions_of(conn, stored)

    def list(self, include_revoked: bool = False) -> builtins.list[KeyInfo]:
        """Return keys oldest first, without their hashes."""
        c = API_KEYS.c
        query = select(c.name, c.role, c.created_at, c.revoked_at).order_by(c.id)
        if not include_revoked:
            query = query.where(_LIVE)
        with self._ready().read() as conn:
            rows = conn.execute(query).all()
        return [KeyInfo(**row._mapping) for row in rows]

    def live_hashes(self) -> builtins.list[tuple[bytes, Identity]]:
        """Return the hash and identity of every key that works now."""
        c = API_KEYS.c
        with self._ready().read() as conn:
            rows = conn.execute(select(c.name, c.role, c.hash).where(_LIVE)).all()
        return [(bytes.fromhex(row.hash), Identity(row.name, row.role)) for row in rows]


def _named(name: str) -> ColumnElement[bool]:
    """Select the live key called ``name`` (at most one: the index ``api_keys_live_name``)."""
    return (API_KEYS.c.name == name) & _LIVE


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
        store: Keys,
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
            except SQLAlchemyError as exc:
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
