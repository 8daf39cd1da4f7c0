"""Sessions for people: a key typed once into a login form, then a signed session cookie.

The cookie (Flask's signed session) is HttpOnly, SameSite=Strict, and Secure when the request
came over https. It holds the key's name, a fingerprint of the key (an HMAC of its stored hash
under the session secret, never the key itself) and a CSRF token; every POST made from a page
must echo that token, in the form field ``csrf_token`` or the ``X-CSRF-Token`` header. The secret
comes from ``[server] session_secret`` when set, else from ``data_dir/session.secret``, generated
once (mode 0600). A revoked key ends its sessions: the fingerprint no longer matches a live key.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from flask import Flask, Request, request, session
from flask.sessions import SecureCookieSessionInterface

from scoring.keys import Identity, KeyRing, hash_key
from scoring.settings import Settings

SECRET_FILE = "session.secret"
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
    app.config.update(
        SESSION_COOKIE_NAME="dropscore_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
    )


def session_secret(settings: Settings) -> str:
    """Return the configured secret, or the one stored in the data folder (made once)."""
    configured = getattr(settings.server, "session_secret", "") or ""
    if configured:
        return configured
    return _stored_secret(settings.data_dir / SECRET_FILE)


def _stored_secret(path: Path) -> str:
    """Read the secret file, creating it atomically first so every process agrees on one."""
    with contextlib.suppress(FileNotFoundError):
        return path.read_text(encoding="ascii").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{SECRET_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(secrets.token_hex(32))
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)  # fails if another process won the race: then read theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text(encoding="ascii").strip()


def fingerprint(secret: str, key_hash: bytes) -> str:
    """Name a key in the cookie without the key: an HMAC of its stored hash under the secret."""
    return hmac.new(secret.encode(), key_hash, hashlib.sha256).hexdigest()[:32]


def log_in(ring: KeyRing, secret: str, typed: str) -> bool:
    """Start a session for a valid key; a wrong key changes nothing."""
    identity = ring.identify(typed) if typed else None
    if identity is None:
        return False
    session.clear()
    session["who"] = identity.name
    session["fp"] = fingerprint(secret, hash_key(typed))
    session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return True


def identify(ring: KeyRing, secret: str) -> Identity | None:
    """Return the key the session was opened with, while it is still live (revoked: logged out).

    Every stored hash is compared, in constant time and without an early exit.
    """
    fp = session.get("fp")
    if not isinstance(fp, str):
        return None
    found = None
    for key_hash, identity in ring.entries():
        if hmac.compare_digest(fp, fingerprint(secret, key_hash)):
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
    """Forget the session."""
    session.clear()


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
