"""Sessions for people: a key typed once into a login form, then a session kept server-side.

The cookie (Flask's signed session) is HttpOnly, SameSite=Strict, and Secure when the request
came over https (behind a TLS-terminating proxy: see ``scoring.api.proxies``). It holds a random
session id, never the key, and a CSRF token; every POST made from a page must echo that token,
in the form field ``csrf_token`` or the ``X-CSRF-Token`` header. The session itself lives in
``state.db`` (``scoring.sessions``): logging out, revoking the key, or leaving the session idle
or open too long ends it there, so a copy of the cookie kept after that opens nothing. The
signing secret is ``data_dir/session.secret``, generated once (mode 0600) and shared by every
process on that data folder.
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
from pathlib import Path

from flask import Flask, Request, current_app, request, session
from flask.sessions import SecureCookieSessionInterface

from ingest.base import atomic
from ingest.state.db import StateDB
from scoring.keys import Identity, KeyRing, hash_key
from scoring.sessions import Lifetimes, SessionStore
from scoring.settings import Settings

SECRET_FILE = "session.secret"
EXTENSION = "dropscore.sessions"
SESSION_FIELD = "sid"
MODEL_FIELD = "model"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class _Sessions(SecureCookieSessionInterface):
    """Flask's signed cookie, marked Secure exactly when the request itself is https."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure


def install(app: Flask, settings: Settings) -> None:
    """Give the app its session secret and strict cookie settings."""
    app.secret_key = session_secret(settings)
    app.session_interface = _Sessions()
    app.extensions[EXTENSION] = SessionStore(
        StateDB.at(settings.shared_db_path), lifetimes(settings)
    )
    app.config.update(
        SESSION_COOKIE_NAME="dropscore_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
    )


def lifetimes(settings: Settings) -> Lifetimes:
    """Read the idle and absolute session lifetimes from ``[server]``."""
    server = settings.server
    return Lifetimes(server.session_idle_minutes * 60.0, server.session_max_hours * 3600.0)


def store() -> SessionStore:
    """Return the app's session table (made by ``install``)."""
    found: SessionStore = current_app.extensions[EXTENSION]
    return found


def session_secret(settings: Settings) -> str:
    """Return the signing secret stored in the data folder (made once by the first process)."""
    return _stored_secret(settings.data_dir / SECRET_FILE)


def _stored_secret(path: Path) -> str:
    """Read the secret file, creating it atomically first so every process agrees on one."""
    with contextlib.suppress(FileNotFoundError):
        return path.read_text(encoding="ascii").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # another process won the race: read theirs
        atomic.write_text(path, secrets.token_hex(32), replace=False, mode=0o600)
    return path.read_text(encoding="ascii").strip()


def log_in(ring: KeyRing, typed: str) -> bool:
    """Start a fresh session for a valid key (a new id, a new CSRF token); a wrong key changes
    nothing."""
    identity = ring.identify(typed) if typed else None
    if identity is None:
        return False
    _end_stored()
    session.clear()  # a new id: a session id planted before login is never the logged-in one
    session[SESSION_FIELD] = store().start(identity.name, hash_key(typed))
    session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return True


def identify(ring: KeyRing) -> Identity | None:
    """Return the key the session was opened with, while both the session and the key live.

    The key's stored hash is compared with every live key's, in constant time and without an
    early exit; a session whose key no longer works (revoked, or removed from ``api_keys``) is
    ended on the spot. The ring's copy may be a second old, so a key it lacks is looked up in
    the store before that: a key just added in another process keeps the session it opened.
    """
    session_id = session.get(SESSION_FIELD)
    if not isinstance(session_id, str):
        return None
    key_hash = store().find(session_id)
    if key_hash is None:
        return None
    found = _match(key_hash, ring.entries())
    if found is None:
        found = _match(key_hash, tuple(ring.store.live_hashes()))
    if found is None:
        store().end(session_id)
    return found


def _match(key_hash: bytes, entries: tuple[tuple[bytes, Identity], ...]) -> Identity | None:
    """Find the identity of a stored key hash, comparing every entry without an early exit."""
    found = None
    for stored, identity in entries:
        if hmac.compare_digest(key_hash, stored):
            found = identity
    return found


def pick_model(name: str) -> None:
    """Remember which model the person looks at, across pages."""
    session[MODEL_FIELD] = name


def picked_model() -> str | None:
    """The model the person picked, if any (checked against the served ones by the caller)."""
    name = session.get(MODEL_FIELD)
    return name if isinstance(name, str) else None


def log_out() -> None:
    """End the session in the table, so no copy of the cookie opens it again, and forget it."""
    _end_stored()
    session.clear()


def _end_stored() -> None:
    session_id = session.get(SESSION_FIELD)
    if isinstance(session_id, str):
        store().end(session_id)


def csrf_token() -> str:
    """Return the session's CSRF token, making one for a fresh (keyless) session."""
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


def csrf_ok(req: Request) -> bool:
    """Check a state-changing request carries the session's CSRF token."""
    if req.method in SAFE_METHODS:
        return True
    expected = session.get(CSRF_FIELD)
    sent = req.headers.get(CSRF_HEADER) or req.form.get(CSRF_FIELD, "")
    return isinstance(expected, str) and bool(sent) and hmac.compare_digest(expected, sent)
