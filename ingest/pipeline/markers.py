"""Ready markers: with ``ready_marker = ".done"`` a file is taken only once ``<name>.done`` exists.

Hadoop- and Spark-style producers announce a finished file with a marker written after it. With
the setting on, the watcher takes ``sales.csv`` only when ``sales.csv.done`` sits beside it (its
content is never read); markers are never taken as drops; the marker follows its file to
``archive/`` or ``quarantine/`` as ``<id>__sales.csv.done``. A marker whose file never arrives is
left alone and reported once it is older than ``ORPHAN_AFTER_SECONDS``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

from ingest.base.config import MARKERS
from ingest.state.file_ledger import FileLedger
from ingest.state.ledger import QUARANTINED, FileRecord

log = logging.getLogger("dropscore.ingest")

ORPHAN_AFTER_SECONDS = 300.0


__all__ = ["MARKERS", "OrphanMarkers", "file_marker", "is_marker", "is_ready", "marked_file"]


def is_marker(path: Path, marker: str) -> bool:
    """Tell whether a name is a marker (never a drop of its own)."""
    return bool(marker) and path.name.endswith(marker) and len(path.name) > len(marker)


def marked_file(marker_path: Path, marker: str) -> Path:
    """Name the file a marker announces: ``sales.csv.done`` announces ``sales.csv``."""
    return marker_path.with_name(marker_path.name[: -len(marker)])


def marker_of(path: Path, marker: str) -> Path:
    """Name the marker that announces a file."""
    return path.with_name(path.name + marker)


def is_ready(path: Path, marker: str) -> bool:
    """Tell whether a file may be taken: always with markers off, else once its marker exists."""
    return not marker or os.path.lexists(marker_of(path, marker))


def file_marker(ledger: FileLedger, record: FileRecord, taken: Path, marker: str) -> None:
    """Move a taken file's marker beside its original in archive/ or quarantine/."""
    if not marker:
        return
    source = marker_of(taken, marker)
    stored = record.quarantine_path if record.state == QUARANTINED else record.archive_path
    dest = ledger.resolve(stored)
    with contextlib.suppress(FileNotFoundError):
        if dest is None:
            source.unlink()
        else:
            os.replace(source, marker_of(dest, marker))


class OrphanMarkers:
    """Reports, once each, markers whose file has not arrived after ``ORPHAN_AFTER_SECONDS``."""

    def __init__(self, marker: str, after: float = ORPHAN_AFTER_SECONDS) -> None:
        self.marker = marker
        self.after = after
        self._reported: set[Path] = set()

    def check(self, names: list[Path], kind: str) -> None:
        """Look at one inbox's listing and log each old marker without its file."""
        if not self.marker:
            return
        present = set(names)
        now = time.time()
        for path in names:
            if not is_marker(path, self.marker) or path in self._reported:
                continue
            if marked_file(path, self.marker) in present:
                continue
            with contextlib.suppress(OSError):
                if now - path.lstat().st_mtime >= self.after:
                    self._reported.add(path)
                    log.warning(
                        "ready marker without its file",
                        extra={
                            "file": path.name,
                            "kind": kind,
                            "waiting_for": path.name[: -len(self.marker)],
                        },
                    )
        self._reported = {p for p in self._reported if os.path.lexists(p)}
