"""Query-string parsing shared by the listing endpoints: bad values are 422s naming the field
and the kind of value sent (``scoring.value_kinds``), never the value."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from flask import request

from scoring.errors import ValidationFailed
from scoring.value_kinds import kind_of

MAX_DIGITS = 18  # any bound we use fits; longer strings are refused before int() sees them


@dataclass(frozen=True)
class Page:
    """One page of a listing: how many, from where, and the state asked for (None: any)."""

    limit: int
    offset: int
    state: str | None


def int_arg(name: str, default: int, low: int, high: int) -> int:
    """Read a bounded whole number from the query string, refusing anything else with a 422."""
    raw = request.args.get(name)
    if raw is None:
        return default
    # isdigit alone accepts '²' and other Unicode digits that int() rejects, and int() refuses
    # strings over 4,300 digits: only short ASCII digit strings reach it.
    ok = raw.isascii() and raw.isdigit() and len(raw) <= MAX_DIGITS
    if not ok or not low <= int(raw) <= high:
        got = "a whole number out of range" if ok else kind_of(raw)
        raise ValidationFailed(
            f"{name} must be a whole number from {low} to {high}; got {got}",
            [{"field": name, "problem": f"got {got}"}],
        )
    return int(raw)


def page_args(states: Iterable[str], what: str, default_limit: int, *names: str) -> Page:
    """Read limit, offset and a state filter (under the first of ``names`` sent) for a listing."""
    allowed = tuple(states)
    field, state = next(((n, request.args[n]) for n in names if request.args.get(n)), ("", None))
    if state is not None and state not in allowed:
        raise ValidationFailed(
            f"{field} is not a {what} state; expected one of {', '.join(allowed)}",
            [{"field": field, "problem": f"unknown state, got {kind_of(state)}"}],
        )
    limit = int_arg("limit", default_limit, 1, 1000)
    offset = int_arg("offset", 0, 0, 10**9)
    return Page(limit, offset, state)
