"""``GET /openapi.json``: OpenAPI 3.0 built from the app's url_map and the notes beside each view.

The spec cannot drift from the code: its paths, methods and path parameters come from the
routes themselves (a path parameter's schema from its converter, e.g. ``<id:version>``), whether
an operation needs the bearer key from the app's ``Access`` (``scoring.api.auth``'s tables, which
include what each protocol declares), and the rest from an ``@operation(...)`` note on the
view. ``tests/test_openapi.py`` fails when a route has no note.

To describe a new endpoint, put a note under its route decorator::

    @bp.post("/things/<id:thing_id>")
    @operation(
        "Do the thing",                              # one-line summary
        body=json_body(THING),                       # request body, if any
        responses={200: response_object(THING_OUT)},   # success responses
        errors=(422, 503),                           # error statuses this view raises itself
    )
    def do_thing(thing_id: int) -> Response: ...

401 (when the endpoint needs a key), 404 (when the path has parameters) and 413 (when it takes
a body) are added by the builder, each with the one error body ``{"error": {...}}``.
Endpoints whose errors have another shape (another protocol's) pass ``responses`` for them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Blueprint, Flask, Response, current_app, jsonify
from werkzeug.routing import Rule

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Access:
    """Who may call what, as auth registered it on the app: open endpoints, each one's role."""

    open: frozenset[str]
    required_role: Callable[[str | None], str]


# Where ``scoring.api.auth.register_auth`` leaves the app's Access (read from the app, not
# imported: auth's tables include the protocols' declarations, whose views this module notes).
ACCESS_KEY = "dropscore.access"

OPENAPI_VERSION = "3.0.3"
CACHE_KEY = "dropscore.openapi"
# Routes that are not API operations: files for the docs page, Flask's static folder, and the
# dashboard's HTML pages (people's pages, not a machine interface).
UNDESCRIBED_ENDPOINTS = frozenset({"static", "docs.asset"})
UNDESCRIBED_BLUEPRINTS = frozenset({"pages"})
IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})
# A rule variable, with or without a converter: <name>, <id:name>, <conv(arg=1):name>.
_VARIABLE = re.compile(r"<(?:[^<>]*:)?(\w+)>")

ERRORS = {
    400: "The request could not be read (empty or malformed body)",
    401: "The API key is missing or wrong",
    403: "The API key's role is too low for this endpoint",
    404: "No such resource",
    409: "Conflicts with work in progress",
    413: "The body is over [server] max_json_mb (max_upload_mb for uploads), or has more rows "
    "than max_rows_per_request",
    415: "Unsupported file type",
    422: "Readable but invalid values; details name the field",
    503: "No model is loaded yet",
    507: "Not enough free disk for the upload and its scored output",
}

STRING: dict[str, Any] = {"type": "string"}
INTEGER: dict[str, Any] = {"type": "integer"}
NUMBER: dict[str, Any] = {"type": "number"}
BOOLEAN: dict[str, Any] = {"type": "boolean"}
ANY_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {"code": STRING, "message": STRING, "details": {"type": "array"}},
        }
    },
}


# The error bodies of the other protocols (scoring.api.errors picks one by blueprint).
MLFLOW_ERROR = {
    "type": "object",
    "required": ["error_code", "message"],
    "properties": {"error_code": STRING, "message": STRING},
}
OIP_ERROR = {"type": "object", "required": ["error"], "properties": {"error": STRING}}


def protocol_errors(schema: dict[str, Any], statuses: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Describe error responses in another protocol's body shape (they replace the automatic)."""
    return {status: response_object(schema, ERRORS[status]) for status in statuses}


@dataclass(frozen=True)
class Operation:
    """What a view says about itself; the route supplies the rest."""

    summary: str
    responses: dict[int, dict[str, Any]]
    errors: tuple[int, ...] = ()
    query: tuple[dict[str, Any], ...] = ()
    body: dict[str, Any] | None = None
    description: str = ""


def operation(
    summary: str,
    *,
    responses: dict[int, dict[str, Any]],
    errors: Iterable[int] = (),
    query: Iterable[dict[str, Any]] = (),
    body: dict[str, Any] | None = None,
    description: str = "",
) -> Callable[[F], F]:
    """Attach an operation note to a view, so the spec is written next to the code it describes."""
    note = Operation(summary, responses, tuple(errors), tuple(query), body, description)

    def attach(view: F) -> F:
        view.openapi = note  # type: ignore[attr-defined]  # mypy does not model function attributes
        return view

    return attach


def obj(optional: Iterable[str] = (), **properties: dict[str, Any]) -> dict[str, Any]:
    """Describe a JSON object whose properties are all present except the ``optional`` ones."""
    required = [name for name in properties if name not in set(optional)]
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """Allow ``null`` besides the schema (OpenAPI 3.0 spelling)."""
    return {**schema, "nullable": True}


def array(items: dict[str, Any]) -> dict[str, Any]:
    """Describe a JSON array of ``items``."""
    return {"type": "array", "items": items}


def response_object(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    """Build an OpenAPI Response Object: a description and a JSON body of this schema."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def json_body(schema: dict[str, Any], required: bool = True, **examples: Any) -> dict[str, Any]:
    """Describe a JSON request body, with named examples (clients and fuzzers start from them)."""
    media: dict[str, Any] = {"schema": schema}
    if examples:
        media["examples"] = {name: {"value": value} for name, value in examples.items()}
    return {"required": required, "content": {"application/json": media}}


def query_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    """Describe an optional query-string parameter."""
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def error_ref(status: int) -> dict[str, Any]:
    """Point at the shared error response for a status."""
    return {"$ref": f"#/components/responses/Error{status}"}


bp = Blueprint("openapi", __name__)


@bp.get("/openapi.json")
@operation("This OpenAPI document", responses={200: response_object(ANY_OBJECT)})
def openapi_json() -> Response:
    """Serve the spec, built once per app from its routes."""
    spec = current_app.extensions.get(CACHE_KEY)
    if spec is None:
        spec = current_app.extensions[CACHE_KEY] = build_spec(current_app)
    return jsonify(spec)


def build_spec(app: Flask) -> dict[str, Any]:
    """Build the OpenAPI document for every described route of ``app``."""
    access: Access = app.extensions[ACCESS_KEY]
    paths: dict[str, dict[str, Any]] = {}
    used: dict[str, int] = {}
    for rule in app.url_map.iter_rules():  # in the order the blueprints were registered
        note = note_for(app, rule)
        if note is None:
            continue
        methods = sorted((rule.methods or set()) - IGNORED_METHODS)
        for method in methods:
            op = _operation(rule, note, method if len(methods) > 1 else None, access)
            # One view may serve several routes (OIP's .../versions/<v>/...): ids stay unique.
            seen = used.get(op["operationId"], 0)
            used[op["operationId"]] = seen + 1
            if seen:
                op["operationId"] += f".{seen + 1}"
            paths.setdefault(openapi_path(rule), {})[method.lower()] = op
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "dropscore",
            "version": _version(),
            "description": "Batch and streaming scoring for tabular scikit-learn models.",
        },
        "paths": paths,
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR_SCHEMA},
            "responses": {
                f"Error{status}": response_object({"$ref": "#/components/schemas/Error"}, text)
                for status, text in ERRORS.items()
            },
        },
    }


def described_rules(app: Flask) -> list[Rule]:
    """Return the routes that are API operations (every route but docs assets and static)."""
    return [r for r in app.url_map.iter_rules() if _described(r)]


def _described(rule: Rule) -> bool:
    blueprint = rule.endpoint.partition(".")[0] if "." in rule.endpoint else ""
    return rule.endpoint not in UNDESCRIBED_ENDPOINTS and blueprint not in UNDESCRIBED_BLUEPRINTS


def note_for(app: Flask, rule: Rule) -> Operation | None:
    """Return the operation note of a route's view, or None for routes that are not operations."""
    if not _described(rule):
        return None
    return getattr(app.view_functions[rule.endpoint], "openapi", None)


def openapi_path(rule: Rule) -> str:
    """Spell a Flask rule the OpenAPI way: ``/models/<id:version>`` → ``/models/{version}``."""
    return _VARIABLE.sub(r"{\1}", rule.rule)


def _operation(rule: Rule, note: Operation, method: str | None, access: Access) -> dict[str, Any]:
    secured = rule.endpoint not in access.open
    params = [_path_param(rule, name) for name in sorted(rule.arguments)]
    responses: dict[str, Any] = {str(s): r for s, r in sorted(note.responses.items())}
    statuses = set(note.errors)
    statuses |= {401, 403} if secured else set()
    statuses |= {404} if params else set()
    statuses |= {413} if note.body else set()
    for status in sorted(statuses):
        responses.setdefault(str(status), error_ref(status))
    op: dict[str, Any] = {
        "operationId": rule.endpoint + (f".{method.lower()}" if method else ""),
        "tags": [rule.endpoint.partition(".")[0]],
        "summary": note.summary,
        "responses": responses,
    }
    if note.description:
        op["description"] = note.description
    if params or note.query:
        op["parameters"] = [*params, *note.query]
    if note.body:
        op["requestBody"] = note.body
    if secured:
        op["x-required-role"] = access.required_role(rule.endpoint)  # predict < operate < admin
    else:
        op["security"] = []
    return op


def _path_param(rule: Rule, name: str) -> dict[str, Any]:
    # Werkzeug keeps a rule's converter instances by argument name.
    converter = rule._converters[name]
    schema = getattr(converter, "openapi", None) or {"type": "string"}
    return {"name": name, "in": "path", "required": True, "schema": dict(schema)}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dropscore")
    except PackageNotFoundError:
        return "0"
