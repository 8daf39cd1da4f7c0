"""Body limits per endpoint: JSON bodies small (``max_json_mb``), uploads large (``max_upload_mb``).

In-process tests cover each refusal's JSON shape and the setting it names; one real ``serve``
takes a 150 MB CSV upload with the shipped defaults (over the old 100 MB cap for every body) and
refuses an 11 MB JSON body.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import requests

from scoring.api import limits
from scoring.api.app import create_app
from scoring.settings import load_settings

from .conftest import assert_error, free_port, make_settings
from .test_api import ROW
from .test_e2e_score import make_csv
from .test_e2e_serve import Server, cli_env

MB = 1024 * 1024


def _app(tmp_path, registry, **server):
    return create_app(make_settings(tmp_path, server=server), registry=registry).test_client()


def test_json_body_over_max_json_mb_is_413_naming_the_limit(tmp_path, registry, trained):
    client = _app(tmp_path, registry, max_json_mb=0.01, max_upload_mb=50)
    body = json.dumps({"features": ROW, "pad": "x" * 20_000})
    error = assert_error(
        client.post("/predict", data=body, content_type="application/json"),
        413,
        "too_large",
        "max_json_mb",
    )
    assert error["details"] == [{"setting": "server.max_json_mb", "limit_mb": 0.01}]


def test_upload_over_max_json_mb_is_accepted(tmp_path, registry, trained, diabetes):
    client = _app(tmp_path, registry, max_json_mb=0.001, max_upload_mb=50)
    data = diabetes.drop(columns="target").to_csv(index=False).encode()
    assert len(data) > 0.001 * MB
    response = client.post("/score-file?format=csv", data=data, content_type="text/csv")
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert int(response.headers["X-Rows-Scored"]) == len(diabetes)


def test_upload_over_max_upload_mb_is_413_naming_the_limit(tmp_path, registry, trained):
    client = _app(tmp_path, registry, max_upload_mb=0.01)
    data = b"age,sex\n" + b"0.1,0.2\n" * 5000
    response = client.post(
        "/score-file",
        data={"file": (io.BytesIO(data), "x.csv")},
        content_type="multipart/form-data",
    )
    assert_error(response, 413, "too_large", "max_upload_mb")


def test_upload_without_content_length_is_cut_off_at_the_limit(tmp_path, registry, trained):
    client = _app(tmp_path, registry, max_upload_mb=0.01)
    data = b"age,sex\n" + b"0.1,0.2\n" * 5000
    response = client.post(
        "/score-file",
        input_stream=io.BytesIO(data),  # no Content-Length: read until the limit
        content_type="text/csv",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},  # as waitress and gunicorn set it
    )
    assert_error(response, 413, "too_large", "max_upload_mb")


def test_upload_the_disk_cannot_hold_is_507(tmp_path, registry, trained, monkeypatch):
    import shutil

    client = _app(tmp_path, registry)
    real = shutil.disk_usage

    def nearly_full(path):  # the data folder's disk with 1 MB free; nothing else changes
        return real(path)._replace(free=MB)

    monkeypatch.setattr(limits.shutil, "disk_usage", nearly_full)
    data = b"age,sex\n" + b"0.1,0.2\n" * 100_000
    error = assert_error(
        client.post("/score-file", data=data, content_type="text/csv"),
        507,
        "insufficient_storage",
    )
    assert error["details"][0]["free_mb"] == 1.0
    assert not list(tmp_path.glob("data/.upload-*"))


def test_deprecated_max_request_mb_sets_both_limits_unless_they_are_set(tmp_path):
    both = load_settings(None, env={}, overrides={"server": {"max_request_mb": 300}})
    assert (both.server.max_json_mb, both.server.max_upload_mb) == (300, 300)
    one = load_settings(
        None, env={}, overrides={"server": {"max_request_mb": 300, "max_json_mb": 5}}
    )
    assert (one.server.max_json_mb, one.server.max_upload_mb) == (5, 300)
    default = load_settings(None, env={})
    assert (default.server.max_json_mb, default.server.max_upload_mb) == (10, 2048)


@pytest.mark.slow
def test_real_server_takes_a_150_mb_upload_and_refuses_an_11_mb_json_body(tmp_path: Path):
    port = free_port()
    server = Server(["serve"], cli_env(tmp_path / "data", port), port, tmp_path / "server.log")
    try:
        server.ready(timeout=90)  # the first start trains the sample model
        upload = tmp_path / "big.csv"
        rows = make_csv(upload, 150)
        assert upload.stat().st_size > 150 * MB * 0.99
        with (
            open(upload, "rb") as body,
            requests.post(
                server.url + "/score-file?format=parquet",
                data=body,  # streamed with its Content-Length, as curl --data-binary does
                headers={"Content-Type": "text/csv"},
                stream=True,
                timeout=(5, 300),
            ) as response,
        ):
            assert response.status_code == 200, response.text[:500]
            for _ in response.iter_content(MB):
                pass
            assert int(response.headers["X-Rows-Scored"]) == rows

        big_json = json.dumps({"features": ROW, "pad": "x" * (11 * MB)})
        refused = requests.post(
            server.url + "/predict",
            data=big_json,
            headers={"Content-Type": "application/json"},
            timeout=60,
        )
        assert refused.status_code == 413
        error = refused.json()["error"]
        assert error["code"] == "too_large" and "max_json_mb = 10" in error["message"]
        assert not list((tmp_path / "data").glob(".upload-*"))
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(timeout=30)
