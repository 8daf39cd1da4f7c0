"""Which version of a model a scoring request names: a path's ``/versions/<v>/`` or ``?version=``.

Both name the same thing, so one reader serves every route that takes them; the query
parameter is declared once here and listed in each such route's ``@operation`` (the query
check refuses it on routes that do not declare it).
"""

from __future__ import annotations

from typing import Any

from flask import request

from scoring.api.openapi import query_param
from scoring.errors import ValidationFailed

MAX_DIGITS = 18  # a version is a SQLite integer

VERSION_QUERY: dict[str, Any] = query_param(
    "version",
    {"type": "integer", "minimum": 1},
    "the registered version to answer with (any status: champion, challenger, rejected,"
    " archived); default the champion. A version the model lacks is a 404 listing its versions",
)


def requested_version(path_version: int | None = None) -> int | None:
    """Return the version the request names (path or ``?version=``), None for the champion."""
    raw = request.args.get("version")
    if raw is None:
        return path_version
    ok = raw.isascii() and raw.isdigit() and len(raw) <= MAX_DIGITS
    if not ok:
        raise ValidationFailed(
            "version must be a whole number, a registered version of the model",
            [{"field": "version", "problem": "not a whole number"}],
        )
    if path_version is not None and int(raw) != path_version:
        raise ValidationFailed(
            f"the path names version {path_version} and ?version= names {int(raw)}; name one",
            [{"field": "version", "problem": "differs from the path's version"}],
        )
    return int(raw)
