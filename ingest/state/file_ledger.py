"""What the intake, the API and the CLI ask of a file ledger, so another backend can stand in.

``ingest.state.ledger.Ledger`` (SQLAlchemy Core on a ``StateDB``, SQLite or a server) is the one
implementation today; a second one implements this ``FileLedger`` and is handed to the same
callers. The rules every implementation keeps are the ledger's: a transition from a state it
does not allow changes nothing and raises ``IllegalTransition``; of two callers racing on one
transition exactly one wins; stored paths are relative to ``data_dir``.
"""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any, Protocol

from ingest.state.locks import Lock, Locks
from ingest.state.records import BY_BYTES, FileRecord


class FileLedger(Protocol):
    """One record per drop with guarded transitions (see ``ingest.state.ledger.Ledger``)."""

    data_dir: Path
    holder: str  # the claim id (host:data folder) its received rows are signed with

    def initialize(self) -> None:
        """Create the ledger's tables now, so a bad database fails at start-up."""

    def shared_locks(self) -> Locks | None:
        """Give the locks of every machine sharing this ledger's database; None on one machine."""

    def hold_presence(self) -> Lock | None:
        """Take this replica's presence lock for its life (recovery elsewhere asks it); None
        on one machine or when another process of this data folder holds it."""

    def relative(self, path: Path | str | None) -> str | None:
        """Store a path relative to the data folder when it lies inside it."""

    def resolve(self, stored: str | None) -> Path | None:
        """Turn a stored path back into one the filesystem understands."""

    def get(self, file_id: int) -> FileRecord | None:
        """Return one drop, or None when no such id exists."""

    def list(
        self,
        state: str | None = None,
        kind: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> builtins.list[FileRecord]:
        """Return drops newest first, optionally filtered, a page at a time."""

    def counts_by_state(self) -> dict[str, int]:
        """Return how many drops are in each state, every state present."""

    def last_ingest(self) -> FileRecord | None:
        """Return the drop whose ingest finished last."""

    def find_by_sha(self, kind: str, sha256: str) -> FileRecord | None:
        """Return the first live drop of these bytes."""

    def received_by(self, kind: str, sha256: str, holder: str) -> builtins.list[FileRecord]:
        """Return the ``received`` drops of these bytes one replica (its ``holder``) claimed."""

    def find_by_content(
        self, kind: str, content_sha256: str, excluding: int | None = None
    ) -> FileRecord | None:
        """Return the first live drop whose normalized table has this content hash."""

    def find_by_processing_path(self, path: Path | str) -> FileRecord | None:
        """Return the drop that claimed this file in ``processing/``."""

    def unfinished(self, *, expired_after: float) -> builtins.list[FileRecord]:
        """Return the received drops start-up recovery may finish here (its own, on a shared
        database)."""

    def pending_score(self, limit: int | None = None) -> builtins.list[FileRecord]:
        """Return normalized score drops with no output yet, oldest first."""

    def has_normalized(self, kind: str) -> bool:
        """Tell whether any drop of this kind ever reached the lake."""

    def receive(
        self,
        *,
        original_name: str,
        kind: str,
        size_bytes: int | None,
        sha256: str | None,
        processing_path: Path | str | None,
        rejected: dict[str, Any] | None = None,
        archive_name: str | None = None,
    ) -> FileRecord:
        """Record a claimed drop and decide duplicates by bytes in the same transaction."""

    def start_attempt(self, file_id: int) -> int:
        """Count one more processing attempt and return the count."""

    def defer(self, file_id: int, *, error: dict[str, Any]) -> FileRecord:
        """Leave a received drop for a later attempt, the attempt given back."""

    def rehash(self, file_id: int, *, size_bytes: int, sha256: str) -> FileRecord:
        """Record the new content of a received drop, dedupe decided again."""

    def mark_normalized(
        self,
        file_id: int,
        *,
        rows: int,
        columns: int,
        format: str | None,
        encoding: str | None,
        delimiter: str | None,
        column_map: dict[str, str],
        lake_path: Path | str,
        archive_path: Path | str,
        content_sha256: str | None = None,
    ) -> FileRecord:
        """Record that the drop is in the lake, or a duplicate by content."""

    def mark_quarantined(
        self, file_id: int, *, error: dict[str, Any], quarantine_path: Path | str
    ) -> FileRecord:
        """Record that the drop was rejected and where its original goes."""

    def mark_score_refused(
        self, file_id: int, *, error: dict[str, Any], quarantine_path: Path | str
    ) -> FileRecord:
        """Quarantine a normalized drop the model cannot use."""

    def mark_duplicate(
        self,
        file_id: int,
        *,
        duplicate_of: int,
        archive_path: Path | str,
        by: str = BY_BYTES,
        content_sha256: str | None = None,
    ) -> FileRecord:
        """Record that the content was already taken."""

    def mark_scored(
        self,
        file_id: int,
        output_path: Path | str,
        model_version: str,
        rows_scored: int,
        rows_failed: int,
        drift: str | None = None,
    ) -> FileRecord:
        """Record the scorer's output of a normalized score drop, and its drift verdict."""

    def mark_retried(self, file_id: int, *, queued_as: str, lost: str | None = None) -> FileRecord:
        """Record that a quarantined drop's original was queued again."""

    def unmark_retried(self, file_id: int) -> FileRecord:
        """Put a drop back in quarantine when its retry could not be queued."""

    def claim_for_scoring(self, file_id: int, *, stale_after: float = 900.0) -> bool:
        """Claim a drop for scoring; exactly one caller wins."""

    def release_scoring_claim(self, file_id: int) -> None:
        """Give a claim back after a failed scoring run."""
