"""The names a batch job may read and write, as pure functions, and a job over the bucket.

Only the model's own lake and outbox (never another folder, never out of them by '..' or a
link) or ``s3://`` under ``[storage] url``; with the bucket configured, the model's names are
its keys there. The last test runs a job on the session's moto bucket end to end.
"""

from __future__ import annotations

import pandas as pd
import pyarrow.fs as pafs
import pytest

from scoring.errors import ValidationFailed
from scoring.jobs.locations import resolve_input, resolve_output

from .conftest import make_settings, register_trained

STORAGE = {"url": "s3://bucket/prefix", "endpoint_url": "http://127.0.0.1:1", "region": "r"}


def test_names_inside_the_model_resolve_to_its_folders(tmp_path):
    settings = make_settings(tmp_path)
    target = resolve_input(settings, "lake/score/a.parquet")
    assert target.location == str((settings.layout.lake("score") / "a.parquet").resolve())
    out, fmt = resolve_output(settings, "outbox/sub/b.jsonl")
    assert out.location == str((settings.layout.outbox / "sub" / "b.jsonl").resolve())
    assert fmt == "jsonl"


def test_a_link_out_of_the_outbox_is_refused(tmp_path):
    settings = make_settings(tmp_path)
    settings.layout.outbox.mkdir(parents=True)
    (settings.layout.outbox / "out").symlink_to(tmp_path)
    with pytest.raises(ValidationFailed, match="leads out of the model's outbox"):
        resolve_input(settings, "outbox/out/secret.parquet")


def test_with_a_bucket_names_are_its_keys_and_uris_stay_under_the_prefix(tmp_path):
    settings = make_settings(tmp_path, storage=STORAGE)
    assert resolve_input(settings, "outbox/a.parquet").location == (
        "s3://bucket/prefix/outbox/a.parquet"
    )
    assert resolve_input(settings, "s3://bucket/prefix/in/a.parquet").location == (
        "s3://bucket/prefix/in/a.parquet"
    )
    outside = ("s3://bucket/other/a", "s3://bucket/prefixed/a", "s3://bucket/prefix/../x/a",
               "s3://other/prefix/a")  # fmt: skip
    for name in outside:
        with pytest.raises(ValidationFailed):
            resolve_input(settings, name + ".parquet")


def test_a_job_over_the_bucket_on_the_local_engine(tmp_path, diabetes, s3, monkeypatch):
    from scoring.bulk.filesystems import Store
    from scoring.jobs.runner import JobRunner
    from scoring.models.factory import open_models
    from scoring.testing.moto import CREDENTIALS

    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    settings = make_settings(tmp_path, storage=s3.settings(s3.fresh_prefix("jobs")))
    models = open_models(settings)
    register_trained(settings, models.default.registry, diabetes)
    fs, key = Store(s3.endpoint, "us-east-1").open(settings.storage.url + "/x")
    key = key.rsplit("/", 1)[0]  # the prefix, on the bucket
    local = tmp_path / "in.parquet"
    diabetes.drop(columns="target").to_parquet(local, index=False)
    pafs.copy_files(str(local), f"{key}/outbox/in.parquet", destination_filesystem=fs)
    models.default.jobs.submit("outbox/in.parquet", "outbox/in.scored.csv")
    done = JobRunner(models).run_once()
    assert done is not None and done.state == "succeeded", done
    assert (done.rows_scored, done.rows_failed) == (442, 0)
    with fs.open_input_stream(f"{key}/outbox/in.scored.csv") as fh:
        scored = pd.read_csv(fh)
    assert len(scored) == 442 and "prediction" in scored.columns
