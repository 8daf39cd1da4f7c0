"""No answer repeats a value the client sent: errors name the field and the kind of value.

Against a real server (waitress on 127.0.0.1) with auth on, hypothesis sends random text as the
value of every parameter a client controls (query strings of the API and the dashboard, path
segments of the protocols, a header, a JSON feature value) and checks the answer does not
contain it. Short values and values that the answer holds anyway (a word of the message, sent
with a neutral value too) prove nothing, so a value must hold 4 letters and be absent from that
baseline answer.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Callable, Iterator
from urllib.parse import quote

import pandas as pd
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.state.db import StateDB
from scoring.api.app import create_app
from scoring.lifecycle.registry import Registry
from scoring.settings import load_settings
from tests._server import serving
from tests.conftest import make_settings, register_trained

KEY = "no-echo-test-key-0123456789"
NEUTRAL = "Qz9Qz9Qz9"
ROW = {name: 0.01 for name in ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")}


@pytest.fixture(scope="module")
def server(tmp_path_factory, diabetes) -> Iterator[requests.Session]:
    settings = make_settings(tmp_path_factory.mktemp("echo"), server={"api_keys": [KEY]})
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    register_trained(settings, registry, diabetes)
    with serving(create_app(settings, registry=registry)) as url, requests.Session() as client:
        client.headers["Authorization"] = f"Bearer {KEY}"
        client.base_url = url  # type: ignore[attr-defined]
        yield client


def _get(path: str, param: str) -> Callable[[requests.Session, str], requests.Response]:
    def send(client: requests.Session, value: str) -> requests.Response:
        return client.get(client.base_url + path, params={param: value}, timeout=30)  # type: ignore[attr-defined]

    return send


def _path(template: str) -> Callable[[requests.Session, str], requests.Response]:
    def send(client: requests.Session, value: str) -> requests.Response:
        url = client.base_url + template.format(quote(value, safe=""))  # type: ignore[attr-defined]
        return client.get(url, timeout=30)

    return send


def _score_format(client: requests.Session, value: str) -> requests.Response:
    return client.post(
        client.base_url + "/score-file",  # type: ignore[attr-defined]
        params={"format": value},
        data=b"age,sex\n1,2\n",
        headers={"Content-Type": "text/csv"},
        timeout=30,
    )


def _train_force(client: requests.Session, value: str) -> requests.Response:
    return client.post(client.base_url + "/train", json={"force": value}, timeout=30)  # type: ignore[attr-defined]


def _feature(client: requests.Session, value: str) -> requests.Response:
    body = {"features": {**ROW, "bmi": value}}
    return client.post(client.base_url + "/predict", json=body, timeout=30)  # type: ignore[attr-defined]


def _content_type(client: requests.Session, value: str) -> requests.Response:
    return client.post(
        client.base_url + "/invocations",  # type: ignore[attr-defined]
        data=b"{}",
        headers={"Content-Type": value},
        timeout=30,
    )


SENDERS = {
    "GET /files?limit": _get("/files", "limit"),
    "GET /files?offset": _get("/files", "offset"),
    "GET /files?state": _get("/files", "state"),
    "GET /files?status": _get("/files", "status"),
    "GET /runs?limit": _get("/runs", "limit"),
    "GET /runs?state": _get("/runs", "state"),
    "GET /audit?limit": _get("/audit", "limit"),
    "GET /audit?key": _get("/audit", "key"),
    "GET /ui/models?v": _get("/ui/models", "v"),
    "GET /ui/runs?offset": _get("/ui/runs", "offset"),
    "GET /ui/files?state": _get("/ui/files", "state"),
    "GET /ui/files?kind": _get("/ui/files", "kind"),
    "GET /ui/files?offset": _get("/ui/files", "offset"),
    "GET /v2/models/<name>": _path("/v2/models/{}"),
    "GET /v2/models/default/versions/<v>": _path("/v2/models/default/versions/{}"),
    "GET /v1/models/<name>": _path("/v1/models/{}"),
    "GET /models/<name>/versions": _path("/models/{}/versions"),
    "POST /score-file?format": _score_format,
    "POST /train force": _train_force,
    "POST /predict feature value": _feature,
    "POST /invocations Content-Type": _content_type,
}
FLAGS = {"true", "yes", "false", "no"}  # /train's accepted values would start a retrain


def has_letters(value: str) -> bool:
    return sum(c.isalpha() for c in value) >= 4


def answer_text(response: requests.Response) -> str:
    """Everything a client reads: the body, decoded (JSON escapes, HTML entities), and headers."""
    text = response.text
    try:
        text += " " + str(response.json())
    except ValueError:
        text += " " + html.unescape(text)
    return text + " " + str(dict(response.headers))


def header_safe(value: str) -> bool:
    return value.isascii() and value.isprintable() and value.strip() == value


values = st.text(min_size=4, max_size=40).filter(has_letters)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(where=st.sampled_from(sorted(SENDERS)), value=values)
def test_no_answer_repeats_a_value_it_was_sent(server, where, value):
    if where == "POST /train force" and value.strip().lower() in FLAGS:
        return
    if where == "POST /invocations Content-Type" and not header_safe(value):
        return
    send = SENDERS[where]
    baseline = answer_text(send(server, NEUTRAL))
    answer = send(server, value)
    assert answer.status_code < 500, answer.text
    if value in baseline:  # a word the answer holds whatever was sent
        return
    assert value not in answer_text(answer), (where, answer.status_code, answer.text[:300])


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("GET /files?limit", "²"),  # the campaign's: "problem": "got '²'"
        ("GET /ui/models?v", '"><script>alert(1)</script>'),  # the campaign's
        ("GET /files?state", "<script>nope</script>"),
        ("GET /v2/models/<name>", "<img src=x onerror=alert(1)>"),
        ("GET /v2/models/default/versions/<v>", "evilversion"),
        ("POST /invocations Content-Type", "text/evil-type"),
        ("POST /score-file?format", "evilformat"),
        ("POST /train force", "evilflag"),
    ],
)
def test_the_campaigns_values_are_described_never_repeated(server, where, value):
    answer = SENDERS[where](server, value)
    assert 400 <= answer.status_code < 500, answer.text
    assert value not in answer_text(answer)
    assert "script" not in answer.text


def test_an_unknown_model_picked_in_the_dashboard_is_not_repeated(tmp_path):
    text = """[paths]\ndata_dir = "data"\n[models.price]\ntarget = "price"\n[models.churn]
target = "churned"\n"""
    (tmp_path / "settings.toml").write_text(text, encoding="utf-8")
    config = load_settings(tmp_path / "settings.toml", env={"DROPSCORE_API_KEYS": KEY})
    with serving(create_app(config)) as url:
        answer = requests.get(
            f"{url}/ui/models",
            params={"model": "<script>pickme</script>"},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=30,
        )
    assert answer.status_code == 404
    assert "pickme" not in answer_text(answer) and "price, churn" in answer.text


def test_an_unknown_sheet_is_not_repeated(server):
    frame = pd.DataFrame([ROW])
    book = io.BytesIO()
    frame.to_excel(book, index=False, sheet_name="Data")
    answer = server.post(
        server.base_url + "/score-file",  # type: ignore[attr-defined]
        params={"sheet": "evilsheetname"},
        files={"file": ("rows.xlsx", book.getvalue())},
        timeout=60,
    )
    assert answer.status_code == 422, answer.text
    assert "evilsheetname" not in answer_text(answer)
    assert re.search("sheets are 'Data'", answer.text)
