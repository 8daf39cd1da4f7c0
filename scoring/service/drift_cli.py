"""``dropscore drift``: a scored drop's drift (or any drift record's), as a table for people.

The same record ``GET /models/<name>/files/<id>/drift`` answers with: the verdict and why, then
one row per feature (drifted first) with its statistics, then the predictions. Reads the
model's state database only: nothing is scored, scikit-learn is never imported.
"""

from __future__ import annotations

import shutil
from typing import Any

import click

from scoring.service.tables import text_table

NONE = "-"


@click.command("drift")
@click.argument("file_id", required=False, type=int)
@click.option("--record", "record_id", type=int, default=None,
              help="a drift record by its id (an upload's X-Drift-Record, a `score` run's)")
def drift_cmd(file_id: int | None, record_id: int | None) -> None:  # fmt: skip
    """Show how a scored drop (FILE_ID) differs from its version's training data."""
    from scoring.models.factory import open_model

    if (file_id is None) == (record_id is None):
        raise click.UsageError("name a FILE_ID, or a drift record with --record ID")
    model = open_model(click.get_current_context().find_root().obj.settings)
    if record_id is not None:
        found = model.drift.get(record_id)
        if found is None:
            raise click.ClickException(f"model {model.name} has no drift record {record_id}")
    else:
        assert file_id is not None
        found = model.drift.for_file(file_id)
        if found is None:
            raise click.ClickException(_no_record(model, file_id))
    click.echo(headline(found.to_dict()))
    rows = found.to_dict()
    if rows["features"] or rows["prediction"]:
        click.echo("")
        click.echo(drift_table(rows, shutil.get_terminal_size().columns))


def _no_record(model: Any, file_id: int) -> str:
    """Say why a file has no drift record: not in the ledger, not scored, or scored before."""
    record = model.ledger.get(file_id)
    if record is None:
        return f"file {file_id} is not in model {model.name}'s ledger (`dropscore files` lists it)"
    if record.state != "scored":
        return f"file {file_id} is {record.state}, not scored: it has no drift"
    return (
        f"file {file_id} has no drift record: it was scored before drift was kept, or with"
        " [monitoring] drift_on_scoring = false"
    )


def headline(record: dict[str, Any]) -> str:
    """Say in one line what scored which rows and the verdict, with its reason."""
    where = (
        f"file {record['file_id']}" if record.get("file_id") is not None else record["source"]
    )
    if record.get("ref") and record.get("file_id") is None:
        where += f" {record['ref']}"
    verdict = str(record["verdict"]).replace("_", " ")
    return (
        f"{where}: {record['rows']:,} rows scored by version {record['model_version']}"
        f" — {verdict}: {record['reason']}"
    )


def drift_line(found: Any) -> str:
    """Say a run's drift in one line, with the command that shows the whole record."""
    verdict = str(found.verdict).replace("_", " ")
    return f"drift: {verdict} ({found.report['reason']}); dropscore drift --record {found.id}"


def drift_table(record: dict[str, Any], width: int | None = None) -> str:
    """Lay out one row per feature (drifted first) and one for the predictions."""
    rows = [["feature", "kind", "psi", "js", "ks p", "wasserstein", "nulls +", "outside", "drift"]]
    columns = [*record["features"], *([record["prediction"]] if record["prediction"] else [])]
    for one in columns:
        stats = one["stats"]
        rows.append(
            [
                one["name"],
                one["kind"],
                _num(stats.get("psi")),
                _num(stats.get("js")),
                _p(stats.get("ks_pvalue")),
                _num(stats.get("wasserstein")),
                _change(stats.get("null_rate_change")),
                _share(stats.get("out_of_range_share", stats.get("unseen_share"))),
                _verdict(one),
            ]
        )
    return text_table(rows, width)


def _verdict(one: dict[str, Any]) -> str:
    if one["drifted"] is None:
        return f"not compared: {one['reason']}"
    if not one["drifted"]:
        return "no"
    return "yes: " + "; ".join(one["why"])


def _num(value: Any) -> str:
    return NONE if value is None else f"{value:.3f}"


def _p(value: Any) -> str:
    if value is None:
        return NONE
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _change(value: Any) -> str:
    return NONE if value is None else f"{value * 100:+.1f}%".replace("+0.0%", "0.0%")


def _share(value: Any) -> str:
    return NONE if value is None else f"{value * 100:.1f}%"
