"""``--model NAME``: one definition, taken before the subcommand or after it.

A person types ``dropscore score fair.csv -o out.parquet --model fair`` as readily as
``dropscore --model fair score …``; both mean the same. The group and every command about one
model carry the same option (``model_option``); each occurrence is kept in the click context's
``meta`` (shared by the group and its subcommands), so the settings are loaded once, for the one
model named. Two different names on one command line are a one-line error; a name typed on the
command line wins over ``DROPSCORE_MODEL``.
"""

from __future__ import annotations

from typing import Any

import click
from click.core import ParameterSource

META_KEY = "dropscore.model"  # {"cli": name typed, "env": DROPSCORE_MODEL}
ENVVAR = "DROPSCORE_MODEL"
HELP = "the model a command is about (default: the only model, or 'default')"


def model_option(*, from_env: bool = False) -> click.Option:
    """Build the ``--model`` option; only the group's reads ``DROPSCORE_MODEL`` (once)."""
    return click.Option(
        ["--model"],
        envvar=ENVVAR if from_env else None,
        expose_value=False,
        callback=_given,
        metavar="NAME",
        help=HELP,
    )


def accept_model(command: click.Command) -> click.Command:
    """Let a command about one model (and a group's subcommands) take ``--model`` after its name."""
    command.params.append(model_option())
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            accept_model(sub)
    return command


def chosen_model(ctx: click.Context) -> str | None:
    """Return the model named on the command line, else by ``DROPSCORE_MODEL``, else None."""
    picked: dict[str, str] = ctx.meta.get(META_KEY, {})
    return picked.get("cli") or picked.get("env")


def _given(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """Keep a ``--model`` value; refuse a second, different one in one line."""
    if value is None:
        return
    picked: dict[str, str] = ctx.meta.setdefault(META_KEY, {})
    if ctx.get_parameter_source(param.name or "model") is ParameterSource.ENVIRONMENT:
        picked["env"] = value
        return
    earlier = picked.get("cli")
    if earlier is not None and earlier != value:
        raise click.ClickException(
            f"--model {earlier} and --model {value} contradict each other; name one model"
        )
    picked["cli"] = value
