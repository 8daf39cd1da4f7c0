"""``dropscore jobs``: list, show and submit a model's batch jobs, for a person.

``submit IN OUT`` checks the names the way ``POST /models/<name>/jobs`` does and queues the job
in the model's state database; a running ``serve`` or ``worker`` (any replica) runs it. Nothing
here scores or imports scikit-learn: the command answers at once.
"""

from __future__ import annotations

from typing import Any

import click

from scoring.service.keys_cli import cli_user
from scoring.service.tables import terminal_width, text_table


def _model() -> Any:
    """Open the model the command is about (the group's settings; nothing is loaded)."""
    from scoring.models.factory import open_model

    return open_model(click.get_current_context().find_root().obj.settings)


@click.group("jobs", invoke_without_command=True)
@click.pass_context
def jobs_cmd(ctx: click.Context) -> None:
    """List the model's batch jobs (or: show ID, submit IN OUT)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_cmd)


@jobs_cmd.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
def list_cmd(limit: int = 20) -> None:
    """List the newest batch jobs."""
    model = _model()
    jobs = model.jobs.list(limit=limit)
    if not jobs:
        click.echo(f"model {model.name}: no batch jobs yet (dropscore jobs submit IN OUT)")
        return
    rows = [["id", "state", "input", "output", "rows", "failed", "submitted", "error"]]
    for job in jobs:
        rows.append(
            [
                str(job.id),
                job.state,
                job.input,
                job.output,
                _count(job.rows_scored, job.rows_failed),
                _count(job.rows_failed),
                job.submitted_at[:19].replace("T", " "),
                job.error or "",
            ]
        )
    click.echo(text_table(rows, terminal_width()))


@jobs_cmd.command("show")
@click.argument("job_id", type=int)
def show_cmd(job_id: int) -> None:
    """Show one batch job: its state, rows, failures and error."""
    model = _model()
    job = model.jobs.get(job_id)
    if job is None:
        raise click.ClickException(f"model {model.name} has no job {job_id}")
    click.echo(f"job {job.id} of model {model.name}: {job.state}")
    click.echo(f"  input   {job.input}")
    click.echo(f"  output  {job.output}")
    click.echo(f"  queued  {job.submitted_at} by {job.submitted_by or 'unknown'}")
    if job.started_at:
        click.echo(f"  started {job.started_at} (attempt {job.attempts})")
    if job.finished_at:
        click.echo(f"  ended   {job.finished_at}")
    if job.rows_scored is not None:
        click.echo(
            f"  scored {job.rows_scored:,} rows with model {job.model_version},"
            f" {job.rows_failed or 0:,} failed"
        )
    if job.error:
        click.echo(f"  error   {job.error}")


@jobs_cmd.command("submit")
@click.argument("input_name", metavar="IN")
@click.argument("output_name", metavar="OUT")
def submit_cmd(input_name: str, output_name: str) -> None:
    """Queue a job: IN (lake/score/<file>, outbox/<file> or s3://…) into OUT (outbox/… or s3://…)."""
    from scoring.errors import DropscoreError
    from scoring.jobs.locations import resolve_input, resolve_output

    model = _model()
    try:
        resolve_input(model.settings, input_name)
        resolve_output(model.settings, output_name)
    except DropscoreError as exc:
        raise click.ClickException(exc.message) from None
    job = model.jobs.submit(input_name, output_name, by=cli_user())
    click.echo(f"job {job.id} queued: {input_name} -> {output_name}")
    click.echo(f"a running serve or worker runs it; follow it with: dropscore jobs show {job.id}")


def _count(*parts: int | None) -> str:
    if parts[0] is None:
        return ""
    return f"{sum(p or 0 for p in parts):,}"
