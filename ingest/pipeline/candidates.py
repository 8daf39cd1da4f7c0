"""The watcher's bookkeeping: every inbox file between first sight and the end of its take.

Kept apart from ``ingest.pipeline.watcher`` (threads, observers, scans) because it is plain state
with a lock: which files are candidates, which are queued, which failed as what signature.
"""

from __future__ import annotations

import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

Signature = tuple[int, int]  # (size, mtime_ns)


@dataclass
class Candidate:
    """A file seen in an inbox, with the signature it has held since ``since``."""

    kind: str
    signature: Signature | None = None
    since: float = 0.0


class Inboxes:
    """Thread-safe bookkeeping of every file between first sight and the end of its take."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._candidates: dict[Path, Candidate] = {}
        self._queued: set[Path] = set()
        self._failed: dict[Path, Signature] = {}  # takes that raised: skipped until they change
        self._renoted: dict[Path, str] = {}  # seen again while queued: a new file of that name?
        self.last_event: float | None = None

    def note(self, path: Path, kind: str, *, from_event: bool = True) -> None:
        """Record a path worth checking; a queued path is checked again once its take ends."""
        with self._lock:
            if from_event:
                self.last_event = time.time()
            if path in self._queued:
                self._renoted[path] = kind
            elif path not in self._candidates:
                self._candidates[path] = Candidate(kind)

    def snapshot(self) -> list[tuple[Path, Candidate]]:
        """Copy the candidates, so the stability check runs without holding the lock."""
        with self._lock:
            return list(self._candidates.items())

    def forget(self, path: Path) -> None:
        """Drop a candidate that vanished or is not a file."""
        with self._lock:
            self._candidates.pop(path, None)

    def promote(self, path: Path) -> bool:
        """Move a stable candidate to the queued set; False if it was already queued."""
        with self._lock:
            self._candidates.pop(path, None)
            if path in self._queued:
                return False
            self._queued.add(path)
            return True

    def done(self, path: Path, failed_signature: Signature | None = None) -> None:
        """End a take; a failed one is remembered so the rescan does not retry it in a loop."""
        with self._lock:
            self._queued.discard(path)
            kind = self._renoted.pop(path, None)
            if failed_signature is None:
                self._failed.pop(path, None)
                if kind is not None:  # a same-named file arrived during the take
                    self._candidates.setdefault(path, Candidate(kind))
            else:
                self._failed[path] = failed_signature

    def failed_as(self, path: Path) -> Signature | None:
        """Return the signature a path had when its take failed, if it did."""
        with self._lock:
            return self._failed.get(path)

    def prune_failed(self) -> None:
        """Forget failures of files that are gone, so the memory of them cannot grow forever."""
        with self._lock:
            for path in [p for p in self._failed if not p.exists()]:
                del self._failed[path]

    def backlog(self) -> int:
        """Count files seen and not yet taken."""
        with self._lock:
            return len(self._candidates) + len(self._queued)


def signature(path: Path) -> Signature | None:
    """Return (size, mtime) of a regular file or of a link itself, or None if gone or a folder.

    A symbolic link is never followed (``lstat``): the intake refuses it, recorded in the
    ledger and moved out of the inbox, without reading what it points at.
    """
    try:
        st = path.lstat()
    except OSError:
        return None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        return None
    return st.st_size, st.st_mtime_ns
