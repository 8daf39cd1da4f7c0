"""The dashboard's data and pages, through Flask's test client over a real registry and ledger."""

from __future__ import annotations

import re
import sqlite3
import stat
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from markupsafe import escape
from sklearn.datasets import load_iris

from ingest.state.db import StateDB
from ingest.state.ledger import Ledger
from scoring.api.app import create_app
from scoring.api.pages import data, plots, svg
from scoring.api.pages.session import SECRET_FILE, session_secret
from scoring.api.pages.traffic import quantile
from scoring.lifecycle.registry import HOLDOUT_FILE, Registry
from scoring.lifecycle.training import holdout_sample, train
from scoring.service.runtime import open_intake
from tests.conftest import assert_error, make_settings, register_trained, wait_for

KEY = "s3cret-key-0123456789"


def _csrf(page: bytes) -> str:
    match = re.search(rb'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF field on the page"
    return match.group(1).decode()


def _register_with_holdout(settings, registry: Registry, frame: pd.DataFrame) -> int:
    """Train and register a version the way a retrain does, hold-out sample included."""
    result = train(frame, settings.model)
    card = {
        "estimator": settings.model.estimator,
        "metrics": result.metrics,
        "schema": result.schema.to_dict(),
        "training_data": {"rows": len(frame), "holdout_rows": len(result.holdout.frame)},
    }
    sample = holdout_sample(result.pipeline, result.schema, result.holdout)
    version = registry.register(result.pipeline, card, holdout=sample)
    registry.promote(version, "test")
    return version


def _iris() -> pd.DataFrame:
    iris = load_iris(as_frame=True)
    frame = iris.frame.rename(columns=lambda c: re.sub(r"\W+", "_", c).strip("_"))
    frame["target"] = frame["target"].map(dict(enumerate(iris.target_names)))
    return frame


# -- SVG and plots: pure functions ---------------------------------------------------------------


def test_svg_escapes_every_text_and_is_well_formed():
    hostile = '<script>alert("x")</script>&'
    out = svg.bars([hostile, "b"], [1.5, -2.0], title=hostile)
    assert "<script>" not in out
    ET.fromstring(out)  # well-formed XML, so the escaping held
    for drawn in (
        svg.scatter([1, 2, float("nan")], [2, 1, 3], title="t", xlabel=hostile, ylabel="y"),
        svg.line(["1", "2", "3"], [0.5, None, 0.7], title="t", ylabel=hostile, highlight=2),
        svg.confusion([hostile, "b"], [[3, 1], [0, 4]], title="c"),
        svg.roc({hostile: ([0, 0.5, 1], [0, 0.8, 1])}, title="r"),
    ):
        assert "<script>" not in drawn
        ET.fromstring(drawn)


def test_svg_scatter_skips_missing_points_and_copes_with_nothing():
    out = svg.scatter([1, None, 3], [1, 2, float("inf")], title="t", xlabel="x", ylabel="y")
    assert out.count("<circle") == 1
    assert ET.fromstring(svg.scatter([], [], title="t", xlabel="x", ylabel="y")) is not None


def test_confusion_counts_pairs():
    grid = plots.confusion(["a", "b"], ["a", "a", "b", "b", "b"], ["a", "b", "b", "b", "a"])
    assert grid == [[1, 1], [1, 2]]


@pytest.mark.parametrize(
    ("truth", "scores", "last_fpr_before_tpr1"),
    [
        ([True, True, False, False], [0.9, 0.8, 0.2, 0.1], 0.0),  # perfect: TPR 1 at FPR 0
        ([False, False, True, True], [0.9, 0.8, 0.2, 0.1], 1.0),  # inverted
    ],
)
def test_roc_points_run_from_origin_to_one(truth, scores, last_fpr_before_tpr1):
    fpr, tpr = plots.roc_points(truth, scores)
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert fpr[tpr.index(1.0)] == last_fpr_before_tpr1


@pytest.mark.parametrize(
    ("buckets", "q", "expected"),
    [
        ([(0.1, 0.0), (0.2, 10.0), (float("inf"), 10.0)], 0.5, 0.15),
        ([(0.1, 10.0), (float("inf"), 10.0)], 0.99, 0.099),
        ([(0.1, 0.0), (float("inf"), 10.0)], 0.5, 0.1),  # past the last bound: the bound
        ([], 0.5, None),
        ([(0.1, 0.0), (float("inf"), 0.0)], 0.5, None),
    ],
)
def test_quantile_interpolates_inside_buckets(buckets, q, expected):
    got = quantile(buckets, q)
    assert got == pytest.approx(expected) if expected is not None else got is None


# -- hold-out sample: kept at training, bounded, read back through the registry --------------------


def test_holdout_sample_is_bounded_and_has_weights(settings, diabetes):
    big = pd.concat([diabetes] * 30, ignore_index=True)  # 13,260 rows → 2,652 held out
    result = train(big, settings.model)
    sample = holdout_sample(result.pipeline, result.schema, result.holdout)
    assert sample["holdout_rows"] > 2000 and sample["rows"] == 2000
    assert len(sample["actual"]) == len(sample["predicted"]) == 2000
    assert sample["weights"]["kind"] == "coefficients"
    assert sample["weights"]["names"] == list(result.schema.names)  # named, not x0, x1, …
    assert len(sample["weights"]["names"]) == len(sample["weights"]["values"]) > 0


def test_classifier_sample_keeps_probabilities(tmp_path):
    settings = make_settings(
        tmp_path, model={"target": "target", "estimator": "random_forest_classifier"}
    )
    result = train(_iris(), settings.model)
    sample = holdout_sample(result.pipeline, result.schema, result.holdout)
    assert sample["classes"] == ["setosa", "versicolor", "virginica"]
    assert len(sample["probabilities"]) == sample["rows"] == len(result.holdout.frame)
    assert sample["weights"]["kind"] == "importances"


def test_retrain_writes_holdout_beside_the_card(settings, registry, diabetes):
    version = _register_with_holdout(settings, registry, diabetes)
    assert (settings.models_dir / str(version) / HOLDOUT_FILE).is_file()
    assert registry.holdout(version)["task"] == "regression"


# -- pages over a real registry and ledger ------------------------------------------------------


def test_overview_shows_champion_metrics_and_traffic(settings, registry, diabetes):
    version = _register_with_holdout(settings, registry, diabetes)
    client = create_app(settings, registry=registry).test_client()
    client.get("/models")
    client.get("/models/999")  # one error, counted like /metrics counts it
    facts = None
    with client.application.test_request_context("/"):
        s = client.application.extensions["dropscore"]
        facts = data.overview(s)
    assert facts["champion"]["version"] == str(version)
    assert facts["champion"]["rows"] == len(diabetes)
    assert facts["traffic"]["requests"] >= 2 and facts["traffic"]["errors"] >= 1
    page = client.get("/").get_data(as_text=True)
    assert f'data-testid="champion-version">{version}<' in page
    assert "r2" in page and "p99 latency" in page


def test_overview_without_a_model_says_what_to_do(settings, registry):
    page = create_app(settings, registry=registry).test_client().get("/")
    assert page.status_code == 200
    assert "No model yet" in page.get_data(as_text=True)


def test_models_page_plots_regression_holdout_and_copes_with_old_versions(
    settings, registry, diabetes
):
    old, _ = register_trained(settings, registry, diabetes)  # no hold-out file: an old version
    new = _register_with_holdout(settings, registry, diabetes)
    client = create_app(settings, registry=registry).test_client()
    page = client.get(f"/ui/models?v={new}").get_data(as_text=True)
    for plot in ("predicted_vs_actual", "residuals", "weights"):
        assert f'data-plot="{plot}"' in page
    assert "r2 by version" in page
    assert f"Roll back to version {old}" in page
    old_page = client.get(f"/ui/models?v={old}").get_data(as_text=True)
    assert 'data-testid="no-holdout"' in old_page


def test_models_page_plots_confusion_and_roc_for_a_classifier(tmp_path):
    settings = make_settings(
        tmp_path, model={"target": "target", "estimator": "logistic_regression"}
    )
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    _register_with_holdout(settings, registry, _iris())
    page = create_app(settings, registry=registry).test_client().get("/ui/models")
    text = page.get_data(as_text=True)
    for plot in ("confusion", "roc", "weights"):
        assert f'data-plot="{plot}"' in text
    assert "f1 by version" in text


def test_promote_from_the_page_changes_the_champion(settings, registry, diabetes):
    first, _ = register_trained(settings, registry, diabetes)
    second, _ = register_trained(settings, registry, diabetes)
    client = create_app(settings, registry=registry).test_client()
    token = _csrf(client.get("/ui/models").data)
    refused = client.post(f"/ui/models/{first}/promote")  # no CSRF token
    assert_error(refused, 400, "bad_request", "reload")
    assert registry.champion_version() == second
    done = client.post(f"/ui/models/{first}/promote", data={"csrf_token": token})
    assert done.status_code == 302
    assert registry.champion_version() == first
    assert registry.get(first).reason == "promoted from the dashboard"


def test_runs_page_lists_runs_with_their_full_reason(settings, registry):
    from ingest.state.db import StateDB
    from scoring.lifecycle.runs import RunStore

    store = RunStore(StateDB.at(settings.db_path))
    run = store.create("cli")
    reason = "r2 0.41 is worse than the champion's 0.52 by more than the tolerance 0.01"
    store.update(run, state="succeeded", reason=reason, metrics={"r2": 0.41}, rows=442)
    page = create_app(settings, registry=registry).test_client().get("/ui/runs")
    text = page.get_data(as_text=True)
    assert str(escape(reason)) in text and "Retrain now" in text and f'data-run="{run}"' in text


def _fill_ledger(db: Path, n: int) -> None:
    """Insert n ledger rows straight into SQLite, as a long-running service would have."""
    Ledger(StateDB.at(db)).initialize()
    now = "2026-01-01T00:00:00.000000Z"
    rows = (
        (
            f"drop-{i}.csv",
            "score" if i % 2 else "train",
            "quarantined" if i % 10 == 0 else "normalized",
            '{"code": "ragged_rows", "message": "row 3 has 4 fields"}' if i % 10 == 0 else None,
            now,
            now,
        )
        for i in range(n)
    )
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO files (original_name, kind, state, error, received_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )


def test_files_page_pages_a_ledger_of_100000_rows(settings, registry, capsys):
    _fill_ledger(settings.db_path, 100_000)
    client = create_app(settings, registry=registry).test_client()
    timings = {}
    for url in ("/ui/files", "/ui/files?state=quarantined&kind=train&offset=5000", "/"):
        started = time.perf_counter()
        page = client.get(url)
        timings[url] = time.perf_counter() - started
        assert page.status_code == 200
    first = client.get("/ui/files").get_data(as_text=True)
    assert first.count("<tr data-file=") == data.PAGE_SIZE
    assert 'data-file="100000"' in first and "older" in first
    filtered = client.get("/ui/files?state=quarantined&kind=train&offset=5000")
    text = filtered.get_data(as_text=True)
    assert text.count("row 3 has 4 fields") == data.PAGE_SIZE
    assert "Split the file" not in text and "Give every row as many fields" in text
    with capsys.disabled():
        print(
            "\npage load on a 100,000-row ledger:",
            {k: f"{v * 1000:.0f} ms" for k, v in timings.items()},
        )


def test_bad_filters_are_json_errors(settings, registry):
    client = create_app(settings, registry=registry).test_client()
    assert_error(client.get("/ui/files?state=lost"), 422, "invalid_input", "state")
    assert_error(client.get("/ui/files?kind=both"), 422, "invalid_input", "kind")
    assert_error(client.get("/ui/files?offset=-1"), 422, "invalid_input", "offset")
    assert_error(client.get("/ui/models?v=x"), 422, "invalid_input", "v")
    assert_error(client.get("/ui/models?v=7"), 404, "not_found", "7")


# -- retry and downloads: one function behind the page button and the JSON endpoint -------------


def test_retried_quarantine_is_a_new_drop_not_a_duplicate_of_itself(tmp_path, diabetes):
    small = make_settings(tmp_path, ingest={"max_file_mb": 0.001})
    _, ledger, intake = open_intake(small)
    inbox = small.data_dir / "inbox" / "train"
    drop = inbox / "diabetes.csv"
    diabetes.to_csv(drop, index=False)
    rejected = intake.take(drop, "train")
    assert rejected.state == "quarantined"
    client = create_app(small, ledger=ledger).test_client()
    answer = client.post(f"/files/{rejected.id}/retry")
    assert answer.status_code == 202
    queued = inbox / answer.get_json()["queued_as"]
    assert queued.read_bytes() == ledger.resolve(rejected.quarantine_path).read_bytes()
    _, _, roomy = open_intake(make_settings(tmp_path, ingest={"max_file_mb": 10}))
    retried = roomy.take(queued, "train")
    assert retried.state == "normalized" and retried.id != rejected.id
    assert retried.original_name == "diabetes.csv"  # the retried drop's name, not the copy's
    assert_error(client.post(f"/files/{retried.id}/retry"), 409, "conflict", "normalized")
    assert_error(client.post("/files/999/retry"), 404, "not_found", "999")


def test_retry_button_requeues_with_csrf(tmp_path):
    settings = make_settings(tmp_path)
    _, ledger, intake = open_intake(settings)
    bad = settings.data_dir / "inbox" / "score" / "bad.csv"
    bad.write_bytes(b"a,b\n1,2,3,4\n5\n")
    record = intake.take(bad, "score")
    assert record.state == "quarantined"
    client = create_app(settings, ledger=ledger).test_client()
    page = client.get("/ui/files?state=quarantined")
    assert 'data-testid="quarantine-reason"' in page.get_data(as_text=True)
    moved = client.post(f"/ui/files/{record.id}/retry", data={"csrf_token": _csrf(page.data)})
    assert moved.status_code == 302
    assert len([p for p in bad.parent.iterdir() if p.name.startswith("retry")]) == 1
    again = intake.take(next(bad.parent.glob("retry*")), "score")
    assert again.state == "quarantined"  # same bad content: the same reason, not "duplicate"
    token = _csrf(client.get("/ui/files").data)
    twice = client.post("/ui/files/999/retry", data={"csrf_token": token}, follow_redirects=True)
    assert "not retried: file 999 is not in the ledger" in twice.get_data(as_text=True)


def test_downloads_stream_stored_files_only(tmp_path, diabetes):
    settings = make_settings(tmp_path)
    _, ledger, intake = open_intake(settings)
    drop = settings.data_dir / "inbox" / "train" / "d.csv"
    diabetes.head(20).to_csv(drop, index=False)
    record = intake.take(drop, "train")
    client = create_app(settings, ledger=ledger).test_client()
    original = client.get(f"/files/{record.id}/original")
    assert original.status_code == 200
    assert original.data == ledger.resolve(record.archive_path).read_bytes()
    assert "filename=d.csv" in original.headers["Content-Disposition"]
    assert_error(client.get(f"/files/{record.id}/output"), 404, "not_found", "scored output")
    with sqlite3.connect(settings.db_path) as conn:  # a ledger path pointing outside data/
        conn.execute("UPDATE files SET archive_path='/etc/passwd' WHERE id=?", (record.id,))
    assert_error(client.get(f"/files/{record.id}/original"), 404, "not_found")


# -- sessions for people ------------------------------------------------------------------------


@pytest.fixture
def keyed(tmp_path, diabetes):
    settings = make_settings(tmp_path, server={"api_keys": [KEY]})
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    register_trained(settings, registry, diabetes)
    return create_app(settings, registry=registry).test_client()


def test_pages_ask_for_a_key_and_keep_a_strict_session(keyed):
    first = keyed.get("/ui/runs")
    assert first.status_code == 302 and "/ui/login" in first.headers["Location"]
    form = keyed.get(first.headers["Location"])
    token = _csrf(form.data)
    wrong = keyed.post("/ui/login", data={"key": "nope", "csrf_token": token, "next": "/ui/runs"})
    assert wrong.status_code == 200 and "not valid" in wrong.get_data(as_text=True)
    assert keyed.get("/").status_code == 302
    ok = keyed.post("/ui/login", data={"key": KEY, "csrf_token": token, "next": "/ui/runs"})
    assert ok.status_code == 302 and ok.headers["Location"] == "/ui/runs"
    cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    assert KEY not in cookie
    assert keyed.get("/").status_code == 200
    assert keyed.get("/models").status_code == 200  # the API trusts the page's session


def test_login_never_redirects_off_site(keyed):
    token = _csrf(keyed.get("/ui/login").data)
    ok = keyed.post("/ui/login", data={"key": KEY, "csrf_token": token, "next": "//evil.test/"})
    assert ok.headers["Location"] == "/"


def test_api_post_from_a_page_needs_the_csrf_header(keyed, diabetes):
    token = _csrf(keyed.get("/ui/login").data)
    keyed.post("/ui/login", data={"key": KEY, "csrf_token": token})
    token = _csrf(keyed.get("/ui/score").data.replace(b'data-csrf="', b'name="csrf_token" value="'))
    body = diabetes.drop(columns=["target"]).head(5).to_csv(index=False).encode()
    refused = keyed.post("/score-file", data=body, content_type="text/csv")
    assert_error(refused, 401, "unauthorized")
    scored = keyed.post(
        "/score-file", data=body, content_type="text/csv", headers={"X-CSRF-Token": token}
    )
    assert scored.status_code == 200 and scored.headers["X-Rows-Scored"] == "5"


def test_without_a_session_the_api_still_wants_the_bearer_key(keyed):
    assert_error(keyed.get("/models"), 401, "unauthorized")
    ok = keyed.get("/models", headers={"Authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200


def test_session_secret_is_made_once_with_mode_0600(tmp_path):
    settings = make_settings(tmp_path)
    first = session_secret(settings)
    assert first == session_secret(settings) and len(first) == 64
    mode = stat.S_IMODE((settings.data_dir / SECRET_FILE).stat().st_mode)
    assert mode == 0o600


def test_https_sessions_get_the_secure_flag(keyed):
    token = _csrf(keyed.get("/ui/login", base_url="https://localhost").data)
    ok = keyed.post(
        "/ui/login", data={"key": KEY, "csrf_token": token}, base_url="https://localhost"
    )
    assert "Secure" in ok.headers["Set-Cookie"]


def test_holdout_of_nan_free_sample_is_strict_json(settings, registry, diabetes):
    version = _register_with_holdout(settings, registry, diabetes)
    text = (settings.models_dir / str(version) / HOLDOUT_FILE).read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert np.isfinite(registry.holdout(version)["predicted"]).all()


def test_a_page_session_carries_its_key_role_and_ends_when_the_key_is_revoked(keyed, tmp_path):
    from scoring.keys import KeyStore

    store = KeyStore(StateDB.at(tmp_path / "data" / "state.db"))
    viewer = store.add("viewer", "predict")
    token = _csrf(keyed.get("/ui/login").data)
    ok = keyed.post("/ui/login", data={"key": viewer, "csrf_token": token})
    assert ok.status_code == 302
    page = keyed.get("/ui/models")
    assert page.status_code == 200
    token = _csrf(page.data)
    refused = keyed.post("/ui/models/1/promote", data={"csrf_token": token})
    assert_error(refused, 403, "forbidden")
    store.revoke("viewer")
    # every process re-reads the keys within a second; then the session is back at the login form
    wait_for(lambda: keyed.get("/ui/models").status_code == 302, timeout=10)
