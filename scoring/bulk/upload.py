"""Score one uploaded file into a finished scored file: the core of ``POST /score-file``.

The upload is spooled into a work folder on the data folder's disk (whose free space it was
checked against; ``/tmp`` may be memory), scored by one model version to a file beside it, and
the folder is removed before the answer goes out: the caller gets an open handle, which keeps
the bytes until they are sent, so nothing is left on disk even if the client goes away. Only a
killed process leaves a ``.upload-*`` folder. The output is complete before the first byte is
sent, so a failure half-way is a clean error rather than a truncated answer. Errors of the file
(format, size, content) become the API's errors here; the rows go through the dataplane's
observers as one event. Flask-free: the HTTP view only reads the request and sends the file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from ingest.base.errors import (
    FileTooLargeError,
    FormatMismatchError,
    IngestError,
    UnsupportedFormatError,
)
from ingest.base.formats import OUTPUT_FORMATS, output_spec
from scoring.bulk.batch import ScoreSummary, score_path
from scoring.bulk.engines import engine_for
from scoring.errors import PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from scoring.inference.dataplane import Dataplane
from scoring.ingest_options import read_options
from scoring.lifecycle.predictor import LoadedModel
from scoring.lifecycle.registry import Registry
from scoring.monitoring.bulk import BulkDrift, DriftWatch
from scoring.monitoring.records_protocol import SCORE_FILE, DriftRecord
from scoring.settings import Settings
from scoring.value_kinds import kind_of

UPLOAD_PREFIX = ".upload-"
PROTOCOL = "score_file"  # the route name the rows are counted under

# Write the request's file into the given folder, named by us, and return its path.
Receive = Callable[[Path], Path]


@dataclass(frozen=True)
class ScoredUpload:
    """A finished scored file, open for sending (its folder is already gone)."""

    body: BinaryIO
    size: int
    content_type: str
    download_name: str
    summary: ScoreSummary
    drift: DriftRecord | None = None  # the upload's drift record, when drift is on


def check_output_format(fmt: str | None) -> None:
    """Refuse an output format the scorer cannot write, naming the ones it can."""
    if fmt is not None and fmt not in OUTPUT_FORMATS:
        raise ValidationFailed(
            f"format must be one of {', '.join(OUTPUT_FORMATS)}; got {kind_of(fmt)}",
            [{"field": "format", "problem": "unknown output format"}],
        )


def score_upload(
    receive: Receive,
    *,
    settings: Settings,
    spool: Path,
    model: LoadedModel,
    dataplane: Dataplane,
    fmt: str | None = None,
    sheet: str | None = None,
    drift: BulkDrift | None = None,
    registry: Registry | None = None,
) -> ScoredUpload:
    """Spool an upload, score it with one model version, and return the scored file, open.

    With ``drift``, the upload's drift is computed while scoring and recorded. ``registry`` is
    the model's: on Dask the engine names the version through it (not a database per upload).
    """
    check_output_format(fmt)
    # Removed below whatever happens; only a killed process leaves a .upload-* folder.
    work = Path(tempfile.mkdtemp(prefix=UPLOAD_PREFIX, dir=spool))
    try:
        src = receive(work)
        out = work / "scored"
        watch = drift.watch(model) if drift is not None else None
        summary = _score(src, out, settings, model, fmt, sheet, watch, registry)
        found = drift.record(watch, source=SCORE_FILE) if drift is not None else None
        dataplane.scored_file(
            settings.name, model.version, PROTOCOL, summary.rows, summary.rows_failed,
            summary.seconds,
        )  # fmt: skip
        # Open the finished file, then remove the folder: the open handle keeps the bytes.
        body = open(out, "rb")  # noqa: SIM115 - the caller's to close (the WSGI server does)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    answer = output_spec(summary.format)
    return ScoredUpload(
        body,
        os.fstat(body.fileno()).st_size,
        answer.content_types[0],
        f"scored{answer.suffixes[0]}",
        summary,
        found,
    )


def _score(
    src: Path,
    out: Path,
    settings: Settings,
    model: LoadedModel,
    fmt: str | None,
    sheet: str | None,
    watch: DriftWatch | None = None,
    registry: Registry | None = None,
) -> ScoreSummary:
    """Score the spooled file, turning the file's own faults into the API's errors."""
    read = read_options(settings)
    if sheet is not None:
        read = replace(read, excel_sheet=sheet)
    try:
        return score_path(
            src,
            out,
            model,
            read=read,
            fmt=fmt,
            max_rows=settings.server.max_rows_per_request,
            engine=engine_for(settings, registry=registry),
            observe=watch,
        )
    except (UnsupportedFormatError, FormatMismatchError) as exc:
        raise UnsupportedMediaType(exc.message, [exc.to_dict()]) from None
    except FileTooLargeError as exc:  # a compressed upload unpacking past max_file_mb
        raise PayloadTooLarge(exc.message, [exc.to_dict()]) from None
    except IngestError as exc:
        raise ValidationFailed(exc.message, [exc.to_dict()]) from None
