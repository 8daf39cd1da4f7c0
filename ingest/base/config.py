"""Options the ingest side needs, as plain values, so it never depends on the settings loader."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

    from ingest.lake.store import Lake
    from ingest.state.locks import Locks

from ingest.base.layout import KINDS, DataLayout

__all__ = ["KINDS", "MARKERS", "DataLayout", "IngestConfig", "ReadOptions"]

MARKERS = ("", ".done", ".ready", ".ok")  # [ingest] ready_marker: "" is off, else a name suffix


@dataclass(frozen=True)
class ReadOptions:
    """Limits and choices that shape how one file is read."""

    max_columns: int = 1000
    excel_sheet: str = ""  # "" reads the first sheet; otherwise a sheet name or a 0-based index
    csv_encodings: tuple[str, ...] = ("cp1252", "latin-1")  # tried, in order, after UTF-8
    batch_rows: int = 65_536  # rows per Arrow batch; bounds the reader's memory
    # Given a delimited file's header, the Arrow types to parse some columns as, instead of
    # inferring them (the bulk scorer passes its model's numeric features). None: infer all.
    column_types: Callable[[Sequence[str]], Mapping[str, pa.DataType]] | None = None
    max_line_bytes: int = 64 << 20  # longest CSV line read; the reader's block grows up to it
    # What a compressed (gzip) file may unpack to, in MB: [ingest] max_file_mb. None: no cap.
    max_unpacked_mb: float | None = None


@dataclass(frozen=True)
class IngestConfig:
    """Everything the watcher and the intake need, derived from ``[paths]`` and ``[ingest]``."""

    layout: DataLayout
    stable_seconds: float = 2.0
    rescan_seconds: float = 30.0
    poll: bool = False
    max_file_mb: float = 1024.0
    read: ReadOptions = field(default_factory=ReadOptions)
    max_attempts: int = 5  # transient failures (vanished, locked) are retried this many times
    ready_marker: str = ""  # ".done": take <name> once <name>.done exists (pipeline/markers.py)
    # Each kind's lake where [storage] url puts it (an object store); None: the local lake folder.
    lakes: Callable[[str], Lake] | None = None
    # Where the lake lock is held when the lake is shared past this machine (the state
    # database's advisory locks, set by the intake); None: a lock file in processing/.
    locks: Locks | None = None

    def __post_init__(self) -> None:
        if self.ready_marker not in MARKERS:
            raise ValueError(f"ready_marker must be one of {MARKERS}, not {self.ready_marker!r}")

    # The paths below delegate to the layout, under the names the intake and watcher use.

    @property
    def data_dir(self) -> Path:
        """Return the data root every ingest folder lives under."""
        return self.layout.root

    @property
    def db_path(self) -> Path:
        """Return the SQLite file holding the ledger."""
        return self.layout.db_path

    def inbox(self, kind: str) -> Path:
        """The folder producers drop files of this kind into."""
        return self.layout.inbox(kind)

    def lake(self, kind: str) -> Path:
        """The folder of normalized Parquet files of this kind."""
        return self.layout.lake(kind)

    def lake_store(self, kind: str) -> Lake:
        """The lake of this kind as the one reader and writer of its files, wherever it lives."""
        if self.lakes is not None:
            return self.lakes(kind)
        from ingest.lake.store import Lake  # Deferred: pyarrow, for what never reads the lake

        return Lake.local(self.lake(kind))

    @property
    def processing(self) -> Path:
        """Return where claimed files wait while they are read."""
        return self.layout.processing

    @property
    def archive(self) -> Path:
        """Return where originals go once their drop is in the lake."""
        return self.layout.archive

    @property
    def quarantine(self) -> Path:
        """Return where rejected files go, each beside its error record."""
        return self.layout.quarantine

    def make_dirs(self) -> None:
        """Create every folder of the data layout; safe to call on every start."""
        self.layout.make_dirs()
