"""Late labels and the prediction log when ``[storage] url`` is a bucket (the session's moto).

A labelled drop's lake file is only in the bucket, and so is a scored drop's output (its local
copy is removed after the upload); the join must read both there. The prediction log's parts
go to the bucket too, named so that replicas writing one bucket never clash.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from scoring.inference.dataplane import Scored
from scoring.lifecycle.schema import Feature, FeatureSchema
from scoring.models.factory import open_model
from scoring.monitoring.labels import join_drop
from scoring.monitoring.predlog import LogOptions, PredictionLog
from scoring.storage import storage_root

from ._s3 import storage_settings
from .conftest import make_settings


def _settings(tmp_path: Path, s3, monkeypatch):
    return make_settings(
        tmp_path, model={"id_columns": ["id"]}, storage=storage_settings(s3, monkeypatch, "labels")
    )


def _put(root, relative: str, table: pa.Table) -> None:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    with root.fs.open_output_stream(root.join(relative)) as out:
        out.write(sink.getvalue())


def test_labels_in_the_bucket_join_outputs_in_the_bucket(tmp_path, s3, monkeypatch):
    settings = _settings(tmp_path, s3, monkeypatch)
    model = open_model(settings)
    root = storage_root(settings)
    layout = settings.layout
    # A scored drop whose output was uploaded (and its local copy removed, as drops.py does).
    scored = model.ledger.receive(
        original_name="today.csv", kind="score", size_bytes=1, sha256="a" * 64, processing_path=None
    )
    out = layout.outbox / "today.parquet"
    model.ledger.mark_normalized(
        scored.id, rows=3, columns=2, format="csv", encoding="utf-8", delimiter=",",
        column_map={}, lake_path=layout.lake("score") / "s.parquet",
        archive_path=layout.archive / "s.csv",
    )  # fmt: skip
    model.ledger.mark_scored(scored.id, out, "1", 3, 0)
    _put(root, layout.key(out), pa.table({"id": [1, 2, 3], "prediction": [10.0, 20.0, 30.0]}))
    assert not out.exists()
    # A labelled drop whose lake file is only in the bucket.
    labelled = model.ledger.receive(
        original_name="labels.csv",
        kind="train",
        size_bytes=1,
        sha256="b" * 64,
        processing_path=None,
    )
    lake_file = layout.lake("train") / f"{labelled.id}__labels.parquet"
    model.lake("train").write(
        lake_file.name,
        pa.table({"id": [2, 3, 4], "target": [21.0, 29.0, 40.0]}).to_batches(),
        pa.schema([("id", pa.int64()), ("target", pa.float64())]),
    )
    record = model.ledger.mark_normalized(
        labelled.id, rows=3, columns=2, format="csv", encoding="utf-8", delimiter=",",
        column_map={}, lake_path=lake_file, archive_path=layout.archive / "l.csv",
    )  # fmt: skip
    assert not lake_file.exists()

    touched = join_drop(model, record)

    [(version, day)] = touched
    assert version == 1
    labels, answers = model.outcomes.pairs(1, day)
    assert sorted(zip(labels, answers, strict=True)) == [("21", "20"), ("29", "30")]


def test_the_prediction_log_is_written_to_the_bucket_in_parts_that_never_clash(
    tmp_path, s3, monkeypatch
):
    settings = _settings(tmp_path, s3, monkeypatch)
    model = open_model(settings)
    schema = FeatureSchema((Feature("x", "numeric"),), "y", "regression")
    replicas = [
        PredictionLog(lambda name: model.prediction_log(), LogOptions(1.0, 1_000, 3600, 1 << 30, 1))
        for _ in range(2)
    ]
    for i, log in enumerate(replicas):  # two writers of one pid and sequence, as on two replicas
        event = Scored("default", "1", "predict", 1, 0.0, schema, [[1.0]], [5.0])
        log.observe(event._replace(request_id=f"r{i}"))
        log.stop()
    assert [log.written for log in replicas] == [1, 1]
    root = storage_root(settings)
    folder = root.join(settings.layout.key(settings.layout.prediction_log))
    parts = [
        i.base_name
        for i in root.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
        if i.base_name.endswith(".parquet")
    ]
    assert len(parts) == 2
    assert not settings.layout.prediction_log.exists()  # nothing on the local disk
    ids = sorted(model.prediction_log().read(["row_id"]).column("row_id").to_pylist())
    assert ids == ["r0", "r1"]


def test_part_names_differ_for_one_time_pid_and_sequence_on_two_hosts():
    from scoring.monitoring.predlog import part_name, part_time

    at = datetime(2026, 12, 6, 12, tzinfo=UTC)
    names = {part_name(at, 7, 1, host=h) for h in ("replica-a", "replica-b", "replica-a")}
    assert len(names) == 3  # a random token each, so even one host twice does not clash
    assert {part_time(n) for n in names} == {at}
    assert all("/" not in n for n in (part_name(at, 7, 1, host="a/b"),))
