"""The bulk scorer core, /score-file over the test client, and `dropscore score`."""

from __future__ import annotations

import gzip
import io
import json
import re

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from ingest.base.config import ReadOptions
from ingest.state.db import StateDB
from scoring.bulk.batch import MissingFeatures, output_name, score_path
from scoring.lifecycle.champion import load_version

from .conftest import assert_error, make_settings, register_trained

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


@pytest.fixture
def model(registry, trained):
    return load_version(registry, trained)


@pytest.fixture
def frame(diabetes) -> pd.DataFrame:
    """Scoring input with the users' own header spelling."""
    return diabetes.drop(columns="target").rename(columns=str.upper)


def write_as(frame: pd.DataFrame, path, kind: str) -> None:
    if kind == "csv":
        frame.to_csv(path, index=False)
    elif kind == "tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif kind == "csv.gz":
        with gzip.open(path, "wt") as fh:
            frame.to_csv(fh, index=False)
    elif kind == "semicolon":
        frame.to_csv(path, index=False, sep=";", decimal=",")
    elif kind == "xlsx":
        frame.to_excel(path, index=False, engine="openpyxl")
    elif kind == "json":
        path.write_text(frame.to_json(orient="records", double_precision=15))
    elif kind == "jsonl":
        path.write_text(frame.to_json(orient="records", lines=True, double_precision=15))
    elif kind == "parquet":
        frame.to_parquet(path, index=False)


def read_output(path, fmt: str) -> pd.DataFrame:
    if fmt == "parquet":
        return pq.read_table(path).to_pandas()
    if fmt == "csv":
        return pd.read_csv(path)
    if fmt == "json":
        return pd.DataFrame.from_records(json.loads(path.read_text()))
    return pd.read_json(path, lines=True)


SUFFIX = {"csv.gz": ".csv.gz", "semicolon": ".csv"}


@pytest.mark.parametrize(
    "kind", ["csv", "tsv", "csv.gz", "semicolon", "xlsx", "json", "jsonl", "parquet"]
)
@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl", "json"])
def test_every_input_and_output_format(tmp_path, model, frame, kind, fmt):
    src = tmp_path / f"in{SUFFIX.get(kind, '.' + kind)}"
    write_as(frame, src, kind)
    dst = tmp_path / f"out.{fmt}"
    summary = score_path(src, dst, model, read=ReadOptions(batch_rows=100), fmt=fmt)
    assert (summary.rows_scored, summary.rows_failed) == (len(frame), 0)
    out = read_output(dst, fmt)
    assert list(out.columns) == [*frame.columns, "prediction", "model_version", "error"]
    expected = model.pipeline.predict(frame.to_numpy())
    np.testing.assert_allclose(out["prediction"], expected, rtol=1e-9)  # input order kept
    assert set(out["model_version"].astype(str)) == {"1"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries


def test_bad_rows_scattered_over_batches(tmp_path, model, frame):
    bad = frame.astype(object)
    bad_rows = [3, 150, 151, 420]
    for row in bad_rows:
        bad.loc[row, "BMI"] = "n/a?"
    bad.loc[200, "BP"] = None  # a missing value is imputed, not an error
    src = tmp_path / "in.csv"
    bad.to_csv(src, index=False)
    summary = score_path(
        src, tmp_path / "out.parquet", model, read=ReadOptions(batch_rows=64), fmt="parquet"
    )
    assert (summary.rows_scored, summary.rows_failed) == (len(frame) - 4, 4)
    out = pq.read_table(tmp_path / "out.parquet").to_pandas()
    assert len(out) == len(frame)
    assert out.loc[bad_rows, "prediction"].isna().all()
    assert (out.loc[bad_rows, "error"] == "bmi: expected a number, got 'n/a?'").all()
    assert out.drop(index=bad_rows)["prediction"].notna().all()
    assert out.drop(index=bad_rows)["error"].isna().all()


def test_missing_feature_columns_refused_before_work(tmp_path, model, frame):
    src = tmp_path / "in.csv"
    frame.drop(columns=["BMI", "S3"]).to_csv(src, index=False)
    with pytest.raises(MissingFeatures) as info:
        score_path(src, tmp_path / "out.csv", model, read=ReadOptions())
    assert info.value.status == 422
    assert info.value.message.startswith("the file lacks the model's feature columns: bmi, s3")
    assert not (tmp_path / "out.csv").exists()


def test_classifier_output_has_probabilities(tmp_path, diabetes, frame):
    from scoring.lifecycle.registry import Registry

    settings = make_settings(tmp_path, model={"estimator": "logistic_regression"})
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    labelled = diabetes.assign(target=np.where(diabetes["target"] > 140, "high", "low"))
    version, _ = register_trained(settings, registry, labelled)
    src = tmp_path / "in.csv"
    frame.to_csv(src, index=False)
    score_path(
        src,
        tmp_path / "o.parquet",
        load_version(registry, version),
        read=ReadOptions(),
        fmt="parquet",
    )
    out = pq.read_table(tmp_path / "o.parquet").to_pandas()
    assert {"probability_high", "probability_low"} <= set(out.columns)
    np.testing.assert_allclose(out["probability_high"] + out["probability_low"], 1.0)
    assert set(out["prediction"]) <= {"high", "low"}


@pytest.mark.parametrize(
    ("name", "file_id", "fmt", "expected"),
    [
        ("sales.csv", 7, "parquet", "sales.7.scored.parquet"),
        ("sales.csv.gz", 7, "csv", "sales.7.scored.csv"),
        ("../../etc/passwd", 3, "csv", "passwd.3.scored.csv"),
        ("a b;$(x).xlsx", 1, "jsonl", "a_b___x.1.scored.jsonl"),
        ("....", 2, "csv", "file.2.scored.csv"),
    ],
)
def test_output_names_are_safe(name, file_id, fmt, expected):
    assert output_name(name, file_id, fmt) == expected


# -- POST /score-file -------------------------------------------------------------------------


def upload(client, data: bytes, filename: str, **query):
    return client.post(
        "/score-file",
        query_string=query,
        data={"file": (io.BytesIO(data), filename)},
        content_type="multipart/form-data",
    )


def test_score_file_multipart_csv(client, trained, frame):
    response = upload(client, frame.to_csv(index=False).encode(), "../../x.csv")
    assert response.status_code == 200
    assert response.headers["X-Model-Version"] == "1"
    assert response.headers["X-Rows-Scored"] == str(len(frame))
    assert response.headers["X-Rows-Failed"] == "0"
    assert response.mimetype == "text/csv"
    out = pd.read_csv(io.BytesIO(response.data))
    assert len(out) == len(frame) and "prediction" in out


@pytest.mark.parametrize(
    ("kind", "filename", "query", "mimetype"),
    [
        ("xlsx", "book.xlsx", {}, "text/csv"),
        ("jsonl", "rows.jsonl", {}, "application/x-ndjson"),
        ("json", "rows.json", {}, "application/json"),
        ("parquet", "t.parquet", {}, "application/vnd.apache.parquet"),
        ("csv", "t.csv", {"format": "parquet"}, "application/vnd.apache.parquet"),
    ],
)
def test_score_file_formats(client, trained, frame, tmp_path, kind, filename, query, mimetype):
    path = tmp_path / filename
    write_as(frame, path, kind)
    response = upload(client, path.read_bytes(), filename, **query)
    assert response.status_code == 200, response.data[:300]
    assert response.mimetype == mimetype


def test_score_file_raw_json_array_is_answered_with_a_json_array(client, trained, frame):
    response = client.post(
        "/score-file", data=frame.to_json(orient="records"), content_type="application/json"
    )
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    records = json.loads(response.data)
    assert isinstance(records, list) and len(records) == len(frame)
    assert "prediction" in records[0]


def test_score_file_reports_failed_rows(client, trained, frame):
    bad = frame.astype(object)
    bad.loc[0, "S1"] = "oops"
    response = upload(client, bad.to_csv(index=False).encode(), "x.csv")
    assert response.headers["X-Rows-Failed"] == "1"


@pytest.mark.parametrize(
    ("data", "filename", "query", "status", "code", "fragment"),
    [
        (b"a,b\n1,2\n", "x.pdf", {}, 415, "unsupported_media_type", "unsupported file type"),
        (b"%PDF-1.4 binary\x00\x01", "x.xlsx", {}, 415, "unsupported_media_type", "ZIP"),
        (b"", "x.csv", {}, 400, "bad_request", "empty"),
        (b"age,sex\n1,2\n", "x.csv", {}, 422, "invalid_input", "lacks the model's feature"),
        (b'[{"a": 1', "x.json", {}, 422, "invalid_input", ""),
        (b"a,b\n", "x.csv", {}, 422, "invalid_input", ""),
        (b"a,b\n1,2\n", "x.csv", {"format": "xml"}, 422, "invalid_input", "format must be one of"),
    ],
)
def test_score_file_errors(client, trained, data, filename, query, status, code, fragment):
    assert_error(upload(client, data, filename, **query), status, code, fragment)


def test_score_file_raw_body_unknown_type(client, trained):
    response = client.post("/score-file", data=b"x", content_type="application/pdf")
    assert_error(response, 415, "unsupported_media_type")


def test_score_file_wrong_field(client, trained):
    response = client.post(
        "/score-file",
        data={"upload": (io.BytesIO(b"a"), "x.csv")},
        content_type="multipart/form-data",
    )
    assert_error(response, 400, "bad_request", "'file'")


def test_score_file_without_model(client, frame):
    assert_error(upload(client, frame.to_csv().encode(), "x.csv"), 503, "no_model")


def test_score_file_row_cap(tmp_path, registry, trained, frame):
    from scoring.api.app import create_app

    settings = make_settings(
        tmp_path, server={"max_rows_per_request": 100}, scoring={"batch_rows": 50}
    )
    client = create_app(settings, registry=registry).test_client()
    response = upload(client, frame.to_csv(index=False).encode(), "x.csv")
    assert_error(response, 413, "too_large", "max_rows_per_request")


def test_score_file_too_large(tmp_path, registry, trained, frame):
    from scoring.api.app import create_app

    settings = make_settings(tmp_path, server={"max_request_mb": 0.01})
    client = create_app(settings, registry=registry).test_client()
    assert_error(upload(client, frame.to_csv().encode(), "x.csv"), 413, "too_large")


def test_score_file_leaves_no_temporaries(client, trained, frame, monkeypatch, tmp_path):
    import tempfile

    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    upload(client, frame.to_csv(index=False).encode(), "x.csv").close()
    upload(client, b"age\n1\n", "x.csv").close()
    assert list(spool.iterdir()) == []


# -- dropscore score --------------------------------------------------------------------------


def test_cli_score(tmp_path, settings, registry, trained, frame, monkeypatch):
    from scoring.service.cli import main

    monkeypatch.setenv("DROPSCORE__PATHS__DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DROPSCORE__TRAINING__BOOTSTRAP_DATA", '""')
    monkeypatch.delenv("DROPSCORE_SETTINGS", raising=False)
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "batch.csv"
    frame.to_csv(src, index=False)
    result = CliRunner().invoke(main, ["score", str(src)])
    assert result.exit_code == 0, result.output
    assert re.search(rf"scored {len(frame):,} rows in .* with model 1, 0 failed", result.output)
    assert len(pd.read_csv(tmp_path / "batch.scored.csv")) == len(frame)
    result = CliRunner().invoke(
        main, ["score", str(src), "-o", str(tmp_path / "o.pq"), "--format", "parquet"]
    )
    assert result.exit_code == 0 and pq.read_table(tmp_path / "o.pq").num_rows == len(frame)
    bad = tmp_path / "bad.csv"
    bad.write_text("age\n1\n")
    result = CliRunner().invoke(main, ["score", str(bad)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: bad.csv: the file lacks the model's feature columns")


@pytest.mark.parametrize(
    ("name", "lines", "out"),
    [("rows.json", False, "rows.scored.json"), ("rows.jsonl", True, "rows.scored.jsonl")],
)
def test_cli_scores_json_to_the_same_json_layout(
    tmp_path, settings, registry, trained, frame, monkeypatch, name, lines, out
):
    from scoring.service.cli import main

    monkeypatch.setenv("DROPSCORE__PATHS__DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DROPSCORE__TRAINING__BOOTSTRAP_DATA", '""')
    monkeypatch.delenv("DROPSCORE_SETTINGS", raising=False)
    (tmp_path / name).write_text(frame.to_json(orient="records", lines=lines))
    result = CliRunner().invoke(main, ["score", str(tmp_path / name)])
    assert result.exit_code == 0, result.output
    text = (tmp_path / out).read_text()
    rows = [json.loads(line) for line in text.splitlines()] if lines else json.loads(text)
    assert isinstance(rows, list) and len(rows) == len(frame)
    assert [r["AGE"] for r in rows] == pytest.approx(frame["AGE"].tolist())


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_outputs_are_strict_and_streamed_batch_by_batch(tmp_path, fmt):
    import pyarrow as pa

    from ingest.base.formats import output_spec

    write = output_spec(fmt).write_function()
    batches = [
        pa.RecordBatch.from_pydict({"x": [1.5, float("nan")], "s": ["a", None]}),
        pa.RecordBatch.from_pydict({"x": [float("inf"), -float("inf")], "s": ["é", "b"]}),
    ]
    assert write(iter(batches), tmp_path / "o")
    text = (tmp_path / "o").read_text()

    def strict(doc: str):
        return json.loads(doc, parse_constant=lambda c: pytest.fail(f"{c} in the output"))

    if fmt == "json":
        assert text.startswith("[\n{") and text.endswith("}\n]\n")
        rows = strict(text)
    else:
        rows = [strict(line) for line in text.splitlines()]
    assert rows == [
        {"x": 1.5, "s": "a"},
        {"x": None, "s": None},
        {"x": None, "s": "é"},
        {"x": None, "s": "b"},
    ]
    assert not write(iter([]), tmp_path / "empty")
