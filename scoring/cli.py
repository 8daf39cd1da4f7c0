"""The ``dropscore`` command: the operational entry points, each calling the library."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from scoring.settings import Settings, SettingsError, load_settings

DEFAULT_SETTINGS = "settings.toml"


class Context:
    """Load settings on first use, so ``--help`` works even with a broken settings file."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            path = self.path
            if path is None and Path(DEFAULT_SETTINGS).is_file():
                import os

                path = os.environ.get("DROPSCORE_SETTINGS") or DEFAULT_SETTINGS
            try:
                self._settings = load_settings(path)
            except SettingsError as exc:
                raise click.ClickException(str(exc)) from None
        return self._settings


pass_ctx = click.make_pass_decorator(Context)


@click.group()
@click.option(
    "--settings",
    "settings_path",
    type=click.Path(dir_okay=False),
    envvar="DROPSCORE_SETTINGS",
    help="settings file (default: ./settings.toml when present)",
)
@click.option("--log-level", default="INFO", show_default=True, help="logging level")
@click.pass_context
def main(ctx: click.Context, settings_path: str | None, log_level: str) -> None:
    """dropscore: batch and streaming scoring for tabular models."""
    from scoring.logs import configure_logging

    configure_logging(log_level.upper())
    ctx.obj = Context(settings_path)


@main.command()
@pass_ctx
def serve(ctx: Context) -> None:
    """Run API + watcher + scheduler in one process (trains a first model if none)."""
    from scoring.runtime import AlreadyRunning, run_serve

    try:
        run_serve(ctx.settings)
    except AlreadyRunning as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--workers", type=int, default=None, help="worker processes ([server] workers)")
@pass_ctx
def api(ctx: Context, workers: int | None) -> None:
    """Run the API only, under gunicorn; replicas share the data folder."""
    import os
    import shutil
    import tempfile

    settings = ctx.settings
    # prometheus_client chooses per-process or shared counters when first imported, so the
    # shared folder must be in the environment before anything imports it.
    metrics_dir = tempfile.mkdtemp(prefix="dropscore-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    from scoring.app import create_app, warm
    from scoring.server import serve_gunicorn

    try:
        serve_gunicorn(
            settings, lambda: warm(create_app(settings)), workers or settings.server.workers
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


@main.command()
@pass_ctx
def worker(ctx: Context) -> None:
    """Run the watcher and scheduler only; one per data folder."""
    from scoring.runtime import AlreadyRunning, run_worker

    try:
        run_worker(ctx.settings)
    except AlreadyRunning as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@pass_ctx
def train(ctx: Context) -> None:
    """Train now on the training lake, print metrics, promote by the rule."""
    from scoring.lifecycle import TrainingRefused, train_and_decide
    from scoring.registry import Registry
    from scoring.runtime import open_intake

    settings = ctx.settings
    _config, _ledger, intake = open_intake(settings)
    registry = Registry(settings.models_dir, settings.db_path)
    if settings.training.bootstrap_data is not None and settings.training.bootstrap_data.is_file():
        intake.bootstrap(settings.training.bootstrap_data)
    try:
        outcome = train_and_decide(
            settings, registry, trigger="cli", progress=lambda m: click.echo(m, err=True)
        )
    except TrainingRefused as exc:
        raise click.ClickException(f"training refused: {exc}") from None
    click.echo(_metrics_table(outcome))
    verdict = "promoted to champion" if outcome.decision.promote else "not promoted"
    click.echo(f"\nversion {outcome.version}: {verdict} ({outcome.decision.reason})")


def _metrics_table(outcome: Any) -> str:
    header = ["metric", f"v{outcome.version} (new)"]
    if outcome.champion_metrics is not None:
        header.append(f"v{outcome.champion_version} (champion)")
    rows = [header]
    for name, value in outcome.metrics.items():
        row = [name, _fmt(value)]
        if outcome.champion_metrics is not None:
            row.append(_fmt(outcome.champion_metrics.get(name)))
        rows.append(row)
    return _table(rows)


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


@main.group(invoke_without_command=True)
@click.pass_context
def models(click_ctx: click.Context) -> None:
    """List model versions; `show V` inspects one, `promote V` makes it champion."""
    if click_ctx.invoked_subcommand is None:
        registry = _registry(click_ctx.find_object(Context).settings)
        rows = [["version", "status", "created", "estimator", "metrics", "reason"]]
        for m in registry.list():
            metrics = " ".join(f"{k}={_fmt(v)}" for k, v in m.metrics.items())
            rows.append(
                [str(m.version), m.status, m.created_at[:19], m.estimator or "", metrics,
                 m.reason or ""]
            )
        if len(rows) == 1:
            click.echo("no models yet: run `dropscore train` or drop a labelled file")
            return
        click.echo(_table(rows))


@models.command("show")
@click.argument("version", type=int)
@pass_ctx
def models_show(ctx: Context, version: int) -> None:
    """Print a version's record and model card as JSON."""
    from scoring.errors import DropscoreError

    registry = _registry(ctx.settings)
    try:
        record = registry.get(version).to_dict()
        record["card"] = registry.card(version)
    except DropscoreError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(json.dumps(record, indent=2))


@models.command("promote")
@click.argument("version", type=int)
@pass_ctx
def models_promote(ctx: Context, version: int) -> None:
    """Make VERSION the champion (also how to roll back)."""
    from scoring.errors import DropscoreError

    registry = _registry(ctx.settings)
    try:
        registry.load_pipeline(version)  # refuse to promote a file that would not load
        record = registry.promote(version, "promoted by CLI")
    except DropscoreError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"version {record.version} is now the champion")


def _registry(settings: Settings) -> Any:
    from scoring.registry import Registry

    return Registry(settings.models_dir, settings.db_path)


@main.command("ingest")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--kind", type=click.Choice(["train", "score"]), required=True)
@pass_ctx
def ingest_cmd(ctx: Context, files: tuple[str, ...], kind: str) -> None:
    """Ingest files as if dropped (the originals stay where they are)."""
    from scoring.runtime import open_intake

    _config, _ledger, intake = open_intake(ctx.settings)
    failed = 0
    for name in files:
        record = intake.take_copy(Path(name), kind)
        detail = f"{record.rows} rows" if record.state == "normalized" else ""
        if record.state == "quarantined":
            failed += 1
            detail = (record.error or {}).get("message", "")
        click.echo(f"{name}: #{record.id} {record.state} {detail}".rstrip())
    if failed:
        sys.exit(1)


@main.command("files")
@click.option("--status", default=None, help="only files in this ledger state")
@click.option("--limit", default=50, show_default=True)
@pass_ctx
def files_cmd(ctx: Context, status: str | None, limit: int) -> None:
    """Show the file ledger, newest first."""
    from ingest.ledger import Ledger

    settings = ctx.settings
    records = Ledger(settings.db_path).list(state=status, limit=limit)
    if not records:
        click.echo("no files")
        return
    rows = [["id", "state", "kind", "rows", "received", "name", "error"]]
    for r in records:
        error = (r.error or {}).get("message", "") if r.error else ""
        rows.append(
            [str(r.id), r.state, r.kind, str(r.rows or ""), (r.received_at or "")[:19],
             r.original_name, error[:80]]
        )
    click.echo(_table(rows))
