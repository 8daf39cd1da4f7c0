"""Query-string parsing shared by the listing endpoints: bad values are 422s naming the field."""

from __future__ import annotations

from flask import request

from scoring.errors import ValidationFailed


def int_arg(name: str, default: int, low: int, high: int) -> int:
    """Read a bounded whole number from the query string."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise ValidationFailed(
            f"{name} must be a whole number from {low} to {high}",
            [{"field": name, "problem": f"got {raw!r}"}],
        )
    return int(raw)
