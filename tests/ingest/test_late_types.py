"""Issue 18 (1): one bad value in a late batch must quarantine a training file, not poison the lake.

Real files through the real intake, ledger and lake; small ``batch_rows`` stand in for the
65,536 rows of a batch, and the campaign's own 70,000-row reproduction runs once as well.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.base.config import IngestConfig, ReadOptions
from ingest.lake.store import lake_files, lake_schema
from ingest.pipeline.intake import Intake
from ingest.state.db import StateDB
from ingest.state.ledger import NORMALIZED, QUARANTINED, Ledger

HEADER = "age,income,city,target\n"


def _rows(start: int, count: int) -> str:
    return "".join(f"{20 + i % 50},{1000 + i}.5,c{i % 3},{i % 7}\n" for i in range(start, count))


def _intake(config: IngestConfig, ledger: Ledger, batch_rows: int) -> Intake:
    return Intake(replace(config, max_file_mb=64, read=ReadOptions(batch_rows=batch_rows)), ledger)


def _drop(config: IngestConfig, name: str, text: str) -> Path:
    path = config.inbox("train") / name
    path.write_text(text)
    return path


def _error(config: IngestConfig, record_id: int) -> dict[str, object]:
    [path] = config.quarantine.glob(f"{record_id}__*.error.json")
    return dict(json.loads(path.read_text()))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_late_text_in_a_numeric_column_quarantines_the_file(
    config: IngestConfig, ledger: Ledger, suffix: str
) -> None:
    intake = _intake(config, ledger, batch_rows=100)
    clean = intake.take(_drop(config, "clean.csv", HEADER + _rows(0, 50)), "train")
    assert clean.state == NORMALIZED
    body = _rows(0, 500) + "abc,1.5,c1,7\n"
    if suffix == ".jsonl":
        lines = [line.split(",") for line in body.splitlines()]
        body = "".join(
            json.dumps(
                {
                    "age": a if a == "abc" else int(a),
                    "income": float(i),
                    "city": c,
                    "target": int(t),
                }
            )
            + "\n"
            for a, i, c, t in lines
        )
    record = intake.take(
        _drop(config, f"late{suffix}", body if suffix == ".jsonl" else HEADER + body), "train"
    )

    assert record.state == QUARANTINED
    error = _error(config, record.id)
    assert error["code"] == "type_conflict"
    assert error["column"] == "age"
    assert error["row"] == 501
    assert "'abc'" in str(error["message"]) and "text" in str(error["message"])
    assert len(lake_files(config.lake("train"))) == 1  # nothing of it reached the lake
    schema = lake_schema(config.lake("train"))
    assert schema is not None and schema.field("age").type == pa.int64()

    later = intake.take(_drop(config, "clean2.csv", HEADER + _rows(60, 90)), "train")
    assert later.state == NORMALIZED  # the next clean drop is still taken


def test_late_decimals_still_widen_within_the_kind(config: IngestConfig, ledger: Ledger) -> None:
    intake = _intake(config, ledger, batch_rows=100)
    record = intake.take(
        _drop(config, "d.csv", HEADER + _rows(0, 300) + "31.5,2.5,c1,3\n"), "train"
    )
    assert record.state == NORMALIZED
    lake = pq.read_table(lake_files(config.lake("train"))[0])
    assert lake.schema.field("age").type == pa.float64()
    assert lake.num_rows == 301


def test_late_text_in_an_empty_column_against_a_numeric_lake(
    config: IngestConfig, ledger: Ledger
) -> None:
    """A column empty in the first batch and text later must still meet the lake's check."""
    intake = _intake(config, ledger, batch_rows=100)
    assert intake.take(_drop(config, "a.csv", HEADER + _rows(0, 20)), "train").state == NORMALIZED
    body = "".join(f",{i}.5,c1,{i % 7}\n" for i in range(300)) + "old,1.5,c1,2\n"
    record = intake.take(_drop(config, "b.csv", HEADER + body), "train")
    assert record.state == QUARANTINED
    error = _error(config, record.id)
    assert error["column"] == "age" and error["row"] == 301
    assert "files already in the lake" in str(error["message"])


def test_a_tiny_minority_of_text_is_refused_on_an_empty_lake(
    config: IngestConfig, ledger: Ledger
) -> None:
    """First model on an empty lake: ``age`` must not silently become a category."""
    intake = _intake(config, ledger, batch_rows=10_000)
    body = _rows(0, 400) + "n/k,1.5,c1,7\n" + _rows(400, 600)
    record = intake.take(_drop(config, "first.csv", HEADER + body), "train")
    assert record.state == QUARANTINED
    error = _error(config, record.id)
    assert error["column"] == "age" and error["row"] == 401
    assert "'n/k'" in str(error["message"])
    assert lake_files(config.lake("train")) == []


def test_a_real_category_is_still_text(config: IngestConfig, ledger: Ledger) -> None:
    intake = _intake(config, ledger, batch_rows=10_000)
    record = intake.take(_drop(config, "c.csv", HEADER + _rows(0, 100)), "train")
    assert record.state == NORMALIZED
    schema = lake_schema(config.lake("train"))
    assert schema is not None and schema.field("city").type == pa.string()


def test_score_drops_keep_widening(config: IngestConfig, ledger: Ledger) -> None:
    """A score drop's bad value fails its row when scored; the drop itself is taken."""
    intake = _intake(config, ledger, batch_rows=100)
    path = config.inbox("score") / "s.csv"
    path.write_text(HEADER + _rows(0, 300) + "abc,1.5,c1,7\n")
    assert intake.take(path, "score").state == NORMALIZED


@pytest.mark.slow
def test_the_campaign_reproduction(config: IngestConfig, ledger: Ledger) -> None:
    """70,000 numeric rows, then ``abc``, at the default 65,536 rows a batch."""
    intake = _intake(config, ledger, batch_rows=65_536)
    header = "age," + ",".join(f"x{i}" for i in range(5)) + ",target\n"
    body = "".join(f"{i % 90},{i},{i}.5,{i % 3},{i % 5},{i % 11},{i % 7}\n" for i in range(70_000))
    record = intake.take(_drop(config, "repro.csv", header + body + "abc,1,2,3,4,5,7\n"), "train")
    assert record.state == QUARANTINED
    assert _error(config, record.id)["row"] == 70_001
    assert lake_files(config.lake("train")) == []


def test_a_lake_poisoned_by_an_older_version_refuses_the_run(tmp_path: Path) -> None:
    """Mixed types already in the lake: the retrain names the column and files, never OOMs."""
    from scoring.lifecycle.registry import Registry
    from scoring.lifecycle.runner import run_retrain
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, training={"min_rows": 10})
    lake = settings.layout.lake("train")
    lake.mkdir(parents=True)
    n = 400
    good = {
        "age": [20 + i % 50 for i in range(n)],
        "x": [float(i) for i in range(n)],
        "target": [float(i % 7) for i in range(n)],
        "_file_id": [1] * n,
        "_row": list(range(n)),
    }
    pq.write_table(pa.table(good), lake / "good.parquet")
    bad = {**good, "age": [str(20 + i % 50) for i in range(n - 1)] + ["abc"], "_file_id": [2] * n}
    pq.write_table(pa.table(bad), lake / "older.parquet")

    run = run_retrain(settings, Registry(settings.models_dir, StateDB.at(settings.db_path)), "cli")

    assert run.state == "failed"
    assert "MemoryError" not in (run.error or "")
    assert "'age'" in (run.error or "")
    assert "good.parquet" in (run.error or "") and "older.parquet" in (run.error or "")


def _late_bad_csv(path: Path, rows: int = 500, bad: int = 401) -> Path:
    """The sample's rows repeated, with text in ``age`` at data row ``bad`` only."""
    from tests.conftest import SAMPLE

    lines = SAMPLE.read_text().splitlines()
    header, body = lines[0], lines[1:]
    out = [body[i % len(body)] for i in range(rows)]
    out[bad - 1] = "abc" + out[bad - 1][out[bad - 1].index(",") :]
    path.write_text("\n".join([header, *out]) + "\n")
    return path


def _check_scored(text: str, bad: int = 401) -> None:
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 500
    failed = [i + 1 for i, r in enumerate(rows) if r["error"]]
    assert failed == [bad], failed
    assert "age" in rows[bad - 1]["error"] and "'abc'" in rows[bad - 1]["error"]
    assert all(r["prediction"] for i, r in enumerate(rows) if i + 1 != bad)


def test_a_late_bad_value_fails_its_row_in_score_file_and_the_cli(tmp_path: Path) -> None:
    """``/score-file`` over HTTP and ``dropscore score``: the row fails, the column is scored."""
    import pandas as pd
    import requests
    from click.testing import CliRunner

    from scoring.api.app import create_app
    from scoring.lifecycle.registry import Registry
    from scoring.service.cli import main
    from scoring.settings import load_settings
    from tests._server import serving
    from tests.conftest import SAMPLE, register_trained

    toml = tmp_path / "settings.toml"
    toml.write_text(
        '[paths]\ndata_dir = "data"\n[training]\nbootstrap_data = ""\n'
        "[scoring]\nbatch_rows = 100\n",
        encoding="utf-8",
    )
    settings = load_settings(toml, env={})
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    register_trained(settings, registry, pd.read_csv(SAMPLE))
    src = _late_bad_csv(tmp_path / "late.csv")

    with serving(create_app(settings, registry=registry)) as url, src.open("rb") as fh:
        response = requests.post(url + "/score-file", files={"file": ("late.csv", fh)}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["X-Rows-Failed"] == "1"
    _check_scored(response.text)

    dst = tmp_path / "late.scored.csv"
    result = CliRunner().invoke(
        main, ["--settings", str(toml), "score", str(src), "-o", str(dst)], env={}
    )
    assert result.exit_code == 0, result.output
    _check_scored(dst.read_text())


def test_the_champion_decides_a_feature_s_kind(tmp_path: Path) -> None:
    """Text in a feature the champion takes as a number is refused even with no lake to check."""
    import pandas as pd

    from scoring.lifecycle.registry import Registry
    from scoring.lifecycle.runner import run_retrain
    from scoring.service.runtime import open_intake
    from tests.conftest import SAMPLE, make_settings

    settings = make_settings(tmp_path)
    _config, ledger, intake = open_intake(settings)
    assert intake.take_copy(SAMPLE, "train").state == NORMALIZED
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    assert run_retrain(settings, registry, "cli").promoted
    for path in lake_files(settings.layout.lake("train")):
        path.unlink()  # the lake emptied: only the champion knows ``age`` is a number
    frame = pd.read_csv(SAMPLE)
    frame["age"] = ["young" if v < 0 else "old" for v in frame["age"]]
    drop = tmp_path / "ages.csv"
    frame.to_csv(drop, index=False)
    record = ledger.get(intake.take_copy(drop, "train").id)
    assert record is not None and record.state == QUARANTINED
    assert record.error is not None and record.error["code"] == "type_conflict"
    assert record.error["column"] == "age"
    assert lake_files(settings.layout.lake("train")) == []
