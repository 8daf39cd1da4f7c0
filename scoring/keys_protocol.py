"""What the API and the CLI ask of the key store: add, revoke and list keys, and the live hashes.

``scoring.keys.KeyStore`` keeps keys in the state database; another backend implements ``Keys``.
Only hashes leave a store: a key is readable once, when ``add`` returns it.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Protocol

# The roles a key can hold, weakest first (each allows what the ones before it allow). Here, not
# in keys.py: every `dropscore` command's options name them, and keys.py loads SQLAlchemy.
ROLES = ("predict", "operate", "admin")
# Keys typed into settings must be at least this long: a short one can be guessed (ours are 46).
MIN_KEY_LENGTH = 16


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


class Keys(Protocol):
    """Named keys with a role, stored as their hashes."""

    def add(self, name: str, role: str) -> str:
        """Store a new key under ``name`` and return it: the only time it is ever readable."""

    def revoke(self, name: str) -> None:
        """Stop a key from working and end its dashboard sessions at once."""

    def live_hashes(self) -> builtins.list[tuple[bytes, Identity]]:
        """Return the hash and identity of every key that works now."""

    def list(self, include_revoked: bool = False) -> builtins.list[KeyInfo]:
        """Return keys oldest first, without their hashes."""
