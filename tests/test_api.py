"""Every endpoint and every error path, through the Flask test client."""

from __future__ import annotations

import json

import pytest

from ingest.state.db import StateDB
from scoring.api.app import create_app

from .conftest import assert_error, make_settings, register_trained, wait_for

ROW = {
    "age": 0.038,
    "sex": 0.05,
    "bmi": 0.061,
    "bp": 0.021,
    "s1": -0.044,
    "s2": -0.034,
    "s3": -0.043,
    "s4": -0.002,
    "s5": 0.019,
    "s6": -0.017,
}


def test_predict_named_and_positional_agree(client, trained):
    named = client.post("/predict", json={"features": ROW})
    assert named.status_code == 200
    body = named.get_json()
    assert set(body) == {"prediction", "model_version"}
    assert body["model_version"] == "1"
    assert 100 < body["prediction"] < 300
    positional = client.post("/predict", json={"X_test": list(ROW.values())})
    assert positional.get_json() == body
    nested = client.post("/predict", json={"X_test": [list(ROW.values())]})
    assert nested.get_json() == body


def test_original_column_names_are_accepted(client, trained):
    row = {k.upper() + " ": v for k, v in ROW.items()}
    assert client.post("/predict", json={"features": row}).status_code == 200


def test_null_is_imputed(client, trained):
    row = dict(ROW, bmi=None)
    response = client.post("/predict", json={"features": row})
    assert response.status_code == 200


def test_body_parsed_whatever_the_content_type(client, trained):
    response = client.post(
        "/predict",
        data=json.dumps({"X_test": list(ROW.values())}),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "code", "fragment"),
    [
        (b"", 400, "bad_request", "body is empty"),
        (b"{not json", 400, "bad_request", "not valid JSON"),
        (b"\xff\xfe", 400, "bad_request", "not valid JSON"),
        (b"[1, 2]", 422, "invalid_input", "JSON object with 'features' or 'X_test'"),
        (b"{}", 422, "invalid_input", "needs 'features'"),
        (json.dumps({"features": {"bmi": 1}}).encode(), 422, "invalid_input", "missing"),
        (json.dumps({"features": dict(ROW, zz=1)}).encode(), 422, "invalid_input", "zz"),
        (json.dumps({"features": dict(ROW, bmi="fat")}).encode(), 422, "invalid_input", "bmi"),
        (json.dumps({"X_test": [1, 2]}).encode(), 422, "invalid_input", "expects 10"),
        (json.dumps({"X_test": "1,2"}).encode(), 422, "invalid_input", "must be a list"),
    ],
)
def test_predict_errors(client, trained, body, status, code, fragment):
    response = client.post("/predict", data=body, content_type="application/json")
    assert_error(response, status, code, fragment)


def test_predict_without_model_is_503(client):
    assert_error(client.post("/predict", json={"X_test": [1]}), 503, "no_model")


def test_health_and_ready(client, registry, settings, diabetes):
    health = client.get("/health")
    assert health.status_code == 200
    assert health.get_json()["model"]["version"] is None
    assert_error(client.get("/ready"), 503, "no_model")
    register_trained(settings, registry, diabetes)
    ready = wait_for(lambda: client.get("/ready").status_code == 200 and client.get("/ready"), 3)
    assert ready.get_json() == {
        "status": "ready",
        "model_version": "1",
        "models": {"default": "1"},
    }
    body = client.get("/health").get_json()
    assert body["model"]["version"] == "1"
    assert body["last_retrain"]["version"] == "1"


def test_probes_appear_in_health(settings, registry):
    def broken() -> dict:
        raise RuntimeError("watcher exploded")

    app = create_app(
        settings, registry=registry, probes={"watcher": lambda: {"alive": True}, "x": broken}
    )
    body = app.test_client().get("/health").get_json()
    assert body["watcher"] == {"alive": True}
    assert body["x"] == {"alive": False, "error": "watcher exploded"}


def test_models_endpoints(client, registry, settings, diabetes, trained):
    register_trained(settings, registry, diabetes, promote=False)
    listed = client.get("/models").get_json()["models"]
    assert [(m["version"], m["status"]) for m in listed] == [("1", "champion"), ("2", "challenger")]
    current = client.get("/models/current").get_json()
    assert current["version"] == "1"
    assert current["features"] == list(ROW)
    assert current["card"]["schema"]["task"] == "regression"
    assert client.get("/models/2").get_json()["status"] == "challenger"
    promoted = client.post("/models/2/promote")
    assert promoted.status_code == 200 and promoted.get_json()["status"] == "champion"
    # the hot swap: this process notices the new champion within a second
    wait_for(
        lambda: client.post("/predict", json={"features": ROW}).get_json()["model_version"] == "2",
        timeout=1.5,
    )


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", "/models/7", 404, "not_found"),
        ("get", "/models/abc", 404, "not_found"),
        ("post", "/models/7/promote", 404, "not_found"),
        ("get", "/nowhere", 404, "not_found"),
        ("get", "/predict", 405, "method_not_allowed"),
        ("delete", "/models", 405, "method_not_allowed"),
        ("get", "/files/99", 404, "not_found"),
        ("get", "/files?status=lost", 422, "invalid_input"),
        ("get", "/files?limit=0", 422, "invalid_input"),
    ],
)
def test_http_errors_are_json(client, trained, method, path, status, code):
    assert_error(getattr(client, method)(path), status, code)


def test_current_without_champion_is_503(client):
    assert_error(client.get("/models/current"), 503, "no_model")


def test_files_empty_ledger(client):
    body = client.get("/files").get_json()
    assert body == {"files": [], "limit": 100, "offset": 0}


def test_request_too_large_is_413(tmp_path, registry, trained):
    settings = make_settings(tmp_path, server={"max_request_mb": 0.001})
    client = create_app(settings, registry=registry).test_client()
    response = client.post("/predict", data=b"x" * 5000, content_type="application/json")
    assert_error(response, 413, "too_large")


def test_unexpected_failure_is_a_json_500_without_traceback(client, trained, monkeypatch):
    from scoring.lifecycle.predictor import LoadedModel

    def boom(self, row):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(LoadedModel, "predict_row", boom)
    error = assert_error(client.post("/predict", json={"features": ROW}), 500, "internal_error")
    assert "secret" not in error["message"]


def test_metrics_counts_requests(client, trained):
    client.post("/predict", json={"features": ROW})
    client.post("/predict", data=b"{", content_type="application/json")
    text = client.get("/metrics").get_data(as_text=True)
    assert (
        'dropscore_requests_total{endpoint="predict.predict",method="POST",model="default",'
        'status="200"} 1.0' in text
    )
    assert 'status="400"' in text
    assert "dropscore_request_seconds_bucket" in text
    assert 'dropscore_model_version{model="default"} 1.0' in text
    assert "dropscore_last_retrain_timestamp_seconds" in text


class TestAuth:
    @pytest.fixture
    def client(self, tmp_path, registry):
        settings = make_settings(
            tmp_path, server={"api_keys": ["s3cret-key-0123456789", "other-key-0123456789"]}
        )
        return create_app(settings, registry=registry).test_client()

    @pytest.mark.parametrize(
        "header",
        [
            None,
            "s3cret-key-0123456789",
            "Bearer",
            "Bearer wrong",
            "Basic s3cret-key-0123456789",
            "Bearer s3cret-key-01234567892",
        ],
    )
    def test_refused(self, client, trained, header):
        headers = {"Authorization": header} if header else {}
        response = client.post("/predict", json={"features": ROW}, headers=headers)
        assert_error(response, 401, "unauthorized")
        assert_error(client.get("/models", headers=headers), 401, "unauthorized")
        assert_error(client.get("/metrics", headers=headers), 401, "unauthorized")

    @pytest.mark.parametrize("key", ["s3cret-key-0123456789", "other-key-0123456789"])
    def test_accepted(self, client, trained, key):
        headers = {"Authorization": f"Bearer {key}"}
        assert client.post("/predict", json={"features": ROW}, headers=headers).status_code == 200

    def test_probes_stay_open(self, client, trained):
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 200

    def test_unknown_paths_need_a_key_too(self, client):
        assert_error(client.get("/nowhere"), 401, "unauthorized")


def test_classifier_returns_probabilities(tmp_path, diabetes):
    from scoring.lifecycle.registry import Registry

    frame = diabetes.assign(target=(diabetes["target"] > 140).map({True: "high", False: "low"}))
    settings = make_settings(tmp_path, model={"estimator": "logistic_regression"})
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    register_trained(settings, registry, frame)
    client = create_app(settings, registry=registry).test_client()
    body = client.post("/predict", json={"features": ROW}).get_json()
    assert body["prediction"] in ("high", "low")
    assert set(body["probabilities"]) == {"high", "low"}
