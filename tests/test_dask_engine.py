"""``[scoring] engine = "dask"`` on a real local cluster: the same file, the same bytes out.

The session's cluster (``tests/_dask.py``: a real scheduler and two worker processes) serves
the module, so the model and the batches really cross a process boundary (pickling included),
as they do on a remote cluster.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from ingest.base.config import ReadOptions
from ingest.state.db import StateDB
from scoring.bulk.batch import MissingFeatures, TooManyRows, score_lake_file, score_path
from scoring.bulk.engines import DaskEngine, LocalEngine, engine_for, require_dask
from scoring.lifecycle.champion import load_version
from scoring.settings import SettingsError

from .conftest import make_settings, register_trained

distributed = pytest.importorskip("distributed")

BATCH = ReadOptions(batch_rows=100)


@pytest.fixture(scope="module")
def dask(dask_address) -> Iterator[DaskEngine]:
    client = distributed.Client(dask_address, set_as_default=False)
    yield DaskEngine(client)
    client.close()


@pytest.fixture
def model(registry, trained):
    return load_version(registry, trained)


@pytest.fixture
def src(tmp_path, diabetes) -> Path:
    """Three copies of the sample (14 batches of 100) with bad rows in several batches."""
    frame = pd.concat([diabetes.drop(columns="target")] * 3, ignore_index=True)
    frame = frame.rename(columns=str.upper).astype(object)
    for row in (3, 150, 151, 420, 999, 1325):
        frame.loc[row, "BMI"] = "n/a?"
    frame.loc[700, "S1"] = "oops"
    frame.loc[700, "S2"] = "x"
    frame.loc[200, "BP"] = None  # missing: imputed, not an error
    path = tmp_path / "in.csv"
    frame.to_csv(path, index=False)
    return path


def both(src: Path, tmp_path: Path, model, dask: DaskEngine, fmt: str, **kw):
    """Score src with each engine; return both outputs and summaries."""
    local_out, dask_out = tmp_path / f"local.{fmt}", tmp_path / f"dask.{fmt}"
    a = score_path(src, local_out, model, read=BATCH, fmt=fmt, engine=LocalEngine(), **kw)
    b = score_path(src, dask_out, model, read=BATCH, fmt=fmt, engine=dask, **kw)
    return local_out, dask_out, a, b


def test_parquet_output_identical(tmp_path, model, src, dask):
    local_out, dask_out, a, b = both(src, tmp_path, model, dask, "parquet")
    assert (a.rows_scored, a.rows_failed) == (b.rows_scored, b.rows_failed) == (1319, 7)
    left, right = pq.read_table(local_out), pq.read_table(dask_out)
    assert left.schema.equals(right.schema)
    assert left.equals(right)
    assert right.num_rows == 1326
    errors = right.column("error").to_pylist()
    assert errors[700] == "s1: expected a number, got 'oops'; s2: expected a number, got 'x'"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_text_output_identical(tmp_path, model, src, dask, fmt):
    local_out, dask_out, _, _ = both(src, tmp_path, model, dask, fmt)
    assert local_out.read_bytes() == dask_out.read_bytes()


def test_classifier_identical(tmp_path, diabetes, src, dask):
    from scoring.lifecycle.registry import Registry

    settings = make_settings(tmp_path, model={"estimator": "logistic_regression"})
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    labelled = diabetes.assign(target=np.where(diabetes["target"] > 140, "high", "low"))
    version, _ = register_trained(settings, registry, labelled)
    model = load_version(registry, version)
    local_out, dask_out, _, _ = both(src, tmp_path, model, dask, "parquet")
    left, right = pq.read_table(local_out), pq.read_table(dask_out)
    assert {"probability_high", "probability_low"} <= set(right.column_names)
    assert left.equals(right)


def test_missing_features_refused_the_same(tmp_path, model, diabetes, dask):
    src = tmp_path / "in.csv"
    diabetes.drop(columns=["target", "bmi", "s3"]).to_csv(src, index=False)
    messages = []
    for engine in (LocalEngine(), dask):
        with pytest.raises(MissingFeatures) as info:
            score_path(src, tmp_path / "out.csv", model, read=BATCH, engine=engine)
        messages.append(info.value.message)
    assert messages[0] == messages[1]
    assert messages[0].startswith("the file lacks the model's feature columns: bmi, s3")
    assert not (tmp_path / "out.csv").exists()


def test_row_cap_stops_dask_work(tmp_path, model, src, dask):
    with pytest.raises(TooManyRows):
        score_path(src, tmp_path / "o.csv", model, read=BATCH, max_rows=250, engine=dask)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") or p.name == "o.csv"]


def slow_double(value: int, factor: int) -> int:
    """Finish later for earlier inputs, so completion order is the reverse of input order."""
    time.sleep(0.02 * (5 - value % 5))
    return value * factor


def test_results_in_input_order_with_small_window(dask):
    engine = DaskEngine(dask.client, in_flight=3)
    assert list(engine.map_batches(slow_double, range(12), 2)) == [2 * i for i in range(12)]


def test_lake_file_identical(tmp_path, model, src, dask):
    lake = tmp_path / "lake.parquet"
    frame = pd.read_csv(src).rename(columns=str.lower)
    frame.astype(str).to_parquet(lake, index=False)  # a lake file holds text columns
    column_map = {c.upper(): c for c in frame.columns}
    outs = []
    for name, engine in (("a", LocalEngine()), ("b", dask)):
        out = tmp_path / f"{name}.parquet"
        score_lake_file(
            lake, out, model, column_map=column_map, fmt="parquet", batch_rows=100, engine=engine
        )
        outs.append(pq.read_table(out))
    assert outs[0].equals(outs[1])
    assert "BMI" in outs[1].column_names


def test_engine_from_settings(tmp_path, model, src, dask_address):
    settings = make_settings(
        tmp_path, scoring={"engine": "dask", "dask_address": dask_address}
    )
    engine = engine_for(settings)
    assert isinstance(engine, DaskEngine)
    assert engine_for(settings).client is engine.client  # one client per process
    assert isinstance(engine_for(make_settings(tmp_path)), LocalEngine)
    score_path(src, tmp_path / "d.parquet", model, read=BATCH, fmt="parquet", engine=engine)
    score_path(src, tmp_path / "l.parquet", model, read=BATCH, fmt="parquet")
    assert pq.read_table(tmp_path / "d.parquet").equals(pq.read_table(tmp_path / "l.parquet"))


def test_cli_score_on_dask(tmp_path, settings, trained, src, dask_address, monkeypatch):
    from scoring.service.cli import main

    monkeypatch.setenv("DROPSCORE__PATHS__DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DROPSCORE__TRAINING__BOOTSTRAP_DATA", '""')
    monkeypatch.setenv("DROPSCORE__SCORING__ENGINE", "dask")
    monkeypatch.setenv("DROPSCORE__SCORING__DASK_ADDRESS", f'"{dask_address}"')
    monkeypatch.delenv("DROPSCORE_SETTINGS", raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["score", str(src), "-o", str(tmp_path / "cli.csv")])
    assert result.exit_code == 0, result.output
    assert "scored 1,319 rows in " in result.output
    assert "with model 1, 7 failed" in result.output


def test_missing_dask_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "distributed", None)  # import fails
    with pytest.raises(SettingsError, match=r"pip install 'dropscore\[dask\]'"):
        require_dask()
    with pytest.raises(SettingsError) as info:
        make_settings(tmp_path, scoring={"engine": "dask"})
    assert "\n" not in str(info.value)
    make_settings(tmp_path)  # the local engine never needs it


def test_score_file_on_dask(tmp_path, registry, trained, src, dask_address):
    import io

    from scoring.api.app import create_app

    bodies = []
    for scoring in ({}, {"engine": "dask", "dask_address": dask_address}):
        settings = make_settings(tmp_path, scoring={"batch_rows": 100, **scoring})
        client = create_app(settings, registry=registry).test_client()
        response = client.post(
            "/score-file",
            data={"file": (io.BytesIO(src.read_bytes()), "in.csv")},
            content_type="multipart/form-data",
        )
        assert response.status_code == 200, response.data[:300]
        assert response.headers["X-Rows-Failed"] == "7"
        bodies.append(response.data)
    assert bodies[0] == bodies[1]


def test_score_drop_sweep_on_dask(tmp_path, diabetes, src, dask_address):
    from scoring.bulk.drops import sweep
    from scoring.lifecycle.champion import ChampionHolder
    from scoring.lifecycle.registry import Registry
    from scoring.service.runtime import open_intake

    settings = make_settings(
        tmp_path, scoring={"engine": "dask", "dask_address": dask_address}
    )
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    register_trained(settings, registry, diabetes)
    _config, ledger, intake = open_intake(settings)
    record = intake.take_copy(src, "score")
    champion = ChampionHolder(registry)
    [done] = sweep(settings, intake=intake, models=champion.peek)
    assert (done.rows_scored, done.rows_failed) == (1319, 7)
    local = tmp_path / "local.parquet"
    score_lake_file(
        ledger.resolve(record.lake_path), local, champion.peek(),
        column_map=record.column_map or {}, fmt="parquet", batch_rows=100_000,
    )
    assert pq.read_table(ledger.resolve(done.output_path)).equals(pq.read_table(local))


def test_batch_values_do_not_depend_on_blas_threads(model, diabetes):
    """A multi-threaded gemv differs in the last bit at its row split: scoring pins one thread."""
    import pyarrow as pa
    from threadpoolctl import threadpool_limits

    from scoring.bulk.batch import score_batch

    frame = pd.concat([diabetes.drop(columns="target")] * 227, ignore_index=True)
    batch = pa.RecordBatch.from_pandas(frame, preserve_index=False)  # ~100k rows: row 49692
    outs = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            outs.append(score_batch(batch, model, {})[0])
    assert outs[0].equals(outs[1])


def test_engine_sends_the_artifact_not_the_model(tmp_path, settings, trained, src, dask_address):
    """engine_for's tasks name the version; each worker loads its artifact once (dask-ml#842)."""
    from scoring.bulk.worker_models import CACHE_ATTRIBUTE, model_ref
    from scoring.models.factory import open_model

    dasked = make_settings(tmp_path, scoring={"engine": "dask", "dask_address": dask_address})
    registry = open_model(dasked).registry
    model = load_version(registry, trained)
    engine = engine_for(dasked)
    for n in range(2):
        score_path(src, tmp_path / f"{n}.csv", model, read=BATCH, engine=engine)
    key = model_ref("default", registry, trained).key
    loads = engine.client.run(
        lambda dask_worker: dict(getattr(dask_worker, CACHE_ATTRIBUTE).loads).get(key, 0)
    )
    # 2 files x 14 batches: a load per worker, not per batch. The cluster is shared with the
    # session's other test processes: a worker may have got none of these batches, or had
    # the model pushed out of its cache by theirs between the two files.
    assert sum(loads.values()) >= 1 and max(loads.values()) <= 2, loads
    assert (tmp_path / "0.csv").read_bytes() == (tmp_path / "1.csv").read_bytes()


def test_a_score_drop_is_read_and_scored_by_the_workers_with_its_drift(
    tmp_path, diabetes, src, dask_address
):
    """The drop's lake file is on a disk the workers share: they read it, the client only plans."""
    from distributed import get_task_stream

    from scoring.bulk.drops import sweep
    from scoring.lifecycle.champion import ChampionHolder
    from scoring.models.factory import open_model
    from scoring.monitoring.bulk import BulkDrift
    from scoring.monitoring.reference import profile_step
    from scoring.service.runtime import open_intake

    settings = make_settings(tmp_path, scoring={"engine": "dask", "dask_address": dask_address})
    model = open_model(settings)
    version, result = register_trained(settings, model.registry, diabetes)
    profile_step(model.registry, version, diabetes, result)
    _config, ledger, intake = open_intake(settings)
    record = intake.take_copy(src, "score")
    champion = ChampionHolder(model.registry)
    client = engine_for(settings).client
    with get_task_stream(client) as tasks:
        [done] = sweep(settings, intake=intake, models=champion.peek, drift=BulkDrift(model))
    ran = {task["key"].split("-")[0] for task in tasks.data}
    assert {"score_part", "commit_parts"} <= ran, ran
    assert (done.rows_scored, done.rows_failed) == (1319, 7)
    local = tmp_path / "local.parquet"
    score_lake_file(
        ledger.resolve(record.lake_path), local, champion.peek(),
        column_map=record.column_map or {}, fmt="parquet", batch_rows=100_000,
    )  # fmt: skip
    assert pq.read_table(ledger.resolve(done.output_path)).equals(pq.read_table(local))
    found = model.drift.for_file(record.id)
    assert found is not None and found.rows == 1326 and found.verdict == done.drift
