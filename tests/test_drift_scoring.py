"""Drift on scored data through the real parts: the watcher, a real server, the ledger, the lake.

A version gets its profile at training (the retrain's profile step), or from the lake on first
need; a drop scored through the real watcher gets a drift record and its ledger row the
verdict; ``/score-file`` through a real server names its record in headers; the API, the CLI
and Prometheus show them.
"""

from __future__ import annotations

import logging

import pandas as pd
import pyarrow as pa
import pytest
import requests
from click.testing import CliRunner

from scoring.bulk.drops import on_arrival
from scoring.lifecycle.retrain import train_and_decide
from scoring.models.factory import open_model
from scoring.monitoring.bulk import BulkDrift
from scoring.monitoring.profile import PROFILE_FILE, Profile
from scoring.monitoring.reference import profile_step, reference
from scoring.service.runtime import open_intake, start_scoring

from ._server import serving
from .conftest import assert_error, make_settings, register_trained, wait_for

SHIFTED = "bmi"


@pytest.fixture
def settings(tmp_path):
    return make_settings(
        tmp_path, ingest={"stable_seconds": 0.2, "rescan_seconds": 1.0}, monitoring={"min_rows": 50}
    )


@pytest.fixture
def model(settings, diabetes):
    """The default model, its version 1 trained on the sample and profiled as a retrain does."""
    opened = open_model(settings)
    version, result = register_trained(settings, opened.registry, diabetes)
    profile_step(opened.registry, version, diabetes, result)
    return opened


def _drop(diabetes: pd.DataFrame, shift: bool) -> pd.DataFrame:
    frame = diabetes.drop(columns="target").head(300).copy()
    if shift:  # one standard deviation of the training column
        frame[SHIFTED] = frame[SHIFTED] + diabetes[SHIFTED].std()
    return frame.rename(columns=str.upper)  # the drop's own names: the report uses the model's


def test_a_drop_scored_through_the_real_watcher_gets_a_drift_record_and_its_ledger_verdict(
    settings, model, diabetes, caplog
):
    from ingest.pipeline.watcher import Watcher

    config, ledger, intake = open_intake(settings, model)
    start_scoring(model, intake)  # as serve and worker wire it
    watcher = Watcher(config, intake)
    watcher.start()
    try:
        with caplog.at_level(logging.INFO, logger="dropscore.score"):
            inbox = settings.layout.inbox("score")
            inbox.mkdir(parents=True, exist_ok=True)
            _drop(diabetes, shift=True).to_csv(inbox / "shifted.part", index=False)
            (inbox / "shifted.part").rename(inbox / "shifted.csv")
            record = wait_for(lambda: (r := ledger.list(state="scored")) and r[0], timeout=30)
    finally:
        watcher.stop()
        model.stop()
    assert record.drift == "drifted"
    found = model.drift.for_file(record.id)
    assert found is not None and found.source == "drop" and found.model_version == 1
    assert found.verdict == "drifted" and found.rows == 300
    assert found.report["drifted_features"] == [SHIFTED]
    assert found.report["features"][0]["name"] == SHIFTED  # drifted first
    [line] = [r for r in caplog.records if r.getMessage() == "scored"]
    assert (line.drift, line.drifted_features) == ("drifted", [SHIFTED])


def test_score_file_through_a_real_server_names_its_record_and_the_api_shows_it(
    settings, model, diabetes
):
    from scoring.api.app import create_app

    body = _drop(diabetes, shift=False).to_csv(index=False)
    with serving(create_app(settings)) as url:
        scored = requests.post(
            f"{url}/score-file", data=body, headers={"Content-Type": "text/csv"}, timeout=60
        )
        assert scored.status_code == 200, scored.text
        assert scored.headers["X-Drift"] == "stable"
        record_id = int(scored.headers["X-Drift-Record"])
        shown = requests.get(f"{url}/models/default/drift/{record_id}", timeout=30)
        unknown = requests.get(f"{url}/models/default/drift/{record_id + 1}", timeout=30)
        missing = requests.get(f"{url}/models/default/files/999/drift", timeout=30)
        metrics = requests.get(f"{url}/metrics", timeout=30).text
    assert shown.status_code == 200
    record = shown.json()
    assert (record["source"], record["verdict"], record["rows"]) == ("score_file", "stable", 300)
    assert record["drifted_features"] == []
    assert {f["name"] for f in record["features"]} == set(diabetes.columns) - {"target"}
    assert record["prediction"]["kind"] == "numeric"
    assert unknown.status_code == 404 and "no drift record" in unknown.json()["error"]["message"]
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "file 999 is not in the ledger"
    assert 'dropscore_feature_drift{feature="bmi",metric="psi",model="default"}' in metrics
    assert 'dropscore_drift_events_total{model="default",source="score_file"}' not in metrics


def test_a_scored_drop_s_drift_in_the_api_the_cli_and_prometheus(tmp_path, diabetes):
    from scoring.api.app import create_app
    from scoring.service.cli import main
    from scoring.settings import load_settings

    path = tmp_path / "settings.toml"
    data = tmp_path / "data"
    path.write_text(
        f'[paths]\ndata_dir = "{data}"\n[training]\nbootstrap_data = ""\n'
        "[monitoring]\nmin_rows = 50\n",
        encoding="utf-8",
    )
    settings = load_settings(path, env={})
    opened = open_model(settings)
    version, result = register_trained(settings, opened.registry, diabetes)
    profile_step(opened.registry, version, diabetes, result)
    _config, ledger, intake = open_intake(settings, opened)
    drift = BulkDrift(opened)
    intake.on_normalized = on_arrival(settings, intake, opened.champion.peek, drift=drift)
    src = tmp_path / "shifted.csv"
    _drop(diabetes, shift=True).to_csv(src, index=False)
    file_id = intake.take_copy(src, "score").id
    opened.stop()
    assert ledger.get(file_id).drift == "drifted"

    client = create_app(settings).test_client()
    answer = client.get(f"/models/default/files/{file_id}/drift")
    assert answer.status_code == 200
    assert answer.get_json()["drifted_features"] == [SHIFTED]
    assert client.get(f"/files/{file_id}").get_json()["drift"] == "drifted"
    assert_error(client.get("/files/4242/drift"), 404, "not_found", "not in the ledger")
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'dropscore_drift_events_total{model="default",source="drop"} 1.0' in metrics

    shown = CliRunner().invoke(main, ["--settings", str(path), "drift", str(file_id)])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0].startswith(f"file {file_id}: 300 rows scored by version 1 — drifted:")
    assert lines[2].split()[:2] == ["feature", "kind"]
    assert lines[4].split()[:2] == [SHIFTED, "numeric"]  # drifted first; why wraps below
    assert "yes: psi" in lines[5] and lines[6].split()[-1] == "no"
    refused = CliRunner().invoke(main, ["--settings", str(path), "drift", "4242"])
    assert refused.exit_code == 1
    assert "file 4242 is not in model default's ledger" in refused.output
    assert "Traceback" not in refused.output


def test_a_version_without_a_profile_gets_one_from_the_lake_on_first_need(
    settings, diabetes, tmp_path
):
    opened = open_model(settings)
    _config, _ledger, intake = open_intake(settings, opened)
    src = tmp_path / "train.csv"
    diabetes.to_csv(src, index=False)
    intake.take_copy(src, "train")
    outcome = train_and_decide(settings, opened.registry, trigger="test")
    made_at_training = Profile.from_dict(opened.artifacts.read_json(outcome.version, PROFILE_FILE))
    # a version trained before profiles were kept: its folder has no profile.json
    (settings.models_dir / str(outcome.version) / PROFILE_FILE).unlink()
    first = reference(opened, outcome.version)
    assert first.made_now and first.profile == made_at_training
    assert opened.artifacts.has(outcome.version, PROFILE_FILE)  # stored: computed once
    again = reference(opened, outcome.version)
    assert not again.made_now and again.profile == made_at_training


def test_a_version_that_cannot_be_profiled_says_why_in_its_record(settings, diabetes):
    opened = open_model(settings)
    register_trained(settings, opened.registry, diabetes)  # no card of its training data
    loaded = opened.champion.peek()
    watch = BulkDrift(opened).watch(loaded)
    assert watch is not None
    watch(pa.RecordBatch.from_pandas(diabetes.head(200)), {})
    found = BulkDrift(opened).record(watch, source="cli", ref="x.csv")
    opened.stop()
    assert found is not None and found.verdict == "not_compared" and found.rows == 200
    assert "does not say which lake files it was trained on" in found.report["reason"]
