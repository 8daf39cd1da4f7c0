"""Scored output keeps the input's column types in every path; only the added columns are new.

Ints stay ints (nullable ones too), bools stay bools, timestamps and strings stay what they
were, whether the file went through ``/score-file`` on a real server, ``dropscore score``, or a
drop in the inbox picked up by the real watcher; read back from Parquet's schema, JSON Lines'
values and the CSV's text.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from click.testing import CliRunner

from ingest.base.config import ReadOptions
from scoring.api.app import create_app
from scoring.bulk.batch import score_path
from scoring.bulk.drops import on_arrival
from scoring.lifecycle.champion import ChampionHolder, load_version
from scoring.service.runtime import open_intake

from ._server import serving
from .conftest import make_settings, register_trained, wait_for

ROWS = 240
# The input's columns and the Arrow type each must come back as.
INPUT_TYPES = {
    "Rooms": pa.int64(),  # a numeric feature of whole numbers
    "Floors": pa.int64(),  # a numeric feature of whole numbers, some missing
    "Area": pa.float64(),  # a numeric feature with fractions
    "Garden": pa.bool_(),
    "Listed": pa.timestamp("us"),
    "City": pa.string(),  # a categorical feature
    "Ref": pa.int64(),  # not a feature
}
ADDED = {"prediction": pa.float64(), "model_version": pa.string(), "error": pa.string()}


def houses(n: int = ROWS) -> pd.DataFrame:
    """Build a frame with one column of each type, ints among the model's numeric features."""
    rng = np.random.default_rng(7)
    floors = pd.array(rng.integers(1, 4, n), dtype="Int64")
    floors[::5] = pd.NA
    return pd.DataFrame(
        {
            "Rooms": rng.integers(1, 9, n),
            "Floors": floors,
            "Area": rng.uniform(30, 250, n).round(2),
            "Garden": rng.random(n) > 0.5,
            "Listed": pd.date_range("2026-01-01", periods=n, freq="h"),
            "City": rng.choice(["Oslo", "Bergen", "Tromsø"], n),
            "Ref": np.arange(1000, 1000 + n),
        }
    )


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path, ingest={"stable_seconds": 0.2, "rescan_seconds": 1.0})


@pytest.fixture
def version(settings, registry) -> int:
    frame = houses(400)
    frame["target"] = frame["Rooms"] * 50 + frame["Area"] * 2 + frame["Floors"].fillna(1) * 7
    train = frame.drop(columns=["Ref", "Listed", "Garden"]).rename(columns=str.lower)
    v, _ = register_trained(settings, registry, train)
    return v


@pytest.fixture
def csv_input(tmp_path):
    src = tmp_path / "houses.csv"
    houses().to_csv(src, index=False)
    return src


def assert_types(path) -> None:
    schema = pq.read_schema(path)
    assert {f.name: f.type for f in schema} == {**INPUT_TYPES, **ADDED}, schema


def assert_values_back(table: pd.DataFrame) -> None:
    want = houses()
    assert table["Rooms"].tolist() == want["Rooms"].tolist()
    assert table["Floors"].isna().tolist() == want["Floors"].isna().tolist()
    assert table["Floors"].dropna().tolist() == want["Floors"].dropna().tolist()
    assert table["prediction"].notna().all()


def test_score_file_on_a_real_server_keeps_csv_ints_in_parquet(settings, registry, version):
    app = create_app(settings, registry=registry)
    body = houses().to_csv(index=False).encode()
    with serving(app) as url:
        response = requests.post(
            f"{url}/score-file",
            params={"format": "parquet"},
            files={"file": ("houses.csv", body, "text/csv")},
            timeout=60,
        )
    assert response.status_code == 200, response.text
    out = settings.data_dir / "answer.parquet"
    out.write_bytes(response.content)
    assert_types(out)
    assert_values_back(pq.read_table(out).to_pandas())


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".xlsx", ".parquet", ".jsonl"])
def test_every_input_format_comes_back_with_its_types(tmp_path, registry, version, suffix):
    src = tmp_path / f"in{suffix}"
    frame = houses()
    if suffix == ".csv":
        frame.to_csv(src, index=False)
    elif suffix == ".tsv":
        frame.to_csv(src, index=False, sep="\t")
    elif suffix == ".xlsx":
        frame.to_excel(src, index=False, engine="openpyxl")
    elif suffix == ".parquet":
        frame.to_parquet(src, index=False)
    else:
        src.write_text(frame.to_json(orient="records", lines=True, date_format="iso"))
    dst = tmp_path / "out.parquet"
    model = load_version(registry, version)
    # small batches: the type is decided by the first and kept by every later one
    score_path(src, dst, model, read=ReadOptions(batch_rows=50), fmt="parquet")
    assert_types(dst)
    assert_values_back(pq.read_table(dst).to_pandas())


def test_cli_score_writes_ints_as_ints_in_jsonl_and_csv(
    tmp_path, settings, version, csv_input, monkeypatch
):
    from scoring.service.cli import main

    for name in [n for n in __import__("os").environ if n.startswith("DROPSCORE")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DROPSCORE__PATHS__DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DROPSCORE__TRAINING__BOOTSTRAP_DATA", '""')
    for name in ("out.parquet", "out.jsonl", "out.csv"):
        result = CliRunner().invoke(main, ["score", str(csv_input), "-o", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    assert_types(tmp_path / "out.parquet")
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [type(r["Rooms"]) for r in rows] == [int] * ROWS  # 3, not 3.0
    assert rows[0]["Floors"] is None and isinstance(rows[1]["Floors"], int)
    first = (tmp_path / "out.csv").read_text().splitlines()[2].split(",")
    assert first[0] == str(houses()["Rooms"][1])  # no ".0"


def test_a_fraction_after_whole_numbers_widens_without_losing_a_value(tmp_path, registry, version):
    frame = houses().astype({"Rooms": "float64"})
    frame.loc[ROWS - 1, "Rooms"] = 2.5  # in the last batch: the first ones were all whole
    src = tmp_path / "late.csv"
    frame.to_csv(src, index=False)
    dst = tmp_path / "late.parquet"
    score_path(
        src, dst, load_version(registry, version), read=ReadOptions(batch_rows=50), fmt="parquet"
    )
    table = pq.read_table(dst)
    assert table.schema.field("Rooms").type == pa.float64()
    assert table.column("Rooms").to_pylist() == frame["Rooms"].tolist()


def test_inbox_drop_comes_back_in_the_outbox_with_its_types(settings, registry, version):
    from ingest.pipeline.watcher import Watcher

    config, ledger, intake = open_intake(settings)
    champion = ChampionHolder(registry)
    intake.on_normalized = on_arrival(settings, intake, champion.peek)
    watcher = Watcher(config, intake)
    watcher.start()
    try:
        inbox = settings.data_dir / "inbox" / "score"
        inbox.mkdir(parents=True, exist_ok=True)
        houses().to_csv(inbox / "houses.csv.part", index=False)
        (inbox / "houses.csv.part").rename(inbox / "houses.csv")
        record = wait_for(lambda: (r := ledger.list(state="scored")) and r[0], timeout=60)
    finally:
        watcher.stop()
    out = ledger.resolve(record.output_path)
    assert out is not None and out.suffix == ".parquet"
    assert_types(out)
    assert_values_back(pq.read_table(out).to_pandas())
