"""End to end on a bucket: a real `dropscore serve` whose [storage] url is the session's S3.

A training drop put into the bucket's ``inbox/train/`` trains the first model; a score drop put
into ``inbox/score/`` appears scored in the bucket's ``outbox/``; both originals end in the
bucket's ``archive/``. The process keeps only scratch in its local data folder.
"""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import requests

from ingest.lake.remote import open_storage
from scoring.testing.processes import process_env, running
from tests.conftest import SAMPLE, free_port, wait_for

pytestmark = pytest.mark.slow


def test_serve_on_a_bucket_trains_from_and_scores_into_the_bucket(tmp_path: Path, s3) -> None:
    prefix = s3.fresh_prefix("e2e")
    root = open_storage(s3.url(prefix), tmp_path, endpoint_url=s3.endpoint, env=s3.env)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = process_env(
        tmp_path / "data",
        port,
        DROPSCORE__TRAINING__BOOTSTRAP_DATA="",  # the first model comes from the bucket
        **s3.process_env(prefix),
    )

    def put(relative: str, body: bytes) -> None:
        with root.fs.open_output_stream(root.join(relative)) as sink:
            sink.write(body)

    def listed(relative: str) -> list[str]:
        selector = pafs.FileSelector(root.join(relative), allow_not_found=True)
        return sorted(i.base_name for i in root.fs.get_file_info(selector))

    def ready() -> bool:
        try:
            return requests.get(url + "/ready", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    with running(["serve"], env, tmp_path / "serve.log") as proc:
        put("inbox/train/diabetes.csv", SAMPLE.read_bytes())
        wait_for(lambda: proc.poll() is None and ready(), 180, 0.2, "a model trained from S3")
        def poller() -> dict:
            return requests.get(url + "/health", timeout=10).json()["bucket"]

        bucket = wait_for(lambda: (b := poller())["taken"] == 1 and b, 60, 0.2, "/health's bucket")
        assert bucket["alive"] and bucket["polls"] >= 1
        assert f"s3://{s3.bucket}/{prefix}/inbox/score/" in bucket["inboxes"]
        put("inbox/score/batch.csv", SAMPLE.read_bytes())
        outputs = wait_for(lambda: listed("outbox"), 120, 0.2, "a scored file in the outbox")
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
    [output] = outputs
    with root.fs.open_input_stream(root.join("outbox", output)) as source:
        scored = pq.read_table(io.BytesIO(source.read()))
    assert scored.num_rows == SAMPLE.read_text().count("\n") - 1
    assert "prediction" in scored.column_names
    archived = listed("archive")
    assert sorted(a.split("__", 1)[1] for a in archived) == ["batch.csv", "diabetes.csv"]
    assert listed("inbox/train") == [] and listed("inbox/score") == []
    assert "1" in listed("models") and "model.skops" in listed("models/1")  # the artifacts too
    local = tmp_path / "data"
    assert not list((local / "outbox").iterdir())  # the local folder was scratch
    assert not list((local / "models").iterdir())
    for kind in ("train", "score"):  # the lake is in the bucket, in today's layout
        assert [n for n in listed(f"lake/{kind}") if n.endswith(".parquet")]
        assert not list((local / "lake" / kind).iterdir())
