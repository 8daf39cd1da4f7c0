"""Downloads and retries of drops whose files are in the bucket (``[storage] url``, moto_server).

Under ``[storage] url`` originals and outputs are only in the bucket (their local copies are
removed once filed), so ``GET /files/<id>/original``, ``/output`` and ``POST /files/<id>/retry``
must reach the bucket, over a real HTTP server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from scoring.api.app import create_app
from scoring.models.factory import open_model
from scoring.storage import storage_root

from ._s3 import storage_settings
from ._server import serving
from .conftest import make_settings

BROKEN = b"a,b\n1,2,3,4\n5\n"
GOOD = b"id,x\n1,1.5\n2,2.5\n"
SCORED = b"id,x,prediction\n1,1.5,3.0\n2,2.5,5.0\n"
MARKER = ".ready"


@pytest.fixture
def served(tmp_path: Path, s3, monkeypatch) -> Any:
    """A quarantined and a scored drop whose files are only in the bucket, and the API."""
    storage = storage_settings(s3, monkeypatch, "files")
    settings = make_settings(tmp_path, storage=storage, ingest={"ready_marker": MARKER})
    ledger = open_model(settings).ledger
    layout, root = settings.layout, storage_root(settings)

    def put(local: Path, body: bytes) -> None:
        with root.fs.open_output_stream(root.join(layout.key(local))) as sink:
            sink.write(body)
        assert not local.exists()

    broken = ledger.receive(
        original_name="broken.csv", kind="score", size_bytes=len(BROKEN), sha256="a" * 64,
        processing_path=None,
    )  # fmt: skip
    quarantined = layout.quarantine / f"{broken.id}__broken.csv"
    ledger.mark_quarantined(broken.id, error={"code": "ragged"}, quarantine_path=quarantined)
    put(quarantined, BROKEN)
    good = ledger.receive(
        original_name="good.csv", kind="score", size_bytes=len(GOOD), sha256="b" * 64,
        processing_path=None,
    )  # fmt: skip
    archived, output = layout.archive / f"{good.id}__good.csv", layout.outbox / "good.scored.csv"
    ledger.mark_normalized(
        good.id, rows=2, columns=2, format="csv", encoding="utf-8", delimiter=",", column_map={},
        lake_path=layout.lake("score") / f"{good.id}__good.parquet", archive_path=archived,
    )  # fmt: skip
    ledger.mark_scored(good.id, output, "1", 2, 0)
    put(archived, GOOD)
    put(output, SCORED)
    with serving(create_app(settings, ledger=ledger)) as url:
        yield settings, ledger, root, url, broken.id, good.id


def test_originals_and_outputs_are_downloaded_from_the_bucket(served: Any) -> None:
    _, _, _, url, broken, good = served
    for path, body, name in [
        (f"/files/{broken}/original", BROKEN, "broken.csv"),
        (f"/files/{good}/original", GOOD, "good.csv"),
        (f"/files/{good}/output", SCORED, "good.scored.csv"),
    ]:
        got = requests.get(url + path, timeout=30)
        assert got.status_code == 200, (path, got.text)
        assert got.content == body
        assert f"filename={name}" in got.headers["Content-Disposition"]


def test_an_object_gone_from_the_bucket_is_a_404_that_says_so(served: Any) -> None:
    settings, _, root, url, _, good = served
    root.fs.delete_file(root.join(settings.layout.key(settings.layout.outbox / "good.scored.csv")))
    got = requests.get(f"{url}/files/{good}/output", timeout=30)
    assert got.status_code == 404
    assert "scored output in the bucket" in got.json()["error"]["message"]


def test_a_retry_copies_the_quarantined_object_into_the_bucket_inbox_once(served: Any) -> None:
    settings, ledger, root, url, broken, _ = served
    first = requests.post(f"{url}/files/{broken}/retry", timeout=30)
    assert first.status_code == 202, first.text
    queued = first.json()["queued_as"]
    inbox = settings.layout.inbox("score")
    with root.fs.open_input_stream(root.join(settings.layout.key(inbox / queued))) as source:
        assert source.read() == BROKEN
    marker = root.fs.get_file_info(root.join(settings.layout.key(inbox / queued)) + MARKER)
    assert marker.size == 0  # announced, as a producer does: the poller takes it
    record = ledger.get(broken)
    assert (record.state, record.queued_as) == ("retried", queued)
    assert not inbox.exists() or not list(inbox.iterdir())  # nothing on the local disk
    again = requests.post(f"{url}/files/{broken}/retry", timeout=30)
    assert again.status_code == 409
    assert "already retried" in again.json()["error"]["message"]


def test_a_retried_drop_is_taken_from_the_bucket_inbox_and_named_by_the_drop_it_retries(
    tmp_path: Path, s3, monkeypatch
) -> None:
    from ingest.state.db import StateDB

    from .conftest import wait_for
    from .test_s3_inbox import Replica, _keys, _put

    storage = storage_settings(s3, monkeypatch, "retry")
    replica = Replica(tmp_path, storage, StateDB.at(tmp_path / "shared.db"))
    _put(replica, "inbox/score/broken.csv", BROKEN)
    wait_for(lambda: replica.watcher.poll(), 60, 0.1, "the bad drop to be quarantined")
    [rejected] = replica.records()
    assert rejected.state == "quarantined"
    app = create_app(replica.settings, ledger=replica.model.ledger)
    with serving(app) as url:
        answer = requests.post(f"{url}/files/{rejected.id}/retry", timeout=30)
    assert answer.status_code == 202, answer.text
    retried = wait_for(lambda: replica.watcher.poll(), 60, 0.1, "the retry's copy to be taken")
    [again] = retried
    assert again.original_name == "broken.csv"  # the ledger keeps the dropped name
    assert replica.model.ledger.get(rejected.id).retried_as == again.id
    assert _keys(replica, "inbox/score") == []
