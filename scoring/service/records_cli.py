"""``dropscore runs``, ``models [show|promote]`` and ``files``: the records, read by a person.

Registered on the main command group by ``scoring/service/cli.py`` (``COMMANDS``). These commands
never build a model, so they import neither scikit-learn, pandas nor skops, and answer at once.
"""

from __future__ import annotations

import json
from typing import Any

import click

from ingest.state.records import STATES as LEDGER_STATES
from scoring.service.keys_cli import cli_user
from scoring.service.tables import terminal_width, text_table


def _settings() -> Any:
    """Reach the settings the ``dropscore`` group loaded (its Context sits at the root)."""
    return click.get_current_context().find_root().obj.settings


def _model() -> Any:
    """Open the model a command is about (nothing is loaded: scikit-learn only with a model)."""
    from scoring.models.factory import open_model

    return open_model(_settings())


@click.command("runs")
@click.argument("run_id", type=int, required=False)
@click.option("--limit", default=20, show_default=True)
def runs_cmd(run_id: int | None, limit: int) -> None:
    """List retrain runs, newest first; with RUN_ID, print that run as JSON."""
    from scoring.errors import DropscoreError

    store = _model().runs
    if run_id is not None:
        try:
            click.echo(json.dumps(store.get(run_id).to_dict(), indent=2))
        except DropscoreError as exc:
            raise click.ClickException(exc.message) from None
        return
    records = store.list(limit=limit)
    if not records:
        click.echo("no retrain runs yet")
        return
    rows = [
        ["id", "trigger", "state", "started", "seconds", "rows", "version", "promoted", "reason"]
    ]
    for r in records:
        rows.append(
            [
                str(r.id),
                r.trigger,
                r.state,
                (r.started_at or "")[:19],
                _seconds(r),
                "" if r.rows is None else str(r.rows),
                "" if r.version is None else str(r.version),
                {True: "yes", False: "no", None: ""}[r.promoted],
                r.error or r.reason or "",
            ]
        )
    click.echo(text_table(rows, width=terminal_width()))  # the whole reason, wrapped


def _seconds(run: Any) -> str:
    from datetime import datetime

    if not (run.started_at and run.finished_at):
        return ""
    delta = datetime.fromisoformat(run.finished_at) - datetime.fromisoformat(run.started_at)
    return f"{delta.total_seconds():.1f}"


@click.group(invoke_without_command=True)
@click.pass_context
def models(click_ctx: click.Context) -> None:
    """List model versions; `show V` inspects one, `promote V` makes it champion."""
    if click_ctx.invoked_subcommand is None:
        registry = _model().registry
        rows = [["version", "status", "created", "estimator", "metrics", "reason", "promoted by"]]
        for m in registry.list():
            metrics = " ".join(f"{k}={fmt_number(v)}" for k, v in m.metrics.items())
            rows.append(
                [
                    str(m.version),
                    m.status,
                    m.created_at[:19],
                    m.estimator or "",
                    metrics,
                    m.reason or "",
                    m.promoted_by or "",
                ]
            )
        if len(rows) == 1:
            click.echo("no models yet: run `dropscore train` or drop a labelled file")
            return
        click.echo(text_table(rows))


@models.command("show")
@click.argument("version", type=int)
def models_show(version: int) -> None:
    """Print a version's record and model card as JSON."""
    from scoring.errors import DropscoreError

    registry = _model().registry
    try:
        record = registry.get(version).to_dict()
        record["card"] = registry.card(version)
    except DropscoreError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(json.dumps(record, indent=2))


@models.command("promote")
@click.argument("version", type=int)
def models_promote(version: int) -> None:
    """Make VERSION the champion (also how to roll back)."""
    from scoring.errors import DropscoreError

    registry = _model().registry
    try:
        registry.load_pipeline(version)  # refuse to promote a file that would not load
        record = registry.promote(version, "promoted by CLI", by=cli_user())
    except DropscoreError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"version {record.version} is now the champion")


@click.command("files")
@click.option(
    "--status",
    default=None,
    help="only files in this ledger state",
    type=click.Choice(LEDGER_STATES),
)
@click.option("--limit", default=50, show_default=True)
def files_cmd(status: str | None, limit: int) -> None:
    """Show the file ledger, newest first."""
    from ingest.base.names import shown

    records = _model().ledger.list(state=status, limit=limit)
    if not records:
        click.echo("no files")
        return
    rows = [["id", "state", "kind", "rows", "received", "name", "details"]]
    for r in records:
        rows.append(
            [
                str(r.id),
                r.state,
                r.kind,
                str(r.rows or ""),
                (r.received_at or "")[:19],
                shown(r.original_name),  # one line, whatever an older release stored
                r.details,
            ]
        )
    click.echo(text_table(rows, width=terminal_width()))  # the whole details, wrapped


def fmt_number(value: Any) -> str:
    """Show a metric as people read it: four decimals, or n/a when there is none."""
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


COMMANDS = (runs_cmd, models, files_cmd)
