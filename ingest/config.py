"""Options the ingest side needs, as plain values, so it never depends on the settings loader."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("train", "score")


@dataclass(frozen=True)
class ReadOptions:
    """Limits and choices that shape how one file is read."""

    max_columns: int = 1000
    excel_sheet: str = ""  # "" reads the first sheet; otherwise a sheet name or a 0-based index
    csv_encodings: tuple[str, ...] = ("cp1252", "latin-1")  # tried, in order, after UTF-8
    batch_rows: int = 65_536  # rows per Arrow batch; bounds the reader's memory


@dataclass(frozen=True)
class IngestConfig:
    """Everything the watcher and the intake need, derived from ``[paths]`` and ``[ingest]``."""

    data_dir: Path
    stable_seconds: float = 2.0
    rescan_seconds: float = 30.0
    poll: bool = False
    max_file_mb: float = 1024.0
    read: ReadOptions = field(default_factory=ReadOptions)
    max_attempts: int = 5  # transient failures (vanished, locked) are retried this many times

    @property
    def db_path(self) -> Path:
        return self.data_dir / "state.db"

    def inbox(self, kind: str) -> Path:
        return self.data_dir / "inbox" / kind

    def lake(self, kind: str) -> Path:
        return self.data_dir / "lake" / kind

    @property
    def processing(self) -> Path:
        return self.data_dir / "processing"

    @property
    def archive(self) -> Path:
        return self.data_dir / "archive"

    @property
    def quarantine(self) -> Path:
        return self.data_dir / "quarantine"

    def make_dirs(self) -> None:
        """Create every folder of the data layout; safe to call on every start."""
        for kind in KINDS:
            self.inbox(kind).mkdir(parents=True, exist_ok=True)
            self.lake(kind).mkdir(parents=True, exist_ok=True)
        for folder in (self.processing, self.archive, self.quarantine):
            folder.mkdir(parents=True, exist_ok=True)
