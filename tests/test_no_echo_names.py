"""An unknown feature, input or output name is repeated only when it is a plain name.

Against a real server (waitress on 127.0.0.1), hypothesis sends random names holding markup or
other characters that are not letters or digits as an extra feature of ``/predict``, a column of
``/invocations`` (CSV header, ``dataframe_split``, ``dataframe_records``) and an input or output
of ``/v2/.../infer``, and checks the answer never holds the name; a plain unknown name such as
``bmii`` is still named, since it shows the sender the typo.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.state.db import StateDB
from scoring.api.app import create_app
from scoring.lifecycle.registry import Registry
from scoring.lifecycle.schema import normalize_name
from scoring.value_kinds import name_shown
from tests._server import serving
from tests.conftest import make_settings, register_trained
from tests.test_no_echo import answer_text

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
ROW = dict.fromkeys(FEATURES, 0.01)
NEUTRAL = "Qz9Qz9Qz9"

Send = Callable[[requests.Session, str], requests.Response]


@pytest.fixture(scope="module")
def server(tmp_path_factory, diabetes) -> Iterator[requests.Session]:
    settings_ = make_settings(tmp_path_factory.mktemp("names"))
    registry = Registry(settings_.models_dir, StateDB.at(settings_.db_path))
    register_trained(settings_, registry, diabetes)
    with serving(create_app(settings_, registry=registry)) as url, requests.Session() as client:
        client.base_url = url  # type: ignore[attr-defined]
        yield client


def _post(client: requests.Session, path: str, **kwargs: object) -> requests.Response:
    return client.post(client.base_url + path, timeout=30, **kwargs)  # type: ignore[attr-defined,arg-type]


def _predict(client: requests.Session, name: str) -> requests.Response:
    return _post(client, "/predict", json={"features": {**ROW, name: 1}})


def _csv(client: requests.Session, name: str) -> requests.Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*FEATURES, name])
    writer.writerow([0.01] * len(FEATURES) + [1])
    return _post(
        client, "/invocations", data=out.getvalue().encode(), headers={"Content-Type": "text/csv"}
    )


def _split(client: requests.Session, name: str) -> requests.Response:
    body = {"dataframe_split": {"columns": [*FEATURES, name], "data": [[0.01] * 10 + [1]]}}
    return _post(client, "/invocations", json=body)


def _records(client: requests.Session, name: str) -> requests.Response:
    return _post(client, "/invocations", json={"dataframe_records": [{**ROW, name: 1}]})


def _tensor(name: str) -> dict[str, object]:
    return {"name": name, "datatype": "FP64", "shape": [1], "data": [0.01]}


def _infer_input(client: requests.Session, name: str) -> requests.Response:
    inputs = [_tensor(f) for f in FEATURES] + [_tensor(name)]
    return _post(client, "/v2/models/default/infer", json={"inputs": inputs})


def _infer_output(client: requests.Session, name: str) -> requests.Response:
    body = {"inputs": [_tensor(f) for f in FEATURES], "outputs": [{"name": name}]}
    return _post(client, "/v2/models/default/infer", json=body)


def _infer_bool(client: requests.Session, name: str) -> requests.Response:
    inputs = [_tensor(f) for f in FEATURES[1:]]
    inputs.append({"name": name, "datatype": "BOOL", "shape": [1], "data": [True]})
    return _post(client, "/v2/models/default/infer", json={"inputs": inputs})


def _infer_text_data(client: requests.Session, name: str) -> requests.Response:
    inputs = [_tensor(f) for f in FEATURES] + [
        {"name": name, "datatype": "FP64", "shape": [1], "data": ["x"]}
    ]
    return _post(client, "/v2/models/default/infer", json={"inputs": inputs})


SENDERS: dict[str, Send] = {
    "/predict features": _predict,
    "/invocations CSV header": _csv,
    "/invocations dataframe_split": _split,
    "/invocations dataframe_records": _records,
    "/v2 infer input": _infer_input,
    "/v2 infer output": _infer_output,
    "/v2 infer BOOL input": _infer_bool,
    "/v2 infer input with text data": _infer_text_data,
}


def _unknown(name: str) -> bool:
    return normalize_name(name) not in FEATURES and name not in ("predict", "predict_proba")


def _odd(name: str) -> bool:
    """A name the helper must describe: it holds 4 letters and is not a plain name."""
    return sum(c.isalpha() for c in name) >= 4 and name_shown(name) != name and _unknown(name)


MARKUP = st.sampled_from(["<img src=x onerror=alert(1)>", "<script>", '"><b>', "&amp;", "{{7*7}}"])
odd_names = st.one_of(
    st.tuples(st.text(min_size=0, max_size=20), MARKUP, st.text(max_size=20)).map("".join),
    st.text(min_size=4, max_size=80),
).filter(_odd)
plain_names = st.from_regex(r"[a-z][a-z0-9_.-]{3,30}", fullmatch=True).filter(_unknown)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(where=st.sampled_from(sorted(SENDERS)), name=odd_names)
def test_a_name_that_is_not_plain_is_never_repeated(server, where, name):
    send = SENDERS[where]
    answer = send(server, name)
    assert 400 <= answer.status_code < 500, answer.text
    if name in answer_text(send(server, NEUTRAL)):  # a word the answer holds whatever was sent
        return
    assert name not in answer_text(answer), (where, answer.status_code, answer.text[:300])


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(where=st.sampled_from(sorted(SENDERS)), name=plain_names)
def test_a_plain_unknown_name_is_still_named(server, where, name):
    answer = SENDERS[where](server, name)
    assert 400 <= answer.status_code < 500, answer.text
    assert name in answer_text(answer), (where, answer.text[:300])


@pytest.mark.parametrize("where", sorted(SENDERS))
def test_the_reviewers_names(server, where):
    markup = "<img src=x onerror=alert(1)>"
    answer = SENDERS[where](server, markup)
    assert 400 <= answer.status_code < 500, answer.text
    assert markup not in answer_text(answer) and "onerror" not in answer.text
    assert "not letters or digits" in answer.text
    typo = SENDERS[where](server, "bmii")
    assert 400 <= typo.status_code < 500 and "bmii" in typo.text
