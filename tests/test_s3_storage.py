"""[storage]: the settings, and the filesystem they open, against a real S3 endpoint (moto)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs
import pytest

from ingest.lake.remote import open_storage, open_uri, split_s3, storage_url_problem
from scoring.setting_values import SettingsError
from scoring.storage import storage_root
from tests.conftest import make_settings


@pytest.mark.parametrize(
    "url", ["", "s3://bucket", "s3://my-bucket/prefix", "s3://my.bucket/a/b/c/"]
)
def test_storage_urls_accepted(url: str) -> None:
    assert storage_url_problem(url) is None


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("/data/lake", "s3://bucket/prefix"),
        ("gs://bucket/x", "s3://bucket/prefix"),
        ("s3://B/x", "bucket 'B'"),
        ("s3://bucket/../x", "'..'"),
        ("s3://bucket/x?versionId=1", "query"),
    ],
)
def test_bad_storage_url_stops_start_naming_the_key(tmp_path: Path, url: str, fragment: str):
    with pytest.raises(SettingsError) as caught:
        make_settings(tmp_path, storage={"url": url})
    message = str(caught.value)
    assert message.startswith("[storage] url = ") and fragment in message
    assert "\n" not in message


def test_credentials_are_never_settings(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="unknown key"):
        make_settings(tmp_path, storage={"aws_secret_access_key": "x"})


def test_empty_url_is_the_data_folder(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    root = storage_root(settings)
    assert isinstance(root.fs, pafs.LocalFileSystem)
    assert root.root == str(settings.data_dir) and not root.remote


def test_s3_url_opens_the_bucket_prefix_at_the_endpoint(tmp_path: Path, s3) -> None:
    prefix = s3.fresh_prefix("core")
    settings = make_settings(tmp_path, storage=s3.settings(prefix))
    root = storage_root(settings, env=s3.env)
    assert root.remote and root.root == f"{s3.bucket}/{prefix}"
    key = root.join("inbox", "train", "a.csv")
    with root.fs.open_output_stream(key) as sink:
        sink.write(b"x,target\n1,2\n")
    listed = root.fs.get_file_info(pafs.FileSelector(root.join("inbox", "train")))
    assert [i.base_name for i in listed] == ["a.csv"]
    assert root.uri("inbox", "train", "a.csv") == f"s3://{s3.bucket}/{prefix}/inbox/train/a.csv"
    # the same object, reached by URI (dropscore score s3://…, batch jobs)
    fs, path = open_uri(root.uri("inbox", "train", "a.csv"), endpoint_url=s3.endpoint, env=s3.env)
    with fs.open_input_stream(path) as source:
        assert source.read() == b"x,target\n1,2\n"


def test_buckets_are_never_created(s3) -> None:
    root = open_storage("s3://no-such-bucket-x/p", Path("."), endpoint_url=s3.endpoint, env=s3.env)
    with pytest.raises(OSError), root.fs.open_output_stream(root.join("k")) as sink:
        sink.write(b"x")


def test_split_s3() -> None:
    assert split_s3("s3://b-1/a/b.parquet") == ("b-1", "a/b.parquet")
    with pytest.raises(ValueError):
        split_s3("/local/path")
