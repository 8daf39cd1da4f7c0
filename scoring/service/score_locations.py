"""``dropscore score s3://…/in.parquet -o s3://…/out.parquet``: scoring where a URI is named.

``IN`` and ``-o OUT`` take an ``s3://`` URI (reached with ``[storage]``'s endpoint and region,
credentials from ``AWS_*``) besides a local path. With ``engine = "dask"`` a Parquet input is
read, scored and written by the workers themselves (``scoring.bulk.remote``): nothing goes
through this process but the plan. Otherwise this process scores a scratch copy and uploads
the output as one object. A local path keeps ``dropscore score``'s own checks and messages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ingest.lake.remote import is_s3
from scoring.settings import Settings


class Location(click.Path):
    """A local path, checked as ``click.Path`` checks it, or an ``s3://`` URI kept as text."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Pass an ``s3://`` URI through; check anything else as a path."""
        if isinstance(value, str) and is_s3(value):
            return value
        return super().convert(value, param, ctx)


def names_a_uri(*locations: object) -> bool:
    """Tell whether any of the command's locations is an ``s3://`` URI."""
    return any(isinstance(one, str) and is_s3(one) for one in locations)


def score_location(settings: Settings, src: str, dst: str | None, fmt: str | None) -> None:
    """Score IN into OUT where one of them is a URI; print the summary line."""
    from ingest.base.errors import IngestError
    from scoring.bulk.filesystems import workers_reach, workers_read
    from scoring.bulk.remote import score_on_workers
    from scoring.bulk.worker_models import model_ref
    from scoring.errors import DropscoreError
    from scoring.jobs.locations import output_format
    from scoring.models.factory import open_model
    from scoring.monitoring.bulk import BulkDrift
    from scoring.monitoring.records_protocol import CLI
    from scoring.service.drift_cli import drift_line
    from scoring.service.progress import summary_line

    if dst is None:
        raise click.ClickException("name the output with -o (an s3:// URI or a local path)")
    model = open_model(settings)
    version = model.registry.champion_version()
    if version is None:
        raise click.ClickException("no model yet: run `dropscore train` first")
    drift = BulkDrift(model)
    watch = drift.watch_version(version)  # on Dask, each worker watches its part
    address = settings.scoring.dask_address
    try:
        fmt = fmt or output_format(dst)
        summary = None
        if (
            settings.scoring.engine == "dask"
            and workers_read(src, address)
            and workers_reach(dst, address)
        ):
            ref = model_ref(model.name, model.registry, version)
            summary = score_on_workers(settings, src, dst, ref, fmt=fmt, observe=watch)
        if summary is None:  # not on Dask, or a CSV the workers cannot cut: read it here
            summary = _score_here(settings, model, version, src, dst, fmt, watch)
    except (DropscoreError, IngestError) as exc:
        raise click.ClickException(f"{src}: {exc.message}") from None
    except OSError as exc:
        raise click.ClickException(f"{src} → {dst}: {exc.strerror or exc}") from None
    except ValueError as exc:  # a malformed s3:// URI
        raise click.ClickException(str(exc)) from None
    said = summary_line(summary, Path(dst)).rsplit(" → ", 1)[0]  # Path() would fold s3://
    click.echo(f"{said} → {dst}")
    found = drift.record(watch, source=CLI, ref=src.rsplit("/", 1)[-1])
    if found is not None:
        click.echo(drift_line(found), err=True)  # stdout stays the one summary line


def _score_here(
    settings: Settings, model: Any, version: int, src: str, dst: str, fmt: str, watch: Any
) -> Any:
    from scoring.bulk.batch import score_path
    from scoring.bulk.engines import engine_for
    from scoring.bulk.transfer import readable, writable
    from scoring.ingest_options import read_options
    from scoring.lifecycle.champion import load_version

    with readable(settings, src) as path, writable(settings, dst) as out:
        return score_path(
            path,
            out,
            load_version(model.registry, version),
            read=read_options(settings),
            fmt=fmt,
            engine=engine_for(settings, registry=model.registry),
            observe=watch,
        )
