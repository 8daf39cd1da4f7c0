"""Parquet bodies on ``/invocations``: the unpacked-size cap counts what the columns decode to,
and a body that names a column twice is refused like ``dataframe_split``.

A dictionary-encoded text column is stored as one value and an index per row; its pages say a
few kilobytes while reading it writes the value out once per row. The memory check runs the
real app in a child process and compares its peak resident size before and after the request.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.state.db import StateDB
from scoring.api.app import create_app

from .conftest import make_settings, register_trained

PARQUET = "application/vnd.apache.parquet"
ROOT = Path(__file__).resolve().parent.parent
FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


def amplifying_body(rows: int = 20_000, width: int = 20_000, target: bool = False) -> bytes:
    """Build ``rows`` zero rows whose text column repeats one ``width``-char value.

    The column is built as a dictionary (one value, an index per row), so writing it never
    holds the decoded text; without the Arrow schema stored it reads back as plain text.
    """
    columns = {name: pa.array(np.zeros(rows)) for name in FEATURES}
    one = pa.array(["x" * width])
    columns["note"] = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, np.int32)), one)
    if target:
        columns["target"] = pa.array(np.ones(rows))
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink, store_schema=False)
    return sink.getvalue()


# Run in a child so the peak resident size measures this request alone.
CHILD = """
import json, resource, sys
from pathlib import Path
import numpy as np, pandas as pd
from scoring.api.app import create_app
from tests.conftest import SAMPLE, make_settings, register_trained
from tests.test_parquet_bodies import PARQUET, amplifying_body
from scoring.lifecycle.registry import Registry
from ingest.state.db import StateDB

root = Path(sys.argv[1])
settings = make_settings(root, server={"max_rows_per_request": 50_000, "max_json_mb": 1})
registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
register_trained(settings, registry, pd.read_csv(SAMPLE))
client = create_app(settings).test_client()
body = amplifying_body()
small = amplifying_body(rows=50, width=10)
client.post("/invocations", data=small, content_type=PARQUET)  # warm: imports, model loaded
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
response = client.post("/invocations", data=body, content_type=PARQUET)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"body": len(body), "status": response.status_code,
                  "json": response.get_json(), "growth_mb": (after - before) / 1024}))
"""


def run_child(script: str, folder: Path) -> dict:
    """Run a measuring script in a fresh process (its own peak memory); return its JSON line."""
    done = subprocess.run(
        [sys.executable, "-c", script, str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_small_body_of_one_repeated_text_is_refused_without_decoding_it(tmp_path):
    result = run_child(CHILD, tmp_path)
    assert result["body"] < 10_000  # a few KB on the wire
    assert result["status"] == 413, result["json"]
    assert "max_json_mb" in result["json"]["message"]
    assert result["growth_mb"] < 200, result  # decoding it whole took over 1 GB


@pytest.fixture(scope="module")
def client(tmp_path_factory, diabetes):
    settings = make_settings(
        tmp_path_factory.mktemp("parquet-bodies"),
        server={"max_rows_per_request": 100, "max_json_mb": 1},
    )
    from scoring.lifecycle.registry import Registry

    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    register_trained(settings, registry, diabetes)
    return create_app(settings).test_client()


def parquet_of(table: pa.Table, **options) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **options)
    return sink.getvalue()


def test_a_body_that_names_a_column_twice_is_refused(client):
    zeros = [pa.array(np.zeros(3)) for _ in FEATURES]
    table = pa.Table.from_arrays([*zeros, pa.array(np.full(3, 1000.0))], names=[*FEATURES, "bmi"])
    response = client.post("/invocations", data=parquet_of(table), content_type=PARQUET)
    assert response.status_code == 422, response.get_json()
    assert "names a column twice" in response.get_json()["message"]


def test_repeated_text_within_the_limit_is_read_as_before(client):
    """Dictionary text that fits the limit still reaches the column checks (and no further)."""
    frame = pd.DataFrame({name: np.zeros(20) for name in FEATURES})
    scored = client.post("/invocations", data=parquet_of(pa.table(frame)), content_type=PARQUET)
    assert scored.status_code == 200, scored.get_json()
    text = frame.assign(bmi=["words"] * 20)
    refused = client.post(
        "/invocations", data=parquet_of(pa.Table.from_pandas(text)), content_type=PARQUET
    )
    assert refused.status_code == 422 and "bmi" in refused.get_json()["message"]
    assert "words" not in json.dumps(refused.get_json())


def test_a_nested_column_is_refused(client):
    table = pa.table({**{n: np.zeros(2) for n in FEATURES}, "extra": [[1.0], [2.0]]})
    response = client.post("/invocations", data=parquet_of(table), content_type=PARQUET)
    assert response.status_code == 422, response.get_json()
    assert "nested column" in response.get_json()["message"]


# ---------------------------------------------------------------------------------------------
# The same files dropped into an inbox or uploaded to /score-file: max_file_mb counts what they
# decode to, and reading one decodes a bounded slice at a time.


def amplifying_file(path: Path, rows: int, width: int) -> Path:
    """Write ``amplifying_body`` with a target column, as a labelled drop would have."""
    path.write_bytes(amplifying_body(rows, width, target=True))
    return path


def test_a_dropped_parquet_file_decoding_past_max_file_mb_is_quarantined(tmp_path):
    from ingest.base.config import IngestConfig
    from ingest.base.layout import DataLayout
    from ingest.pipeline.intake import Intake
    from ingest.state.db import StateDB
    from ingest.state.ledger import QUARANTINED, Ledger

    config = IngestConfig(DataLayout(tmp_path / "data"), max_file_mb=1.0)
    config.make_dirs()
    path = amplifying_file(config.inbox("train") / "small.parquet", rows=200, width=20_000)
    assert path.stat().st_size < 20_000  # 4 MB of text once decoded
    record = Intake(config, Ledger(StateDB.at(config.db_path))).take(path, "train")
    assert record.state == QUARANTINED
    [error] = config.quarantine.glob(f"{record.id}__*.error.json")
    assert json.loads(error.read_text())["code"] == "file_too_large"
    assert list(config.lake("train").glob("*.parquet")) == []


def test_score_file_answers_413_for_a_parquet_upload_decoding_past_max_file_mb(tmp_path, diabetes):
    from scoring.lifecycle.registry import Registry

    settings = make_settings(tmp_path, ingest={"max_file_mb": 5})
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    register_trained(settings, registry, diabetes)
    body = amplifying_file(tmp_path / "up.parquet", rows=1_000, width=20_000).read_bytes()
    assert len(body) < 20_000  # 20 MB of text once decoded
    response = create_app(settings).test_client().post(
        "/score-file", data={"file": (io.BytesIO(body), "up.parquet")}
    )
    assert response.status_code == 413, response.get_json()
    assert "max_file_mb" in response.get_json()["error"]["message"]


READER = """
import json, resource, sys
from pathlib import Path
from ingest.base.config import ReadOptions
from ingest.readers import open_table
from tests.test_parquet_bodies import amplifying_file

path = amplifying_file(Path(sys.argv[1]) / "wide.parquet", rows=20_000, width=10_000)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rows = 0
for batch in open_table(path, ReadOptions(batch_rows=65_536)).batches:
    rows += batch.num_rows
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rows": rows, "growth_mb": (after - before) / 1024}))
"""


def test_reading_a_parquet_file_of_repeated_text_decodes_a_slice_at_a_time(tmp_path):
    """200 MB of text in a few KB, with no cap: the reader's peak stays far below it."""
    result = run_child(READER, tmp_path)
    assert result["rows"] == 20_000
    assert result["growth_mb"] < 150, result


LAKE = """
import json, resource, sys
from pathlib import Path
from ingest.readers.parquet import bounded_batches
from tests.test_parquet_bodies import amplifying_file

path = amplifying_file(Path(sys.argv[1]) / "lake.parquet", rows=20_000, width=10_000)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
schema, batches = bounded_batches(path, 65_536)
rows = sum(batch.num_rows for batch in batches)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rows": rows, "text": str(schema.field("note").type),
                  "growth_mb": (after - before) / 1024}))
"""


def test_scoring_a_lake_file_of_repeated_text_reads_a_slice_at_a_time(tmp_path):
    """The sweep scores a drop from its lake file; that read is bounded the same way."""
    result = run_child(LAKE, tmp_path)
    assert result["rows"] == 20_000 and result["text"] == "string"
    assert result["growth_mb"] < 150, result
