"""/openapi.json matches the routes, validates as OpenAPI 3, and /docs works with no network;
whole numbers in paths have one parser, so no path segment can reach a 500."""

from __future__ import annotations

import re

import pytest
from flask import Blueprint
from openapi_spec_validator import validate

from scoring.api.auth import OPEN_ENDPOINTS
from scoring.api.converters import MAX_ID, IdConverter
from scoring.api.openapi import (
    IGNORED_METHODS,
    MLFLOW_ERROR,
    OIP_ERROR,
    build_spec,
    described_rules,
    note_for,
    openapi_path,
)

from .conftest import assert_error, make_settings

KEY = "k-openapi-0123456789"


def spec_of(client) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return response.get_json()


def test_spec_is_valid_openapi(client):
    spec = spec_of(client)
    validate(spec)
    assert spec["openapi"].startswith("3.")


def test_every_route_is_an_operation_and_every_operation_a_route(app, client):
    """The drift test: a new route without an @operation note fails here."""
    spec = spec_of(client)
    routes = set()
    for rule in described_rules(app):
        assert note_for(app, rule) is not None, f"{rule.rule} ({rule.endpoint}) has no @operation"
        for method in (rule.methods or set()) - IGNORED_METHODS:
            routes.add((openapi_path(rule), method.lower()))
    operations = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert routes == operations
    ids = [op["operationId"] for item in spec["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_a_route_without_a_note_is_caught(settings):
    from scoring.api.app import create_app

    extra = Blueprint("extra", __name__)
    extra.add_url_rule("/extra", "extra", lambda: "")
    app = create_app(settings)
    app.register_blueprint(extra)
    missing = [r.rule for r in described_rules(app) if note_for(app, r) is None]
    assert missing == ["/extra"]
    assert "/extra" not in build_spec(app)["paths"]


PROTOCOL_ERRORS = {"mlflow": MLFLOW_ERROR, "oip": OIP_ERROR, "kserve": OIP_ERROR}


def test_security_and_error_responses(client):
    spec = spec_of(client)
    assert spec["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    assert spec["security"] == [{"bearer": []}]
    for path, item in spec["paths"].items():
        for method, op in item.items():
            statuses = set(op["responses"])
            assert any(s.startswith("2") for s in statuses), (method, path)
            # a view serving several routes numbers its ids: mlflow.ping, mlflow.ping.2
            endpoint = op["operationId"].rstrip("0123456789").rstrip(".")
            if endpoint in OPEN_ENDPOINTS:
                assert op["security"] == [] and "401" not in statuses, path
            else:
                assert "security" not in op and "401" in statuses, path
            if "{" in path:
                assert "404" in statuses, path
            if "requestBody" in op:
                assert "413" in statuses, path
            protocol = PROTOCOL_ERRORS.get(op["tags"][0])
            for status in statuses - {"200", "202"}:
                if status == "503" and endpoint in ("health.ready", "mlflow.ping"):
                    continue  # readiness probes answer their own body
                if protocol is None:
                    expected = {"$ref": f"#/components/responses/Error{status}"}
                    assert op["responses"][status] == expected, (path, status)
                else:  # another protocol's clients read another error shape
                    media = op["responses"][status]["content"]["application/json"]
                    assert media["schema"] == protocol, (path, status)
    error = spec["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["required"] == ["code", "message", "details"]


def test_path_integers_use_the_one_converter(app, client):
    """Every numbered path parameter is <id:...>: bounded, ASCII digits, an integer in the spec."""
    for rule in described_rules(app):
        for name, converter in rule._converters.items():
            assert type(converter).__name__ not in ("IntegerConverter", "FloatConverter"), rule
            if isinstance(converter, IdConverter):
                assert name in rule.arguments
    spec = spec_of(client)
    for path in (
        "/models/{version}",
        "/models/{version}/promote",
        "/runs/{run_id}",
        "/files/{file_id}",
    ):
        for op in spec["paths"][path].values():
            (param,) = op["parameters"][:1]
            assert param["schema"] == {"type": "integer", "minimum": 0, "maximum": MAX_ID}


BAD_IDS = ["²", "٣", "1²", "-1", "1.0", "0x1", str(MAX_ID + 1), "9" * 4301, "1" + "0" * 30]
ROUTES = [
    ("get", "/models/{}"),
    ("post", "/models/{}/promote"),
    ("get", "/runs/{}"),
    ("get", "/files/{}"),
]


@pytest.mark.parametrize("method,route", ROUTES)
@pytest.mark.parametrize("value", BAD_IDS)
def test_bad_path_ids_are_json_404s(client, trained, method, route, value):
    """Issue 11: Unicode digits, huge numbers and ids past SQLite's range were 500s."""
    assert_error(getattr(client, method)(route.format(value)), 404, "not_found")


@pytest.mark.parametrize("method,route", ROUTES)
def test_largest_id_is_a_plain_not_found(client, trained, method, route):
    assert_error(getattr(client, method)(route.format(MAX_ID)), 404, "not_found", str(MAX_ID))


def test_good_path_ids_still_work(client, trained):
    assert client.get(f"/models/{trained}").get_json()["version"] == str(trained)
    assert client.get(f"/models/000{trained}").get_json()["version"] == str(trained)
    assert client.post(f"/models/{trained}/promote").status_code == 200
    assert client.get("/models/current").status_code == 200


def test_docs_page_loads_only_local_assets(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    links = re.findall(r'(?:src|href|url:)\s*=?\s*"([^"]+)"', html)
    assert links and all(link.startswith("/") for link in links), links
    assert "/openapi.json" in links
    for link in links:
        response = client.get(link)
        assert response.status_code == 200, link
        assert response.content_length or response.get_data()
    assert client.get("/docs/assets/..%2f..%2f__init__.py").status_code == 404


@pytest.fixture
def keyed(tmp_path):
    from scoring.api.app import create_app

    return create_app(make_settings(tmp_path, server={"api_keys": [KEY]})).test_client()


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/docs/assets/swagger-ui.css"])
def test_spec_and_docs_need_the_key_like_predict(keyed, path):
    assert_error(keyed.get(path), 401, "unauthorized")
    ok = keyed.get(path, headers={"Authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200


def test_spec_requests_are_counted_in_metrics(client):
    client.get("/openapi.json")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'endpoint="openapi.openapi_json",method="GET",model="",status="200"' in text


def test_spec_is_built_once_per_app(app, client):
    first = spec_of(client)
    assert app.extensions["dropscore.openapi"] == first
    assert spec_of(client) == first


@pytest.mark.parametrize("query", ["/files?limit=²", "/runs?offset=²", "/runs?limit=" + "9" * 4301])
def test_bad_query_integers_are_422s(client, query):
    assert_error(client.get(query), 422, "invalid_input")
