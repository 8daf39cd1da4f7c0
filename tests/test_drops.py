"""Score drops: on arrival through the real watcher, by the sweep, once each, or quarantined."""

from __future__ import annotations

import json
import threading

import pandas as pd
import pyarrow.parquet as pq
import pytest

from ingest.state.ledger import Ledger
from scoring.bulk.drops import on_arrival, sweep
from scoring.ingest_options import ingest_config
from scoring.lifecycle.champion import ChampionHolder
from scoring.service.runtime import open_intake

from .conftest import make_settings, register_trained, wait_for


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path, ingest={"stable_seconds": 0.2, "rescan_seconds": 1.0})


@pytest.fixture
def score_frame(diabetes) -> pd.DataFrame:
    return diabetes.drop(columns="target").head(120).rename(columns=str.upper)


def drop_file(settings, name: str, frame: pd.DataFrame) -> None:
    """Write under a temporary name and rename into the inbox, as producers should."""
    inbox = settings.data_dir / "inbox" / "score"
    inbox.mkdir(parents=True, exist_ok=True)
    tmp = inbox / f"{name}.part"
    frame.to_csv(tmp, index=False)
    tmp.rename(inbox / name)


def test_drop_scored_on_arrival_through_the_real_watcher(settings, registry, trained, score_frame):
    from ingest.pipeline.watcher import Watcher

    config, ledger, intake = open_intake(settings)
    champion = ChampionHolder(registry)
    intake.on_normalized = on_arrival(settings, intake, champion.peek)
    watcher = Watcher(config, intake)
    watcher.start()
    try:
        drop_file(settings, "batch one.csv", score_frame)
        record = wait_for(lambda: (r := ledger.list(state="scored")) and r[0], timeout=20)
    finally:
        watcher.stop()
    assert record.original_name == "batch one.csv"
    assert record.model_version == "1"
    assert (record.rows_scored, record.rows_failed) == (120, 0)
    out = settings.data_dir / "outbox" / f"batch_one.{record.id}.scored.parquet"
    assert ledger.resolve(record.output_path) == out
    table = pq.read_table(out).to_pandas()
    assert list(table.columns)[:3] == ["AGE", "SEX", "BMI"]  # the user's own names back
    assert len(table) == 120 and table["prediction"].notna().all()
    assert (settings.data_dir / "archive" / f"{record.id}__batch one.csv").exists()


def test_sweep_after_downtime_scores_what_waited(
    settings, registry, diabetes, score_frame, tmp_path
):
    _config, ledger, intake = open_intake(settings)
    champion = ChampionHolder(registry)
    intake.on_normalized = on_arrival(settings, intake, champion.peek)
    src = tmp_path / "early.csv"
    score_frame.to_csv(src, index=False)
    record = intake.take_copy(src, "score")  # no model yet: stays normalized
    assert ledger.get(record.id).state == "normalized"
    assert sweep(settings, intake=intake, models=champion.peek) == []
    register_trained(settings, registry, diabetes)
    champion.refresh()
    done = sweep(settings, intake=intake, models=champion.peek)
    assert [r.id for r in done] == [record.id]
    assert ledger.get(record.id).state == "scored"
    assert sweep(settings, intake=intake, models=champion.peek) == []  # nothing twice


def test_concurrent_sweeps_score_each_file_once(settings, registry, trained, score_frame, tmp_path):
    _config, ledger, intake = open_intake(settings)
    for i in range(6):
        src = tmp_path / f"f{i}.csv"
        score_frame.iloc[: 50 + i].to_csv(src, index=False)
        intake.take_copy(src, "score")
    results: list = []
    lock = threading.Lock()

    def run() -> None:
        # each sweeper is its own ledger connection and model, as in separate processes
        other = open_intake(settings)[2]
        holder = ChampionHolder(registry)
        done = sweep(settings, intake=other, models=holder.peek)
        with lock:
            results.extend(r.id for r in done)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == sorted(r.id for r in ledger.list(kind="score"))
    assert len(results) == len(set(results)) == 6
    assert len(list((settings.data_dir / "outbox").iterdir())) == 6


def test_drop_missing_features_is_quarantined(settings, registry, trained, score_frame, tmp_path):
    _config, ledger, intake = open_intake(settings)
    champion = ChampionHolder(registry)
    intake.on_normalized = on_arrival(settings, intake, champion.peek)
    src = tmp_path / "partial.csv"
    score_frame.drop(columns=["BMI"]).to_csv(src, index=False)
    record = ledger.get(intake.take_copy(src, "score").id)
    assert record.state == "quarantined"
    assert record.error["code"] == "missing_features"
    assert "lacks the model's feature columns: bmi" in record.error["message"]
    quarantined = settings.data_dir / "quarantine" / f"{record.id}__partial.csv"
    assert quarantined.exists()
    reason = json.loads(quarantined.with_name(quarantined.name + ".error.json").read_text())
    assert "bmi" in reason["message"]
    assert not list((settings.data_dir / "archive").glob(f"{record.id}__*"))
    assert not list((settings.data_dir / "lake" / "score").glob("*.parquet"))
    assert not (settings.data_dir / "outbox").exists() or not any(
        (settings.data_dir / "outbox").iterdir()
    )


def test_ingest_config_carries_the_settings(settings):
    config = ingest_config(settings)
    assert config.stable_seconds == 0.2
    assert config.data_dir == settings.data_dir
    assert Ledger.at(config.db_path).list() == []


@pytest.mark.parametrize(
    ("name", "layout", "expected"),
    [
        ("rows.json", "records", "rows.{id}.scored.json"),  # a JSON array answers an array
        ("frame.json", "columns", "frame.{id}.scored.json"),  # pandas' default to_json
        ("rows.jsonl", "lines", "rows.{id}.scored.jsonl"),
        ("rows.csv", "csv", "rows.{id}.scored.parquet"),  # others: [scoring] output_format
    ],
)
def test_json_drops_are_answered_in_their_own_format(
    settings, registry, trained, score_frame, tmp_path, name, layout, expected
):
    _config, ledger, intake = open_intake(settings)
    src = tmp_path / name
    if layout == "csv":
        score_frame.to_csv(src, index=False)
    else:
        src.write_text(
            score_frame.to_json(
                orient="records" if layout == "lines" else layout, lines=layout == "lines"
            )
        )
    record = intake.take_copy(src, "score")
    [done] = sweep(settings, intake=intake, models=ChampionHolder(registry).peek)
    out = settings.data_dir / "outbox" / expected.format(id=record.id)
    assert ledger.resolve(done.output_path) == out
    if layout == "csv":
        assert len(pq.read_table(out)) == len(score_frame)
        return
    text = out.read_text()
    rows = (
        [json.loads(line) for line in text.splitlines()] if layout == "lines" else json.loads(text)
    )
    assert isinstance(rows, list) and len(rows) == len(score_frame)
    assert rows[0]["AGE"] == pytest.approx(score_frame["AGE"].iloc[0])
    assert all(isinstance(row["prediction"], float) for row in rows)
