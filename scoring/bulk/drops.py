"""Score drops from ``inbox/score/``: on arrival, and by the sweep that catches the rest.

Both paths go through ``score_drop``, which claims the drop in the ledger first, so a drop is
scored once even when the on-arrival hook and two sweeps reach it at the same moment. A drop
that cannot be scored for a reason in the file (missing feature columns) is quarantined with a
record a person can act on; a failure of ours (no model yet, a disk error) releases the claim
and leaves the drop for the next sweep. With ``engine = "dask"`` the workers read the drop's lake
file and write its output themselves (``scoring.bulk.remote``) when they reach both (objects
under ``[storage] url``, or a disk they share); otherwise this process reads it and the engine
scores its batches.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from ingest.base.errors import IngestError
from ingest.base.formats import JSON_FORMATS, format_for_name, spec_for
from ingest.base.logs import bound
from ingest.pipeline.bucket import SCRATCH
from ingest.pipeline.intake import Intake
from ingest.state.ledger import FileRecord
from scoring.bulk.batch import MissingFeatures, ScoreSummary, output_name, score_lake_file
from scoring.bulk.engines import Engine, engine_for
from scoring.bulk.remote import score_lake_on_workers
from scoring.inference.dataplane import Dataplane
from scoring.ingest_options import ingest_config
from scoring.lifecycle.champion import load_version
from scoring.lifecycle.predictor import LoadedModel
from scoring.lifecycle.registry import Registry
from scoring.models.factory import open_model
from scoring.monitoring.bulk import BulkDrift, DriftWatch
from scoring.monitoring.records_protocol import DROP
from scoring.settings import Settings
from scoring.storage import storage_root, upload

log = logging.getLogger("dropscore.score")

ModelSource = Callable[[], LoadedModel | None]
PROTOCOL = "drop"  # the route a scored drop's event names


class MissingFeatureColumns(IngestError):
    """A score drop lacks a feature column the champion needs."""

    code = "missing_features"


def outbox_format(configured: str, original_name: str) -> str:
    """Answer a JSON drop in JSON (an array for .json, lines for .jsonl), others as configured.

    A program that drops JSON reads JSON; ``[scoring] output_format`` chooses between the
    tabular formats a person opens (Parquet, CSV).
    """
    try:
        fmt, _ = format_for_name(original_name)
    except IngestError:
        return configured
    return spec_for(fmt).answer.value if fmt in JSON_FORMATS else configured


def score_drop(
    record: FileRecord,
    *,
    settings: Settings,
    intake: Intake,
    model: LoadedModel,
    dataplane: Dataplane | None = None,
    drift: BulkDrift | None = None,
    registry: Registry | None = None,
) -> FileRecord | None:
    """Score one normalized score drop into the outbox; None when another scorer has it.

    A scored drop is one event to the dataplane's observers (its counts, not its rows); with
    ``drift``, its drift is computed while scoring, recorded, and its verdict kept on its row.
    ``registry`` is the model's, held by the caller: on Dask the engine names the version's
    artifact through it instead of opening the model's state database for every drop.
    """
    with bound(model=settings.name, version=int(model.version)):  # a number, as runs log it
        return _score_drop(record, settings, intake, model, dataplane, drift, registry)


def _score_drop(
    record: FileRecord,
    settings: Settings,
    intake: Intake,
    model: LoadedModel,
    dataplane: Dataplane | None,
    drift: BulkDrift | None = None,
    registry: Registry | None = None,
) -> FileRecord | None:
    ledger = intake.ledger
    if not ledger.claim_for_scoring(record.id):
        return None
    fmt = outbox_format(settings.scoring.output_format, record.original_name)
    dst = settings.layout.outbox / output_name(record.original_name, record.id, fmt)
    try:
        watch = drift.watch(model) if drift is not None else None
        engine = engine_for(settings, registry=registry)
        summary = _score_on_workers(settings, intake, record, model, dst, fmt, engine, watch)
        published = summary is not None  # the workers wrote it where it belongs
        if summary is None:
            with _readable_lake_file(settings, intake, record) as lake:
                summary = score_lake_file(
                    lake,
                    dst,
                    model,
                    column_map=record.column_map or {},
                    fmt=fmt,
                    batch_rows=settings.scoring.batch_rows,
                    engine=engine,
                    observe=watch,
                )
    except MissingFeatures as exc:
        error = MissingFeatureColumns(
            exc.message + f"; model version {model.version} needs every feature column",
            expected=", ".join(model.schema.names),
        )
        return intake.reject_normalized(record, error)
    except Exception:
        ledger.release_scoring_claim(record.id)
        log.exception("scoring failed", extra={"file_id": record.id, "file": record.original_name})
        return None
    found = drift.record(watch, source=DROP, file_id=record.id) if drift is not None else None
    verdict = found.verdict if found is not None else None
    done = ledger.mark_scored(
        record.id, dst, model.version, summary.rows_scored, summary.rows_failed, drift=verdict
    )
    if not published:
        publish_output(settings, dst)
    if dataplane is not None:
        dataplane.scored_file(
            settings.name, model.version, PROTOCOL, summary.rows, summary.rows_failed,
            summary.seconds, file_id=record.id,
        )  # fmt: skip
    log.info(
        "scored",
        extra={
            "file_id": record.id,
            "file": record.original_name,
            "output": str(dst.name),
            "rows_scored": summary.rows_scored,
            "rows_failed": summary.rows_failed,
            "seconds": round(summary.seconds, 3),
            "drift": verdict,
            "drifted_features": found.report["drifted_features"] if found is not None else None,
        },
    )
    return done


def _score_on_workers(
    settings: Settings,
    intake: Intake,
    record: FileRecord,
    model: LoadedModel,
    dst: Path,
    fmt: str,
    engine: Engine,
    watch: DriftWatch | None,
) -> ScoreSummary | None:
    """Score a drop on the Dask workers when they reach its lake file and the outbox; else None.

    Under ``[storage] url`` the workers read the lake object and write the outbox object
    themselves (then nothing is left to publish from here); on disk, when they share it.
    """
    lake_path = intake.ledger.resolve(record.lake_path)
    if lake_path is None:
        return None
    src, out = str(lake_path), str(dst)
    if settings.storage.url:
        root, layout = storage_root(settings), settings.layout
        src = root.uri(layout.key(layout.lake(record.kind)), lake_path.name)
        out = root.uri(layout.key(dst))
    return score_lake_on_workers(
        engine,
        model,
        src,
        out,
        column_map=record.column_map or {},
        fmt=fmt,
        batch_rows=settings.scoring.batch_rows,
        observe=watch,
    )


@contextlib.contextmanager
def _readable_lake_file(settings: Settings, intake: Intake, record: FileRecord) -> Iterator[Path]:
    """Yield a drop's lake file as a local path: itself, or a scratch copy of the object when
    the lake is under ``[storage] url`` (removed afterwards)."""
    lake_path = intake.ledger.resolve(record.lake_path)
    if lake_path is None:  # a normalized drop always has one; without it there is nothing to read
        raise LookupError(f"file {record.id} is normalized but has no lake path")
    if not settings.storage.url:
        yield lake_path
        return
    lake = intake.config.lake_store(record.kind)
    scratch = settings.data_dir / SCRATCH / uuid.uuid4().hex
    scratch.mkdir(parents=True)
    try:
        local = scratch / lake_path.name
        with (
            lake.fs.open_input_stream(lake.path(lake_path.name)) as source,
            open(local, "xb") as out,
        ):
            while chunk := source.read(8 << 20):
                out.write(chunk)
        yield local
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def publish_output(settings: Settings, dst: Path) -> None:
    """Put a scored file into the outbox under ``[storage] url``, then drop the local copy,
    which was scratch; nothing to do when files are on the local disk.

    The upload is one object, published whole or not at all (a multipart upload that fails is
    aborted), so no reader of the outbox sees half a file. A failed upload leaves the local
    file and logs why: the drop is scored and the ledger says so.
    """
    if not settings.storage.url:
        return
    try:
        upload(settings, dst, settings.layout.key(dst))
    except Exception as exc:
        log.error(
            "scored file not uploaded to the outbox; it stays in the local outbox",
            extra={"output": dst.name, "error": str(exc)},
        )
        return
    dst.unlink(missing_ok=True)


def sweep(
    settings: Settings,
    *,
    intake: Intake,
    models: ModelSource,
    dataplane: Dataplane | None = None,
    drift: BulkDrift | None = None,
    registry: Registry | None = None,
) -> list[FileRecord]:
    """Score every normalized score drop that has no output yet; safe to run concurrently."""
    with bound(model=settings.name):
        return _sweep(settings, intake, models, dataplane, drift, registry)


def _sweep(
    settings: Settings,
    intake: Intake,
    models: ModelSource,
    dataplane: Dataplane | None,
    drift: BulkDrift | None = None,
    registry: Registry | None = None,
) -> list[FileRecord]:
    pending = intake.ledger.pending_score()
    if not pending:
        return []
    model = models()
    if model is None:
        log.info("sweep waiting for a model", extra={"pending": len(pending)})
        return []
    done = []
    for record in pending:
        result = score_drop(
            record,
            settings=settings,
            intake=intake,
            model=model,
            dataplane=dataplane,
            drift=drift,
            registry=registry,
        )
        if result is not None:
            done.append(result)
    return done


def on_arrival(
    settings: Settings,
    intake: Intake,
    models: ModelSource,
    dataplane: Dataplane | None = None,
    drift: BulkDrift | None = None,
    registry: Registry | None = None,
) -> Callable[[FileRecord], None]:
    """Build the intake's hook that scores a score drop as soon as it reaches the lake."""

    def hook(record: FileRecord) -> None:
        if record.kind != "score" or record.state != "normalized":
            return
        model = models()
        if model is None:
            with bound(model=settings.name):
                log.info("no model yet; the sweep will score it", extra={"file_id": record.id})
            return
        score_drop(
            record,
            settings=settings,
            intake=intake,
            model=model,
            dataplane=dataplane,
            drift=drift,
            registry=registry,
        )

    return hook


def standalone_sweep(settings: Settings) -> list[FileRecord]:
    """Run one sweep in a fresh process (the scheduler's job): load what it needs itself."""
    model = open_model(settings)
    registry = model.registry
    intake = Intake(ingest_config(settings), model.ledger)

    def champion() -> LoadedModel | None:
        version = registry.champion_version()
        if version is None:
            return None
        return load_version(registry, version)

    return sweep(
        settings, intake=intake, models=champion, drift=BulkDrift(model), registry=registry
    )
