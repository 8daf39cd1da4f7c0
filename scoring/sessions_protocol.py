"""What the dashboard asks of its session store: open, find, end and count sessions.

``scoring.sessions.SessionStore`` keeps them in the state database beside the keys they were
opened with, so revoking a key ends its sessions in the same transaction; another backend
implements ``Sessions`` (and ends a revoked key's sessions itself).
"""

from __future__ import annotations

from typing import Protocol


class Sessions(Protocol):
    """Server-side dashboard sessions, kept only as the hash of their random id."""

    def start(self, key_name: str, key_hash: bytes) -> str:
        """Open a session for a key and return its id, the only time it is readable."""

    def find(self, session_id: str) -> bytes | None:
        """Return the stored hash of the key a live session was opened with; end it if expired."""

    def end(self, session_id: str) -> None:
        """End one session (logout, or its key no longer works)."""

    def count(self) -> int:
        """Return how many sessions are stored, expired ones not yet swept included."""
