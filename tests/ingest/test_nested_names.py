"""Issue 18 (5): a nested field has one name, ``nested_x``, in the lake and in scored output."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.base.config import IngestConfig
from ingest.pipeline.intake import Intake
from ingest.readers import flatten_record
from ingest.state.db import StateDB
from ingest.state.ledger import NORMALIZED

ROWS = [{"id": 1, "nested": {"x": 1.5, "deeper": {"y": "a"}}}, {"id": 2, "nested": {"x": 2.5}}]


def _parquet(rows: list[dict[str, object]]) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), out)
    return out.getvalue()


def _jsonl(rows: list[dict[str, object]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def test_flattening_never_overwrites_a_value() -> None:
    assert flatten_record({"a_b": 1, "a": {"b": 2}}) == {"a_b": 1, "a_b_2": 2}


@pytest.mark.parametrize(("suffix", "encode"), [(".parquet", _parquet), (".jsonl", _jsonl)])
def test_ingest_names_nested_fields_with_underscores(
    config: IngestConfig, intake: Intake, suffix: str, encode: object
) -> None:
    path = config.inbox("score") / f"n{suffix}"
    path.write_bytes(encode(ROWS))  # type: ignore[operator]
    record = intake.take(path, "score")
    assert record.state == NORMALIZED
    assert "nested_x" in record.column_map and "nested_deeper_y" in record.column_map
    lake = pq.read_table(intake.ledger.resolve(record.lake_path))
    assert lake.column("nested_x").to_pylist() == [1.5, 2.5]


@pytest.mark.parametrize(("name", "encode"), [("n.parquet", _parquet), ("n.jsonl", _jsonl)])
def test_score_file_answers_with_the_same_name(tmp_path: Path, name: str, encode: object) -> None:
    """Over real HTTP: the scored file calls the field ``nested_x`` too, not ``nested.x``."""
    import pandas as pd
    import requests

    from scoring.api.app import create_app
    from scoring.lifecycle.registry import Registry
    from tests._server import serving
    from tests.conftest import SAMPLE, make_settings, register_trained

    settings = make_settings(tmp_path)
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    sample = pd.read_csv(SAMPLE)
    register_trained(settings, registry, sample)
    rows = [
        {**{k: float(v) for k, v in row.items() if k != "target"}, "nested": {"x": 1.5}}
        for row in sample.head(3).to_dict("records")
    ]
    with serving(create_app(settings, registry=registry)) as url:
        response = requests.post(
            url + "/score-file",
            params={"format": "jsonl"},
            files={"file": (name, encode(rows))},  # type: ignore[operator]
            timeout=60,
        )
    assert response.status_code == 200, response.text
    first = json.loads(response.text.splitlines()[0])
    assert first["nested_x"] == 1.5 and "nested.x" not in first
