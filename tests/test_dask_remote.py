"""Workers read, score and write Parquet themselves; the model travels as its artifact's hash.

On the session's real cluster (``tests/_dask.py``): the output equals the local engine's row for
row; a part's failure or a hash mismatch leaves nothing under the output's name and no scratch;
each worker loads a version once however many parts it scores.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from ingest.base.config import ReadOptions
from scoring.bulk.batch import MissingFeatures, score_lake_file, score_path
from scoring.bulk.remote import LAKE, score_remote
from scoring.bulk.worker_models import CACHE_ATTRIBUTE, model_ref
from scoring.errors import ModelFileError
from scoring.lifecycle.champion import load_version

distributed = pytest.importorskip("distributed")

ROWS = 100  # batch_rows: the local engine's batches are stage_rows(100) = 50 rows


@pytest.fixture(scope="module")
def client(dask_address) -> Iterator[distributed.Client]:
    with distributed.Client(dask_address, set_as_default=False) as client:
        yield client


@pytest.fixture
def src(tmp_path, diabetes) -> Path:
    """Three copies of the sample as Parquet, row groups not on batch boundaries, bad rows."""
    frame = pd.concat([diabetes.drop(columns="target")] * 3, ignore_index=True)
    frame = frame.rename(columns=str.upper).astype(object)
    for row in (3, 150, 151, 420, 999, 1325):
        frame.loc[row, "BMI"] = "n/a?"
    frame.loc[700, "S1"] = "oops"
    frame.loc[200, "BP"] = None
    frame = frame.astype(str).replace("None", None)
    path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=333)
    return path


def local_and_remote(tmp_path, client, registry, version, src, fmt):
    model = load_version(registry, version)
    local, remote = tmp_path / f"local.{fmt}", tmp_path / "out" / f"remote.{fmt}"
    a = score_path(src, local, model, read=ReadOptions(batch_rows=ROWS), fmt=fmt)
    ref = model_ref("default", registry, version)
    b = score_remote(client, str(src), str(remote), ref, batch_rows=ROWS, fmt=fmt)
    return local, remote, a, b


def test_parquet_identical_to_local(tmp_path, client, registry, trained, src):
    local, remote, a, b = local_and_remote(tmp_path, client, registry, trained, src, "parquet")
    assert (a.rows_scored, a.rows_failed) == (b.rows_scored, b.rows_failed) == (1319, 7)
    assert pq.read_table(local).equals(pq.read_table(remote))
    assert [p.name for p in remote.parent.iterdir()] == [remote.name]  # no scratch left


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_text_bytes_identical_to_local(tmp_path, client, registry, trained, src, fmt):
    local, remote, _, _ = local_and_remote(tmp_path, client, registry, trained, src, fmt)
    assert local.read_bytes() == remote.read_bytes()


def test_each_worker_loads_a_version_once(tmp_path, client, registry, trained, src):
    for n in range(3):
        ref = model_ref("default", registry, trained)
        score_remote(client, str(src), str(tmp_path / f"{n}.parquet"), ref, batch_rows=ROWS,
                     fmt="parquet")  # fmt: skip
    loads = client.run(lambda dask_worker: dict(getattr(dask_worker, CACHE_ATTRIBUTE).loads))
    counts = [found.get(ref.key, 0) for found in loads.values()]
    assert len(counts) == 2 and max(counts) == 1  # 3 files x 4 parts: at most once per worker


def test_hash_mismatch_is_refused_and_nothing_published(tmp_path, client, registry, trained, src):
    ref = replace(model_ref("default", registry, trained), sha256="0" * 64)
    out = tmp_path / "out" / "x.parquet"
    out.parent.mkdir()
    with pytest.raises(ModelFileError, match="the registry's is 000000000000"):
        score_remote(client, str(src), str(out), ref, batch_rows=ROWS, fmt="parquet")
    assert list(out.parent.iterdir()) == []


def test_missing_features_refused_before_any_task(tmp_path, client, registry, trained, diabetes):
    src = tmp_path / "in.parquet"
    diabetes.drop(columns=["target", "bmi"]).to_parquet(src, index=False)
    ref = model_ref("default", registry, trained)
    with pytest.raises(MissingFeatures, match="bmi"):
        score_remote(client, str(src), str(tmp_path / "o.csv"), ref, batch_rows=ROWS, fmt="csv")
    assert not (tmp_path / "o.csv").exists()


def test_lake_file_identical_to_local(tmp_path, client, registry, trained, src):
    lake = tmp_path / "lake.parquet"
    frame = pq.read_table(src).to_pandas().rename(columns=str.lower)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), lake, row_group_size=70)
    column_map = {c.upper(): c for c in frame.columns}
    model = load_version(registry, trained)
    local = tmp_path / "l.parquet"
    score_lake_file(lake, local, model, column_map=column_map, fmt="parquet", batch_rows=ROWS)
    ref = model_ref("default", registry, trained)
    remote = tmp_path / "r.parquet"
    score_remote(client, str(lake), str(remote), ref, batch_rows=ROWS, fmt="parquet", kind=LAKE,
                 column_map=column_map)  # fmt: skip
    assert pq.read_table(local).equals(pq.read_table(remote))
    assert "BMI" in pq.read_table(remote).column_names


def test_object_store_in_and_out_read_by_workers(tmp_path, client, registry, trained, src, s3,
                                                 monkeypatch):  # fmt: skip
    """s3:// in, s3:// out: the workers read and write the bucket; the client only plans."""
    from scoring.bulk.filesystems import Store
    from scoring.testing.moto import CREDENTIALS

    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    prefix = s3.url(s3.fresh_prefix("dask"))
    store = Store(s3.endpoint, "us-east-1")
    fs, path = store.open(f"{prefix}/in.parquet")
    with fs.open_output_stream(path) as out:
        out.write(src.read_bytes())
    ref = model_ref("default", registry, trained)
    summary = score_remote(client, f"{prefix}/in.parquet", f"{prefix}/out/scored.csv", ref,
                           batch_rows=ROWS, fmt="csv", store=store)  # fmt: skip
    assert (summary.rows_scored, summary.rows_failed) == (1319, 7)
    local = tmp_path / "local.csv"
    score_path(src, local, load_version(registry, trained), read=ReadOptions(batch_rows=ROWS),
               fmt="csv")  # fmt: skip
    out_fs, out_path = store.open(f"{prefix}/out/scored.csv")
    with out_fs.open_input_stream(out_path) as fh:
        assert fh.read() == local.read_bytes()
    listed = out_fs.get_file_info(pafs.FileSelector(out_path.rsplit("/", 1)[0], recursive=True))
    assert [info.base_name for info in listed] == ["scored.csv"]  # the parts are gone


def test_cli_scores_s3_on_the_workers(tmp_path, settings, trained, src, s3, dask_address,
                                      monkeypatch):  # fmt: skip
    """``dropscore score s3://…/in.parquet -o s3://…/out.parquet`` with engine = "dask"."""
    from click.testing import CliRunner

    from scoring.bulk.filesystems import Store
    from scoring.service.cli import main
    from scoring.testing.moto import CREDENTIALS

    for key, value in {
        **CREDENTIALS,
        "DROPSCORE__PATHS__DATA_DIR": str(settings.data_dir),
        "DROPSCORE__TRAINING__BOOTSTRAP_DATA": '""',
        "DROPSCORE__SCORING__ENGINE": "dask",
        "DROPSCORE__SCORING__DASK_ADDRESS": f'"{dask_address}"',
        "DROPSCORE__SCORING__BATCH_ROWS": str(ROWS),
        "DROPSCORE__STORAGE__ENDPOINT_URL": f'"{s3.endpoint}"',
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DROPSCORE_SETTINGS", raising=False)
    monkeypatch.chdir(tmp_path)
    prefix = s3.url(s3.fresh_prefix("cli"))
    store = Store(s3.endpoint, "us-east-1")
    fs, path = store.open(f"{prefix}/in.parquet")
    with fs.open_output_stream(path) as out:
        out.write(src.read_bytes())
    result = CliRunner().invoke(
        main, ["score", f"{prefix}/in.parquet", "-o", f"{prefix}/out.parquet"]
    )
    assert result.exit_code == 0, result.output
    assert "with model 1, 7 failed → s3://" in result.output
    out_fs, out_path = store.open(f"{prefix}/out.parquet")
    with out_fs.open_input_file(out_path) as fh:
        remote = pq.read_table(fh)
    local = tmp_path / "local.parquet"
    score_path(src, local, load_version(registry_of(settings), trained),
               read=ReadOptions(batch_rows=ROWS), fmt="parquet")  # fmt: skip
    assert pq.read_table(local).equals(remote)
    missing = CliRunner().invoke(main, ["score", f"{prefix}/none.parquet", "-o", "x.csv"])
    assert missing.exit_code == 1 and "no file at s3://" in missing.output


def registry_of(settings):
    from scoring.models.factory import open_model

    return open_model(settings).registry


def test_score_drop_entry_uses_the_workers_when_they_reach(tmp_path, settings, trained, src,
                                                           dask_address):  # fmt: skip
    """The call a score drop makes first: the workers, through engine_for's registry refs."""
    from scoring.bulk.engines import LocalEngine, engine_for
    from scoring.bulk.remote import score_lake_on_workers
    from tests.conftest import make_settings

    lake = tmp_path / "lake.parquet"
    frame = pq.read_table(src).to_pandas().rename(columns=str.lower)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), lake, row_group_size=70)
    column_map = {c.upper(): c for c in frame.columns}
    dasked = make_settings(tmp_path, scoring={"engine": "dask", "dask_address": dask_address})
    model = load_version(registry_of(dasked), trained)
    kw = {"column_map": column_map, "fmt": "csv", "batch_rows": ROWS}
    out = tmp_path / "w.csv"
    done = score_lake_on_workers(engine_for(dasked), model, lake, out, **kw)
    assert done is not None and (done.rows_scored, done.rows_failed) == (1319, 7)
    assert score_lake_on_workers(LocalEngine(), model, lake, tmp_path / "n.csv", **kw) is None
    local = tmp_path / "l.csv"
    score_lake_file(lake, local, model, **kw)
    assert out.read_bytes() == local.read_bytes()


def test_scoring_s3_records_the_drift_each_worker_watched(
    tmp_path, diabetes, src, s3, dask_address, monkeypatch, capsys
):
    """``dropscore score s3://…`` on the workers records one ``cli`` drift record for the file."""
    from scoring.bulk.filesystems import Store
    from scoring.models.factory import open_model
    from scoring.monitoring.reference import profile_step
    from scoring.service.score_locations import score_location
    from scoring.testing.moto import CREDENTIALS
    from tests.conftest import make_settings, register_trained

    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    settings = make_settings(tmp_path, storage={"endpoint_url": s3.endpoint},
                             scoring={"engine": "dask", "dask_address": dask_address,
                                      "batch_rows": ROWS})  # fmt: skip
    model = open_model(settings)
    version, result = register_trained(settings, model.registry, diabetes)
    profile_step(model.registry, version, diabetes, result)
    prefix = s3.url(s3.fresh_prefix("drift"))
    fs, path = Store(s3.endpoint, "us-east-1").open(f"{prefix}/in.parquet")
    with fs.open_output_stream(path) as out:
        out.write(src.read_bytes())
    score_location(settings, f"{prefix}/in.parquet", f"{prefix}/out.parquet", None)
    found = model.drift.latest(source="cli")
    assert len(found) == 1 and found[0].ref == "in.parquet", found
    assert found[0].rows == 1326 and found[0].verdict != "not_compared", found[0].report
    assert "drift" in capsys.readouterr().err


def test_a_score_drop_under_storage_url_is_read_and_written_by_the_workers(
    tmp_path, diabetes, src, s3, dask_address, monkeypatch
):
    """The lake object in, the outbox object out, both by the workers; nothing local left."""
    from distributed import get_task_stream

    from scoring.bulk.drops import sweep
    from scoring.bulk.engines import engine_for
    from scoring.lifecycle.champion import ChampionHolder
    from scoring.models.factory import open_model
    from scoring.service.runtime import open_intake
    from scoring.storage import storage_root
    from tests._s3 import storage_settings
    from tests.conftest import make_settings, register_trained

    settings = make_settings(tmp_path, storage=storage_settings(s3, monkeypatch, "drop"),
                             scoring={"engine": "dask", "dask_address": dask_address,
                                      "batch_rows": ROWS})  # fmt: skip
    model = open_model(settings)
    register_trained(settings, model.registry, diabetes)
    _config, _ledger, intake = open_intake(settings)
    intake.take_copy(src, "score")
    champion = ChampionHolder(model.registry)
    with get_task_stream(engine_for(settings).client) as tasks:
        [done] = sweep(settings, intake=intake, models=champion.peek)
    assert {"score_part", "commit_parts"} <= {t["key"].split("-")[0] for t in tasks.data}
    assert (done.rows_scored, done.rows_failed) == (1319, 7)
    root = storage_root(settings)
    key = settings.layout.key(settings.layout.outbox / Path(done.output_path).name)
    with root.fs.open_input_file(root.join(key)) as fh:
        assert pq.read_table(fh).num_rows == 1326
    assert not list(settings.layout.outbox.glob("*"))  # nothing to publish from here
