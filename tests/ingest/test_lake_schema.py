"""Issue 18 (2): the lake's schema is kept in a record beside it, not read from every footer."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ingest.base.config import IngestConfig
from ingest.lake.store import lake_files, lake_schema, schema_record_path
from ingest.pipeline.intake import Intake
from ingest.state.ledger import NORMALIZED, QUARANTINED


def _take(config: IngestConfig, intake: Intake, name: str, text: str) -> str:
    path = config.inbox("train") / name
    path.write_text(text)
    return intake.take(path, "train").state


def _break_footer(path: Path) -> None:
    """Overwrite a file's tail (its footer), as a file nobody may read again would be."""
    data = bytearray(path.read_bytes())
    data[-64:] = b"\0" * 64
    path.write_bytes(bytes(data))


def test_known_files_footers_are_not_read_again(config: IngestConfig, intake: Intake) -> None:
    assert _take(config, intake, "a.csv", "age,target\n1,2\n3,4\n") == NORMALIZED
    assert _take(config, intake, "b.csv", "age,target\n5,6\n") == NORMALIZED
    record = schema_record_path(config.lake("train"))
    assert record.is_file() and record.parent == config.lake("train").parent
    for path in lake_files(config.lake("train")):
        _break_footer(path)  # reading any of these footers would now raise
    assert _take(config, intake, "c.csv", "age,target\n7,8\n") == NORMALIZED
    assert _take(config, intake, "d.csv", "age,target\nold,8\n") == QUARANTINED  # still checked


def test_removed_files_leave_the_record(config: IngestConfig, intake: Intake) -> None:
    lake = config.lake("train")
    pq.write_table(pa.table({"age": ["x"], "target": [1]}), lake / "text.parquet")
    pq.write_table(pa.table({"age": [1.5], "target": [1]}), lake / "numbers.parquet")
    assert lake_schema(lake) == pa.schema([("age", pa.float64()), ("target", pa.int64())])
    (lake / "numbers.parquet").unlink()
    assert lake_schema(lake) == pa.schema([("age", pa.string()), ("target", pa.int64())])
    (lake / "text.parquet").unlink()
    assert lake_schema(lake) is None


def test_a_missing_or_damaged_record_is_rebuilt(config: IngestConfig, intake: Intake) -> None:
    assert _take(config, intake, "a.csv", "age,target\n1,2\n") == NORMALIZED
    lake = config.lake("train")
    record = schema_record_path(lake)
    expected = lake_schema(lake)
    record.unlink()
    assert lake_schema(lake) == expected and record.is_file()
    record.write_text("{not json")
    assert lake_schema(lake) == expected
    assert json.loads(record.read_text())["files"]  # written again, whole
    assert [p.name for p in lake.iterdir() if p.name.startswith(".")] == []
