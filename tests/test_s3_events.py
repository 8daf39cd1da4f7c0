"""POST /admin/bucket-events: a bucket notification asks the poller for a round now, nothing more.

Against a real HTTP server and the session's S3: with rescans an hour apart, a drop put after
the poller's first round is taken only because the event asked for a round.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from ingest.pipeline.intake import Intake
from ingest.state.db import StateDB
from scoring.api.admin import BUCKET_KEY
from scoring.api.app import create_app
from scoring.ingest_options import ingest_config
from scoring.storage import bucket_watcher
from tests._s3 import storage_settings
from tests._server import serving
from tests.conftest import assert_error, make_settings, wait_for

EVENT = {
    "EventName": "s3:ObjectCreated:Put",
    "Key": "bucket/inbox/score/a.csv",
    "Records": [{"eventName": "s3:ObjectCreated:Put", "s3": {"object": {"key": "a.csv"}}}],
}


@pytest.fixture
def served(tmp_path: Path, s3, monkeypatch: pytest.MonkeyPatch):
    storage = storage_settings(s3, monkeypatch, "events")
    settings = make_settings(
        tmp_path, storage=storage, ingest={"stable_seconds": 0.2, "rescan_seconds": 3600}
    )
    app = create_app(settings)
    model = app.extensions["dropscore"].models.default
    intake = Intake(ingest_config(settings), model.ledger)
    watcher = bucket_watcher(settings, [intake], StateDB.at(tmp_path / "shared.db"))
    assert watcher is not None
    watcher.start()
    wait_for(lambda: watcher.polls >= 1, 60, 0.05, "the poller's first round")
    app.extensions[BUCKET_KEY] = watcher
    try:
        with serving(app) as url:
            yield url, watcher, model
    finally:
        watcher.stop()


def test_an_event_makes_the_poller_list_the_inboxes_now(served) -> None:
    url, watcher, model = served
    key = watcher.key("inbox/score/a.csv")
    watcher.bucket.client.put_object(Bucket=watcher.bucket.name, Key=key, Body=b"x\n1\n")
    answer = requests.post(url + "/admin/bucket-events", json=EVENT, timeout=30)
    assert answer.status_code == 202 and answer.json() == {"poll": "requested"}
    wait_for(lambda: model.ledger.list(limit=None), 60, 0.1, "the drop the event announced")
    assert [r.original_name for r in model.ledger.list(limit=None)] == ["a.csv"]


def test_a_body_that_is_no_event_is_a_400(tmp_path: Path) -> None:
    client = create_app(make_settings(tmp_path)).test_client()
    assert_error(client.post("/admin/bucket-events", json=[1, 2]), 400, "bad_request", "Records")


def test_a_process_polling_no_bucket_answers_409(tmp_path: Path) -> None:
    client = create_app(make_settings(tmp_path)).test_client()
    answer = client.post("/admin/bucket-events", json=EVENT)
    assert_error(answer, 409, "conflict", "[storage] url")


def test_the_409_sends_events_to_serve_only(tmp_path: Path) -> None:
    # a `worker` polls the bucket but serves no HTTP: only `serve` can take an event
    client = create_app(make_settings(tmp_path)).test_client()
    message = client.post("/admin/bucket-events", json=EVENT).get_json()["error"]["message"]
    assert "`serve` process" in message
    assert "serve or worker" not in message
