"""``dropscore init NAME --target COL [FILE]``: add a model in one command.

Reads a bounded sample of FILE (or of the first file already in the model's train inbox) with
the ingest readers and normalizer, proposes the model (``scoring.lifecycle.proposal``), appends
its ``[models.NAME]`` section to the settings file in use (``scoring.service.model_section``),
creates its folders, takes FILE into the model's training lake as its first training drop (so
the next ``dropscore serve`` trains and serves it) and tells a person what was decided, why, and
what to do next. In a folder without a settings file it writes one: the shipped file's commented
defaults (packaged with dropscore) followed by the new section.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ingest.base import atomic
from ingest.base.formats import is_unfinished_name
from ingest.base.layout import DEFAULT_MODEL, KINDS, DataLayout
from scoring.service import model_section
from scoring.service.model_section import check_model_name, section_text

if TYPE_CHECKING:  # imported when used: they load pyarrow and pandas
    from ingest.pipeline.sample import Sample
    from ingest.state.records import FileRecord
    from scoring.lifecycle.proposal import Proposal
    from scoring.settings import Settings

TASK_CHOICE = click.Choice(["classification", "regression"])
NEW_SETTINGS_FILE = "settings.toml"  # created in the working folder when no file is in use


def _root_context() -> Any:
    """Reach the Context the ``dropscore`` group made (it loads the settings on first use)."""
    return click.get_current_context().find_root().obj


def _names(text: str | None) -> tuple[str, ...] | None:
    """Split a comma-separated option; None when the option was not given."""
    if text is None:
        return None
    return tuple(n.strip() for n in text.split(",") if n.strip())


def first_drop(inbox: Path) -> Path | None:
    """Return the oldest finished file in an inbox (by time, then name), or None."""
    if not inbox.is_dir():
        return None
    files = [
        p
        for p in inbox.iterdir()
        if p.is_file() and not p.name.startswith(".") and not is_unfinished_name(p.name)
    ]
    return min(files, key=lambda p: (p.stat().st_mtime_ns, p.name), default=None)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a reader sees the old file or the new, never half.

    The file keeps its permission bits (a settings file may be readable by its owner only); a
    new one is its owner's only, as it may come to hold secrets.
    """
    atomic.write_bytes(path, data, keep_mode=True, mode=None if path.exists() else 0o600)


def section_values(proposal: Proposal) -> dict[str, Any]:
    """Return the keys written for a proposal, in the order [model] documents them."""
    return {
        "target": proposal.target,
        "features": list(proposal.features),
        "id_columns": list(proposal.id_columns),
        "estimator": proposal.estimator,
        "params": {},
    }


@click.command("init")
@click.argument("name")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--target", required=True, help="column the model learns to predict")
@click.option("--task", type=TASK_CHOICE, default=None, help="override the inferred task")
@click.option("--estimator", default=None, help="override the proposed estimator")
@click.option("--features", default=None, help="comma-separated feature columns (override)")
@click.option("--id-columns", default=None, help="comma-separated id columns (override)")
@click.option("--dry-run", is_flag=True, help="print the section; write and create nothing")
def init(
    name: str,
    file: Path | None,
    target: str,
    task: str | None,
    estimator: str | None,
    features: str | None,
    id_columns: str | None,
    dry_run: bool,
) -> None:
    """Add model NAME: inspect FILE (or its first drop), write [models.NAME], make its folders."""
    ctx = _root_context()
    settings = ctx.settings
    path = settings.source or Path.cwd() / NEW_SETTINGS_FILE
    new_file = not path.is_file()
    if new_file:
        existing = model_section.new_settings_text(model_section.sample_settings()).encode()
    else:
        existing = path.read_bytes()
    try:
        check_model_name(name, tomllib.loads(existing.decode("utf-8")))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    layout = DataLayout(settings.data_dir, name)
    sample_file = file or _first_drop_or_fail(layout)
    proposal, sample = _propose(
        sample_file, settings, target, task, estimator, features, id_columns
    )
    section = section_text(name, section_values(proposal))
    new_text = model_section.append_section(existing, section)
    try:
        model_section.appended_values(new_text, name)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    _explain(name, sample_file, proposal, sample)
    if dry_run:
        click.echo(f"\n# would append to {path}:\n{section}", nl=False)
        return
    write_atomic(path, new_text)
    layout.make_dirs()
    taken = None if file is None else _take(file, path, name)
    _next_steps(name, path, layout, new_file, taken)
    parsed = tomllib.loads(existing.decode("utf-8"))
    if taken is not None and taken.state == "quarantined":
        raise click.ClickException(
            f"{file} was quarantined: {(taken.error or {}).get('message', '')}"
        )
    if new_file:
        return
    if name != DEFAULT_MODEL and "model" not in parsed and "models" not in parsed:
        # the loader's rule: [model], or no model table at all, is the model 'default'
        click.echo(
            "note: this file had no [model] section, so it served one model, 'default', with the"
            " built-in [model] values; now it serves only its [models.*]. Add a [model] section"
            " (target = ...) to keep 'default' too."
        )


def _first_drop_or_fail(layout: DataLayout) -> Path:
    found = first_drop(layout.inbox("train"))
    if found is None:
        raise click.ClickException(
            f"no sample: give FILE, or drop a labelled file into {layout.inbox('train')}/ first"
        )
    return found


def _propose(
    file: Path,
    settings: Settings,
    target: str,
    task: str | None,
    estimator: str | None,
    features: str | None,
    id_columns: str | None,
) -> tuple[Proposal, Sample]:
    """Read the sample and build the proposal; every failure is one line for the user."""
    from ingest.base.errors import IngestError
    from ingest.pipeline.sample import read_sample
    from scoring.ingest_options import read_options
    from scoring.lifecycle import proposal as p

    try:
        sample = read_sample(file, read_options(settings))
    except IngestError as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    except OSError as exc:
        raise click.ClickException(f"{file}: {exc.strerror or exc}") from None
    columns = sample.table.column_names
    try:
        resolved = p.resolve([target], columns, sample.column_map, "target")[0]
        choices = p.Choices(
            task=task,
            estimator=estimator,
            features=_resolved(_names(features), columns, sample.column_map, "feature"),
            id_columns=_resolved(_names(id_columns), columns, sample.column_map, "id column"),
        )
        return p.propose(p.describe(sample.table), resolved, choices), sample
    except p.ProposalError as exc:
        raise click.ClickException(str(exc)) from None


def _resolved(
    names: tuple[str, ...] | None, columns: list[str], column_map: dict[str, str], what: str
) -> tuple[str, ...] | None:
    from scoring.lifecycle.proposal import resolve

    return None if names is None else resolve(names, columns, column_map, what)


def _explain(name: str, file: Path, proposal: Proposal, sample: Sample) -> None:
    """Print what was decided and why, for a person to check."""
    rows = sample.table.num_rows
    more = ", the first of a larger file" if sample.truncated else ""
    click.echo(f"model {name!r} from {file} ({rows:,} rows read{more}):")
    for reason in proposal.reasons:
        click.echo(f"  {reason}")
    for column, why in proposal.left_out:
        click.echo(f"  left out {column!r}: {why}")
    click.echo(f"  features ({len(proposal.features)}): {', '.join(proposal.features)}")
    for warning in proposal.warnings:
        click.echo(f"  warning: {warning}")


def _take(file: Path, path: Path, name: str) -> FileRecord:
    """Ingest FILE as the model's first training drop, checked as a dropped file would be."""
    from scoring.service.runtime import open_intake
    from scoring.settings import SettingsError, load_settings

    try:
        one = load_settings(path, check_params=False).for_model(name)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    _config, _ledger, intake = open_intake(one)
    return intake.take_copy(file, "train")


def _next_steps(
    name: str, path: Path, layout: DataLayout, new_file: bool, taken: FileRecord | None
) -> None:
    """Print what was written, made and taken, the folders to drop into, and what to do next."""
    what = "the commented defaults and " if new_file else ""
    click.echo(f"\nwrote {what}[models.{name}] to {path}")
    click.echo(f"created the folders under {layout.base}/:")
    for kind in KINDS:
        click.echo(f"  {kind:<6} drops: {layout.inbox(kind)}/")
    if taken is not None and taken.state in ("normalized", "duplicate"):
        rows = f"{taken.rows:,} rows, " if taken.rows is not None else ""
        click.echo(
            f"took {taken.original_name} as the first training drop ({rows}file #{taken.id}"
            f" {taken.state})"
        )
        click.echo(
            f"next: run `dropscore serve` here (`kill -HUP` it if it runs): it trains {name!r} on"
            f" it and serves it at /models/{name}/predict"
        )
        return
    click.echo(
        f"next: drop a labelled file into {layout.inbox('train')}/ to train it, and"
        " `kill -HUP` a running `dropscore serve` to serve it"
    )
