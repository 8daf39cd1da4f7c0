"""The one parser for whole numbers in URL paths: ``<id:name>`` in a route.

Werkzeug's ``int`` converter matches ``\\d+``, which takes Unicode digits (``²``, ``٣``) and
numbers of any length; ``int()`` then fails on them, or the database refuses the number
(SQLite past 2**63 - 1, PostgreSQL's INTEGER past 2**31 - 1), and the client got a 500. This
converter matches ASCII digits only and bounds the value, so any other path segment simply
matches no route: a 404 in the one JSON error shape.
"""

from __future__ import annotations

from typing import Any

from werkzeug.routing import BaseConverter, ValidationError

from ingest.base.layout import MODEL_NAME

# Ids and versions are INTEGER columns, 32-bit on PostgreSQL: ids beyond it cannot exist there,
# and one sent in a query is refused (a DataError), so no backend is asked about them.
MAX_ID = 2**31 - 1
_MAX_DIGITS = len(str(MAX_ID))


class IdConverter(BaseConverter):
    """A database id or model version: ASCII digits, 0 to 2**31 - 1."""

    regex = "[0-9]+"
    part_isolating = True
    # What /openapi.json says about a parameter of this kind (read by scoring.api.openapi).
    openapi: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": MAX_ID}

    def to_python(self, value: str) -> int:
        """Turn the segment into an int, or refuse the match (so the route is a 404)."""
        digits = value.lstrip("0") or "0"
        if len(digits) > _MAX_DIGITS or int(digits) > MAX_ID:
            raise ValidationError()
        return int(digits)

    def to_url(self, value: Any) -> str:
        """Build the segment for ``url_for``."""
        return str(int(value))


class ModelNameConverter(BaseConverter):
    """A model's name in a URL (``<model:name>``): a segment shaped like a model name.

    Model names start with a letter, so ``/models/3`` stays a version and ``/models/churn`` a
    model. The spec lists the names this server answers, so clients and the fuzzer start from
    them; any other well-formed name still reaches the view, which answers a 404 naming the
    models that exist.
    """

    regex = MODEL_NAME.pattern.strip("^$")
    part_isolating = True
    openapi: dict[str, Any] = {"type": "string"}


def model_name_converter(names: tuple[str, ...]) -> type[ModelNameConverter]:
    """The converter for one app, whose spec lists that app's model names."""
    schema = {"type": "string", "enum": list(names)}
    return type("ServedModelName", (ModelNameConverter,), {"openapi": schema})
