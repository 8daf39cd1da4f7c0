"""An infinite number (``inf``, ``1e400``, ``Infinity``) never reaches a model.

Real files through the real intake (ledger, lake, quarantine records), a real retrain in its
child process over a lake an older version filled with one, and ``/score-file`` on the real app.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ingest.base.config import ReadOptions
from ingest.lake.store import lake_files, lake_schema
from ingest.state.db import StateDB
from scoring.bulk.batch import score_path
from scoring.lifecycle.champion import load_version
from scoring.lifecycle.registry import Registry
from scoring.lifecycle.runner import run_retrain
from scoring.service.runtime import open_intake
from scoring.settings import Settings

from .conftest import make_settings


def _take(settings: Settings, path: Path) -> object:
    """Ingest a training drop the way the service does; return its ledger row."""
    _config, ledger, intake = open_intake(settings)
    return ledger.get(intake.take_copy(path, "train").id)


def _error(settings: Settings, record: object) -> dict:
    [path] = (settings.data_dir / "quarantine").glob(f"{record.id}__*.error.json")  # type: ignore[attr-defined]
    return dict(json.loads(path.read_text()))


def _csv(tmp_path: Path, name: str, frame: pd.DataFrame) -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("written", ["inf", "-inf", "1e400", "Infinity", "-1E999"])
@pytest.mark.parametrize("column", ["bmi", "target"])
def test_a_training_drop_with_an_infinite_number_is_quarantined(
    tmp_path: Path, diabetes: pd.DataFrame, written: str, column: str
) -> None:
    settings = make_settings(tmp_path)
    frame = diabetes.head(60).astype({column: object})
    frame.loc[41, column] = written  # row 42 of the file (1-based, header excluded)
    record = _take(settings, _csv(tmp_path, "d.csv", frame))

    assert record.state == "quarantined"  # type: ignore[attr-defined]
    error = _error(settings, record)
    assert error["code"] == "type_conflict"
    assert error["column"] == column and error["row"] == 42
    assert "not finite" in error["message"] and f"'{column}'" in error["message"]
    assert lake_files(settings.layout.lake("train")) == []


def test_a_late_infinite_value_neither_widens_the_lake_nor_enters_it(
    tmp_path: Path, diabetes: pd.DataFrame
) -> None:
    settings = make_settings(tmp_path, ingest={"batch_rows": 50})
    clean = diabetes.head(100)
    assert _take(settings, _csv(tmp_path, "clean.csv", clean)).state == "normalized"  # type: ignore[attr-defined]
    assert lake_schema(settings.layout.lake("train")).field("target").type == pa.int64()  # type: ignore[union-attr]
    late = diabetes.head(300).astype({"target": object})
    late.loc[250, "target"] = "inf"  # a later batch than the one that decided int64
    record = _take(settings, _csv(tmp_path, "late.csv", late))

    assert record.state == "quarantined"  # type: ignore[attr-defined]
    error = _error(settings, record)
    assert (error["column"], error["row"]) == ("target", 251)
    assert len(lake_files(settings.layout.lake("train"))) == 1
    assert lake_schema(settings.layout.lake("train")).field("target").type == pa.int64()  # type: ignore[union-attr]


def test_nan_written_as_text_is_a_missing_value_not_a_refusal(
    tmp_path: Path, diabetes: pd.DataFrame
) -> None:
    settings = make_settings(tmp_path)
    frame = diabetes.head(60).astype({"bmi": object})
    frame.loc[10, "bmi"] = "NaN"
    assert _take(settings, _csv(tmp_path, "d.csv", frame)).state == "normalized"  # type: ignore[attr-defined]


def test_a_retrain_over_a_lake_holding_an_infinity_leaves_the_row_out_and_says_so(
    tmp_path: Path, diabetes: pd.DataFrame
) -> None:
    settings = make_settings(tmp_path)
    assert _take(settings, _csv(tmp_path, "d.csv", diabetes)).state == "normalized"  # type: ignore[attr-defined]
    [path] = lake_files(settings.layout.lake("train"))
    table = pq.read_table(path)  # as an older version let it in
    bmi = table.column("bmi").to_numpy().copy()
    bmi[7] = float("inf")
    table = table.set_column(table.schema.get_field_index("bmi"), "bmi", pa.array(bmi))
    pq.write_table(table, path)
    assert pc.any(pc.is_inf(pq.read_table(path).column("bmi"))).as_py()

    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    run = run_retrain(settings, registry, "cli")

    assert run.state == "succeeded", run.reason
    assert run.rows == len(diabetes) - 1
    training = registry.card(run.version)["training_data"]
    assert training["dropped_nonfinite"] == {"bmi": 1}
    assert training["rows"] == len(diabetes) - 1


def test_score_file_fails_only_the_row_with_an_infinite_feature(
    client, trained: int, diabetes: pd.DataFrame
) -> None:
    frame = diabetes.head(6).drop(columns=["target"]).astype({"bmi": object, "s1": object})
    frame.loc[1, "bmi"] = "inf"
    frame.loc[3, "s1"] = "1e400"
    response = client.post(
        "/score-file", data=frame.to_csv(index=False).encode(), content_type="text/csv"
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    scored = pd.read_csv(io.BytesIO(response.get_data()))
    assert scored.loc[1, "error"] == "bmi: expected a finite number"
    assert scored.loc[3, "error"] == "s1: expected a finite number"
    assert scored["prediction"].isna().tolist() == [False, True, False, True, False, False]
    assert scored.loc[[0, 2, 4, 5], "error"].isna().all()


def test_a_score_drop_fails_only_the_row_with_an_infinite_feature(
    settings: Settings, trained: int, diabetes: pd.DataFrame, tmp_path: Path
) -> None:
    frame = diabetes.head(5).drop(columns=["target"])
    frame.loc[2, "bmi"] = float("inf")  # a typed Parquet column holding an infinity
    source = tmp_path / "in.parquet"
    frame.to_parquet(source, index=False)
    out = tmp_path / "out.csv"
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    score_path(source, out, load_version(registry, trained), read=ReadOptions(), fmt="csv")
    scored = pd.read_csv(out)
    assert scored.loc[2, "error"] == "bmi: expected a finite number"
    assert scored["prediction"].isna().tolist() == [False, False, True, False, False]
