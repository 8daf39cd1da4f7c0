"""``dropscore keys add|list|revoke`` and ``dropscore audit``: who may call the API, who did what.

Registered on the main command group by ``scoring/service/cli.py`` (``COMMANDS``). A key is printed
once, alone on standard output (so ``KEY=$(dropscore keys add ci --role predict)`` works), and
never again: the store keeps only its hash.
"""

from __future__ import annotations

import json
from typing import Any

import click

from scoring.keys_protocol import ROLES
from scoring.service.tables import text_table

ROLE_CHOICE = click.Choice(ROLES)


def cli_user() -> str:
    """Name who ran a command, for records an API request would sign with its key's name."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name in some containers
        return "cli"


def _settings() -> Any:
    """Reach the settings the ``dropscore`` group loaded (its Context sits at the root)."""
    return click.get_current_context().find_root().obj.settings


def _shared() -> Any:
    """Open the data folder's shared stores (keys, audit trail), as the API does."""
    from scoring.models.factory import open_shared

    return open_shared(_settings())


@click.group("keys")
def keys() -> None:
    """Manage named API keys and their roles (predict, operate, admin)."""


@keys.command("add")
@click.argument("name")
@click.option(
    "--role",
    type=ROLE_CHOICE,
    required=True,
    help="predict: predict, score, read; operate: also train, promote; admin: all",
)
def keys_add(name: str, role: str) -> None:
    """Create a key named NAME and print it once."""
    from scoring.errors import DropscoreError

    try:
        key = _shared().keys.add(name, role)
    except DropscoreError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"key {name!r} created with role {role!r}:", err=True)
    click.echo(key)
    click.echo("Store it now: it will not be shown again.", err=True)


@keys.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="include revoked keys")
def keys_list(include_revoked: bool) -> None:
    """List keys: names, roles and dates, never the keys themselves."""
    from scoring.keys import settings_entries

    rows = [["name", "role", "created", "revoked"]]
    for _digest, identity in settings_entries(_settings().server.api_keys):
        rows.append([identity.name, identity.role, "(settings)", ""])
    for info in _shared().keys.list(include_revoked=include_revoked):
        rows.append([info.name, info.role, info.created_at[:19], (info.revoked_at or "")[:19]])
    if len(rows) == 1:
        click.echo("no keys: the API is open to anyone who can reach it")
        return
    click.echo(text_table(rows))


@keys.command("revoke")
@click.argument("name")
def keys_revoke(name: str) -> None:
    """Stop the key named NAME from working (within a second in running servers); its dashboard
    sessions end at once."""
    from scoring.errors import DropscoreError
    from scoring.keys import SETTINGS_PREFIX

    if name.startswith(SETTINGS_PREFIX):
        raise click.ClickException(f"{name!r} comes from [server] api_keys: remove it there")
    try:
        _shared().keys.revoke(name)
    except DropscoreError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"key {name!r} revoked")


@click.command("audit")
@click.option("--key", "key_name", default=None, help="only the requests of this key")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON lines")
def audit(key_name: str | None, limit: int, as_json: bool) -> None:
    """List state-changing requests and the keys that sent them, newest first."""
    from scoring.audit import TABLE_HEADER

    entries = _shared().audit.list(limit=limit, key_name=key_name)
    if as_json:
        for entry in entries:
            click.echo(json.dumps(entry.to_dict()))
        return
    if not entries:
        click.echo("no audited requests yet")
        return
    click.echo(text_table([TABLE_HEADER, *(e.table_row() for e in entries)]))


COMMANDS = (keys, audit)
