"""The intake with its lake on the local disk and in a bucket (the session's S3): same assertions.

The lake is reached only through ``IngestConfig.lake_store`` (``Lake`` over the local folder, or
over the ``[storage] url`` prefix): accepted drops, duplicates by content, type conflicts, a
rejected drop's lake file and a crash's temporaries behave the same wherever the lake lives.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.base.config import IngestConfig
from ingest.base.errors import MalformedFileError
from ingest.base.layout import DataLayout
from ingest.lake.remote import open_storage
from ingest.lake.store import Lake
from ingest.pipeline.intake import Intake
from ingest.state.db import StateDB
from ingest.state.ledger import DUPLICATE, NORMALIZED, QUARANTINED, Ledger


@pytest.fixture(params=["local", "s3"])
def intake(request, tmp_path: Path) -> Intake:
    layout = DataLayout(tmp_path / "data")
    lakes = None
    if request.param == "s3":
        s3 = request.getfixturevalue("s3")
        root = open_storage(s3.url(s3.fresh_prefix("ingest")), tmp_path, endpoint_url=s3.endpoint,
                            env=s3.env)  # fmt: skip

        def lakes(kind: str) -> Lake:
            return Lake(root.fs, root.join(layout.key(layout.lake(kind))))

    config = IngestConfig(layout, stable_seconds=0.1, max_attempts=2, lakes=lakes)
    config.make_dirs()
    return Intake(config, Ledger(StateDB.at(layout.db_path)))


def _drop(intake: Intake, name: str, body: str | bytes, kind: str = "train"):
    path = intake.config.data_dir / name
    path.write_bytes(body.encode() if isinstance(body, str) else body)
    return intake.take_copy(path, kind)


def test_a_drop_lands_in_the_lake_once_and_its_content_twice_is_a_duplicate(intake) -> None:
    lake = intake.config.lake_store("train")
    first = _drop(intake, "a.csv", "age,target\n1,2\n3,4\n")
    assert first.state == NORMALIZED and first.rows == 2
    assert lake.names() == [f"{first.sha256}.parquet"]
    again = _drop(intake, "a.json", json.dumps([{"age": 1, "target": 2}, {"age": 3, "target": 4}]))
    assert again.state == DUPLICATE and again.duplicate_of == first.id
    assert lake.names() == [f"{first.sha256}.parquet"]  # the rows once
    assert lake.read(["age"]).column("age").to_pylist() == [1, 3]
    assert intake._train_lake_has_data()


def test_a_type_conflict_is_refused_against_the_lake(intake) -> None:
    lake = intake.config.lake_store("train")
    _drop(intake, "a.csv", "age,target\n1,2\n")
    refused = _drop(intake, "b.csv", "age,target\nold,2\n")
    assert refused.state == QUARANTINED and refused.error["code"] == "type_conflict"
    assert len(lake.names()) == 1
    assert lake.unified_schema().names[:2] == ["age", "target"]


def test_a_rejected_drop_leaves_the_lake_and_temporaries_are_cleaned(intake) -> None:
    lake = intake.config.lake_store("score")
    record = _drop(intake, "s.csv", "age\n1\n", kind="score")
    assert lake.names() == [f"{record.sha256}.parquet"]
    intake.reject_normalized(record, MalformedFileError("no good for the model"))
    assert lake.names() == []
    with lake.fs.open_output_stream(lake.path(".x.parquet.0a1b2c3d4e5f.tmp")) as sink:
        sink.write(b"half")  # what a crashed writer leaves
    intake.resume()
    assert lake.remove_temporaries() == []  # resume removed it already
