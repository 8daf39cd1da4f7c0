"""What the registry asks of its index: the versions, their status, and which one is champion.

A version's files never change once written; everything about it that does change (its status,
when and by whom it was promoted) lives in the index, so a promotion is one transaction there.
``scoring.lifecycle.models_table.ModelsTable`` keeps the index in a state database through
SQLAlchemy (SQLite by default); another backend implements ``ModelIndex``.
"""

from __future__ import annotations

import builtins
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class ModelRecord:
    """One model version's row in the registry."""

    version: int
    status: str
    created_at: str
    promoted_at: str | None
    promoted_by: str | None  # the API key's name or the CLI's user; None when the rule promoted
    reason: str | None
    estimator: str | None
    task: str | None
    metrics: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape the API shows; versions are text."""
        return {
            "version": str(self.version),
            "status": self.status,
            "created_at": self.created_at,
            "promoted_at": self.promoted_at,
            "promoted_by": self.promoted_by,
            "reason": self.reason,
            "estimator": self.estimator,
            "task": self.task,
            "metrics": self.metrics,
        }


class NewVersion(Protocol):
    """The next version number, held under the index's write lock until the block ends.

    The registry writes the version's folder inside the block and indexes it last, so two
    processes registering at once never get the same number, and a failure indexes nothing.
    """

    @property
    def version(self) -> int:
        """Give the number this version gets."""

    def add(
        self,
        *,
        status: str,
        created_at: str,
        estimator: str | None,
        task: str | None,
        metrics: dict[str, Any],
    ) -> None:
        """Index the version, committed when the block ends without an error."""


class ModelIndex(Protocol):
    """The registry's index of versions; safe to use from many threads and processes at once."""

    def reserve(self) -> AbstractContextManager[NewVersion]:
        """Hold the next version number until the block ends (see ``NewVersion``)."""

    def promote(self, version: int, *, at: str, reason: str, by: str | None) -> bool:
        """Make ``version`` the champion and archive the old one, in one transaction.

        Return False, changing nothing, when the version is not indexed.
        """

    def set_status(self, version: int, status: str, reason: str) -> None:
        """Set a version's status and reason, unless it is the champion."""

    def get(self, version: int) -> ModelRecord | None:
        """Return one version's record, or None when it is not indexed."""

    def champion_version(self) -> int | None:
        """Return the champion's version; polled several times a second by every process."""

    def list(self) -> builtins.list[ModelRecord]:
        """Return every version, oldest first."""
