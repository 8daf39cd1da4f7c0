"""The readers' entry point: detect a dropped file's format, then stream it as a RawTable."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa

from ingest.base.config import ReadOptions
from ingest.base.errors import EmptyFileError, IngestError, MalformedFileError
from ingest.base.formats import detect_format, spec_for
from ingest.readers.common import NOT_OURS, RawTable, check_width

log = logging.getLogger("dropscore.ingest")

HEAD_BYTES = 8192


def open_table(path: Path, options: ReadOptions) -> RawTable:
    """Open a dropped file for streaming, raising a typed IngestError for anything unreadable."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(HEAD_BYTES)
        fmt = detect_format(path.name, head)
        if not head:
            raise EmptyFileError(
                "the file is empty (0 bytes); export it again with a header row and data",
                expected="a header row and at least one data row",
            )
        raw = spec_for(fmt).read_function()(path, options, fmt)
    except IngestError:
        raise
    except OSError:
        raise  # vanished, locked, permission: the intake decides whether to retry
    except BaseException as exc:  # any other failure is a file we could not make sense of
        if isinstance(exc, NOT_OURS):
            raise
        raise _unexpected(exc) from exc
    check_width(raw.columns, options)
    raw.batches = _guarded(cut_batches(raw.batches, options.batch_rows))
    return raw


def _unexpected(exc: BaseException) -> MalformedFileError:
    """Wrap an unforeseen parser failure so one odd file never escapes as a crash."""
    log.warning("unexpected reader failure", exc_info=exc)
    detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return MalformedFileError(
        f"the file could not be read ({detail}); check that it is a complete, valid file "
        "of the type its name says"
    )


def _guarded(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Translate failures raised while iterating into IngestErrors, like at open time."""
    try:
        yield from batches
    except (IngestError, OSError):
        raise
    except BaseException as exc:
        if isinstance(exc, NOT_OURS):
            raise
        raise _unexpected(exc) from exc


def cut_batches(batches: Iterable[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    """Cut batches down to at most ``size`` rows, so consumers' memory follows batch_rows.

    Public because the Dask path (``scoring.bulk.csv_parts.batch_cuts``) runs this very
    function after ``merge_batches`` to replay the local reader's batch boundaries bit for bit.
    """
    for batch in batches:
        for start in range(0, batch.num_rows, size):
            yield batch.slice(start, size)
