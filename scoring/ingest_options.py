"""What the ingest package is handed, translated from the settings in one place.

The ingest side takes plain values (``IngestConfig``, ``ReadOptions``) so it never depends on the
settings loader; this module is the one translation, used by the composition root, the sweep,
the API and the CLI alike.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from ingest.base.config import IngestConfig, ReadOptions
from scoring.settings import Settings

if TYPE_CHECKING:
    from ingest.lake.store import Lake


def read_options(settings: Settings) -> ReadOptions:
    """Read with the ingest limits, in the scorer's batch size (which bounds its memory)."""
    return _read_options(settings, settings.scoring.batch_rows)


def ingest_config(settings: Settings) -> IngestConfig:
    """Translate ``[paths]`` and ``[ingest]`` into the options the watcher and intake take."""
    s = settings.ingest
    return IngestConfig(
        settings.layout,
        stable_seconds=s.stable_seconds,
        rescan_seconds=s.rescan_seconds,
        poll=s.poll,
        max_file_mb=s.max_file_mb,
        ready_marker=s.ready_marker,
        read=_read_options(settings, s.batch_rows),
        lakes=_lakes(settings),
    )


def _lakes(settings: Settings) -> Callable[[str], Lake] | None:
    """Open each kind's lake under ``[storage] url``; None keeps the local lake folders."""
    if not settings.storage.url:
        return None
    from scoring.storage import lake_store

    return functools.partial(lake_store, settings)


def _read_options(settings: Settings, batch_rows: int) -> ReadOptions:
    s = settings.ingest
    return ReadOptions(
        max_columns=s.max_columns,
        excel_sheet=s.excel_sheet,
        csv_encodings=tuple(s.csv_encodings),
        batch_rows=batch_rows,
        max_unpacked_mb=s.max_file_mb,
    )
