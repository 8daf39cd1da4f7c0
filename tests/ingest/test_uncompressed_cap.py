"""Issue 18 (3): ``max_file_mb`` counts what a gzip file unpacks to, not its size on disk."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from ingest.base.config import IngestConfig
from ingest.lake.store import lake_files
from ingest.pipeline.intake import Intake
from ingest.state.db import StateDB
from ingest.state.ledger import NORMALIZED, QUARANTINED

ROW = b"1,2.5,some text that repeats,7\n"


def _bomb(path: Path, unpacked_mb: float, header: bytes = b"a,b,c,target\n") -> Path:
    """Write a gzip file whose rows unpack to ``unpacked_mb`` MB but weigh a few KB."""
    rows = int(unpacked_mb * 1024 * 1024 / len(ROW)) + 1
    path.write_bytes(gzip.compress(header + ROW * rows, compresslevel=9))
    return path


def _error(config: IngestConfig, record_id: int) -> dict[str, object]:
    [path] = config.quarantine.glob(f"{record_id}__*.error.json")
    return dict(json.loads(path.read_text()))


def test_a_gzip_csv_unpacking_past_the_limit_is_quarantined(
    config: IngestConfig, intake: Intake
) -> None:
    """The fixture's limit is 1 MB; the file is ~10 KB and unpacks to 5 MB."""
    path = _bomb(config.inbox("train") / "bomb.csv.gz", unpacked_mb=5)
    assert path.stat().st_size < 100 * 1024
    record = intake.take(path, "train")
    assert record.state == QUARANTINED
    error = _error(config, record.id)
    assert error["code"] == "file_too_large"
    assert "unpacks to more than 1 MB" in str(error["message"])
    assert "max_file_mb" in str(error["expected"])
    assert lake_files(config.lake("train")) == []
    assert (config.quarantine / f"{record.id}__bomb.csv.gz").is_file()  # nothing is lost


def test_a_gzip_jsonl_unpacking_past_the_limit_is_quarantined(
    config: IngestConfig, intake: Intake
) -> None:
    line = json.dumps({"a": 1, "b": "some text that repeats", "target": 7}).encode() + b"\n"
    path = config.inbox("score") / "bomb.jsonl.gz"
    path.write_bytes(gzip.compress(line * (3 * 1024 * 1024 // len(line))))
    record = intake.take(path, "score")
    assert record.state == QUARANTINED
    assert _error(config, record.id)["code"] == "file_too_large"


def test_a_gzip_file_under_the_limit_is_taken(config: IngestConfig, intake: Intake) -> None:
    path = _bomb(config.inbox("train") / "fine.csv.gz", unpacked_mb=0.5)
    assert intake.take(path, "train").state == NORMALIZED


def test_score_file_answers_413_for_a_gzip_bomb(tmp_path: Path) -> None:
    """Over real HTTP: a 413 JSON error naming the limit, never a 422 or a 500."""
    import pandas as pd
    import requests

    from scoring.api.app import create_app
    from scoring.lifecycle.registry import Registry
    from tests._server import serving
    from tests.conftest import SAMPLE, make_settings, register_trained

    settings = make_settings(tmp_path, ingest={"max_file_mb": 1})
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    register_trained(settings, registry, pd.read_csv(SAMPLE))
    header = SAMPLE.read_text().splitlines()[0].encode() + b"\n"
    row = SAMPLE.read_text().splitlines()[1].encode() + b"\n"
    body = gzip.compress(header + row * (3 * 1024 * 1024 // len(row)))
    with serving(create_app(settings, registry=registry)) as url:
        response = requests.post(
            url + "/score-file", files={"file": ("bomb.csv.gz", body)}, timeout=60
        )
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "too_large"
    assert "unpacks to more than 1 MB" in error["message"]
