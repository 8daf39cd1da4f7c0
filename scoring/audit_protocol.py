"""What the API and the CLI ask of the audit trail: append an entry, list entries newest first.

``scoring.audit.AuditLog`` keeps the trail in the state database; another backend implements
``AuditTrail``.
"""

from __future__ import annotations

from typing import Protocol

from scoring.audit import AuditEntry


class AuditTrail(Protocol):
    """One entry per state-changing request, kept long after the logs rotated."""

    def record(self, entry: AuditEntry) -> int:
        """Append an entry, stamped now, and return its id."""

    def list(
        self, limit: int = 50, offset: int = 0, key_name: str | None = None
    ) -> list[AuditEntry]:
        """Return entries newest first, optionally those of one key."""
