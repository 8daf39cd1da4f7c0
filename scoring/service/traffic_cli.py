"""``dropscore traffic``: show or set a model's shadow or canary traffic, for a person.

Without a mode it prints the setting and the per-day figures; with one it validates the setting
the way ``PUT /models/<name>/traffic`` does (the same ``parse_setting``) and stores it in the
model's state database, where every serving process follows it within a second. ``--rule``
(canary only) lets the leader's scheduler promote or roll back by the live figures; the show
prints the rule and its last check. Nothing here imports scikit-learn: the command answers at
once.
"""

from __future__ import annotations

from typing import Any

import click

from scoring.service.keys_cli import cli_user
from scoring.service.tables import text_table
from scoring.traffic.rule import last_check, rule_words
from scoring.traffic.setting import LATEST, MODES


def _model() -> Any:
    """Open the model the command is about (the group's settings; nothing is loaded)."""
    from scoring.models.factory import open_model

    return open_model(click.get_current_context().find_root().obj.settings)


@click.command("traffic")
@click.argument("mode", required=False, type=click.Choice(MODES))
@click.option("--version", "version", default=None, help="the challenger: a number or latest")
@click.option("--fraction", type=float, default=None, help="share of requests, 0 to 1")
@click.option("--key", default=None, help="canary: the id column or header that keeps clients")
@click.option(
    "--rule",
    "rule",
    multiple=True,
    metavar="NAME=VALUE|default",
    help="canary: promote or roll back by rule (repeat for each limit; default: every default)",
)
def traffic_cmd(
    mode: str | None,
    version: str | None,
    fraction: float | None,
    key: str | None,
    rule: tuple[str, ...],
) -> None:
    """Show the model's traffic and its figures; with MODE (off, shadow, canary), set it."""
    model = _model()
    if mode is None:
        if version is not None or fraction is not None or key is not None or rule:
            raise click.UsageError("--version, --fraction, --key and --rule set a MODE: name one")
        _show(model)
        return
    _set(model, mode, version, fraction, key, _rule(rule))


def _rule(given: tuple[str, ...]) -> dict[str, Any] | None:
    """Read ``--rule NAME=VALUE`` (numbers) and ``--rule default`` into the API's rule object."""
    if not given:
        return None
    rule: dict[str, Any] = {}
    for item in given:
        if item == "default":
            continue
        name, sep, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or number is None:
            raise click.UsageError(f"--rule {item!r}: give NAME=NUMBER (or default)")
        rule[name.strip()] = int(number) if number.is_integer() and "." not in value else number
    return rule


def _set(
    model: Any,
    mode: str,
    version: str | None,
    fraction: float | None,
    key: str | None,
    rule: dict[str, Any] | None = None,
) -> None:
    from scoring.errors import DropscoreError
    from scoring.traffic.setting import pair_of, parse_setting

    body: dict[str, Any] = {"mode": mode}
    given = (("version", version), ("fraction", fraction), ("key", key), ("rule", rule))
    for name, value in given:
        if value is not None:
            body[name] = value
    try:
        setting = parse_setting(body)
    except DropscoreError as exc:
        problems = "; ".join(f"--{d['field']}: {d['problem']}" for d in exc.details)
        raise click.ClickException(problems or exc.message) from None
    known = [r.version for r in model.registry.list()]
    if setting.mode != "off" and isinstance(setting.version, int) and setting.version not in known:
        listed = ", ".join(map(str, known)) or "none yet"
        raise click.ClickException(
            f"--version: no version {setting.version}; the model has {listed}"
        )
    model.traffic.set(setting, by=cli_user(), pair=pair_of(setting, model.registry))
    click.echo(f"model {model.name}: {_describe(setting.to_dict())}")
    click.echo("every serving process follows within a second")


def _describe(setting: dict[str, Any]) -> str:
    if setting["mode"] == "off":
        return "traffic off: the champion answers every request"
    who = (
        "the newest version that is not the champion"
        if setting["version"] == LATEST
        else (f"version {setting['version']}")
    )
    share = f"{setting['fraction'] * 100:g}% of requests"
    if setting["mode"] == "shadow":
        return f"shadow: {who} repeats {share} after the champion answered"
    sticky = f", sticky by {setting['key']}" if setting["key"] else ", sticky by X-Canary-Key"
    return f"canary: {who} answers {share}{sticky}{_rule_words(setting.get('rule'))}"


def _rule_words(rule: dict[str, Any] | None) -> str:
    """Say what a canary's rule asks, in one clause (nothing without a rule)."""
    if not rule:
        return "; a person promotes or rolls back"
    return "; " + rule_words(rule)


def _show(model: Any) -> None:
    click.echo(f"model {model.name}: {_describe(model.traffic.get().to_dict())}")
    state = model.traffic.rule_state()
    line = last_check(None if state is None else state.last)
    if line:
        click.echo(line)
    days = model.traffic.days()
    if not days:
        click.echo("no live figures yet")
        return
    rows = [["day", "version", "kind", "requests", "rows", "errors", "mean ms", "agreement"]]
    for day, figures in days:
        shown = figures.summary(day.kind)
        rows.append(
            [
                day.day,
                str(day.version),
                day.kind,
                str(shown["requests"]),
                str(shown["rows"]),
                str(shown["errors"]),
                "" if shown["mean_latency_ms"] is None else f"{shown['mean_latency_ms']:.2f}",
                _agreement(shown),
            ]
        )
    click.echo(text_table(rows))


def _agreement(shown: dict[str, Any]) -> str:
    """Say how the shadow agreed: share equal, or mean |difference| and correlation."""
    if "agreement" in shown:
        return f"{shown['agreement']:.1%} equal"
    if shown.get("mean_abs_diff") is not None:
        r = shown.get("correlation")
        return f"MAD {shown['mean_abs_diff']:.4g}, r {'n/a' if r is None else f'{r:.4f}'}"
    dropped = shown.get("dropped")
    return f"{dropped} dropped" if dropped else ""
