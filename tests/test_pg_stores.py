"""Every store opened by the factory, on both backends (SQLite files; a real PostgreSQL server):
the same assertions, each model's state apart from another's, and what one process writes read
by another. ``[state] url`` chooses; nothing else in the settings changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import inspect

from scoring.audit import AuditEntry
from scoring.lifecycle.run_locks import take_retrain
from scoring.lifecycle.runs import RetrainBusy
from scoring.models.factory import open_models
from scoring.settings import Settings, load_settings

from .conftest import register_trained

SETTINGS = """
[paths]
data_dir = "data"

[training]
bootstrap_data = ""

[models.price]
target = "target"

[models.churn]
target = "churned"
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def settings_on(request, tmp_path: Path) -> Settings:
    """Two models' settings on one backend: no ``[state] url``, or the test's database."""
    (tmp_path / "settings.toml").write_text(SETTINGS, encoding="utf-8")
    env: dict[str, Any] = {}
    if request.param == "postgresql":
        env["DROPSCORE__STATE__URL"] = request.getfixturevalue("pg_url")
    return load_settings(tmp_path / "settings.toml", env=env)


def test_the_backend_follows_the_state_url(settings_on: Settings) -> None:
    models = open_models(settings_on)
    dialect = "postgresql" if settings_on.state.url else "sqlite"
    assert {m.db.dialect for m in models.values()} | {models.shared.db.dialect} == {dialect}
    if dialect == "sqlite":
        assert models["price"].db.path == settings_on.for_model("price").db_path
        return
    assert models["price"].db.schema == "model_price"
    assert models["churn"].db.schema == "model_churn"
    assert models.shared.db.schema is None
    # one engine (one pool) for every store of the process
    assert models["price"].db.engine.pool is models.shared.db.engine.pool
    models["price"].runs.list(), models["churn"].ledger.list(), models.shared.keys.list()
    with models.shared.db.read() as conn:
        found = inspect(conn)
        assert {"model_price", "model_churn"} <= set(found.get_schema_names())
        assert "runs" in found.get_table_names(schema="model_price")
        assert "files" in found.get_table_names(schema="model_churn")
        assert "api_keys" in found.get_table_names()


def test_a_promotion_is_read_by_another_process_and_only_for_its_model(
    settings_on: Settings, diabetes: pd.DataFrame
) -> None:
    models = open_models(settings_on)
    price = models["price"]
    first, _ = register_trained(price.settings, price.registry, diabetes)
    second, _ = register_trained(price.settings, price.registry, diabetes, promote=False)
    assert (first, second) == (1, 2)
    other = open_models(settings_on)  # another process: engines of its own
    assert other["price"].registry.champion_version() == 1
    price.registry.promote(second, by="alice")
    assert other["price"].registry.champion_version() == 2
    statuses = {r.version: r.status for r in other["price"].registry.list()}
    assert statuses == {1: "archived", 2: "champion"}  # one champion, always
    assert other["churn"].registry.champion_version() is None
    assert other["churn"].registry.list() == []


def test_a_retrain_runs_once_and_a_dead_ones_runs_are_reaped(settings_on: Settings) -> None:
    one, another = open_models(settings_on), open_models(settings_on)
    runs = one["price"].runs
    with take_retrain(runs):  # taken first, as a retrain does, so no reader reaps its run
        run_id = runs.create("api", requested_by="alice")
        runs.update(run_id, state="running")
        with pytest.raises(RetrainBusy, match=f"run {run_id}"):
            take_retrain(another["price"].runs, patience=0)
        assert another["price"].runs.get(run_id).state == "running"  # held: alive
        other_model = take_retrain(another["churn"].runs, patience=0)  # its own lock
        other_model.release()
    # the holder is gone and the run never ended: the next reader marks it failed
    reaped = another["price"].runs.get(run_id)
    assert (reaped.state, reaped.requested_by) == ("failed", "alice")
    assert another["churn"].runs.list() == []


def test_keys_and_the_audit_trail_are_shared_by_every_process(settings_on: Settings) -> None:
    one, another = open_models(settings_on), open_models(settings_on)
    key = one.shared.keys.add("alice", "operate")
    assert [(k.name, k.role) for k in another.shared.keys.list()] == [("alice", "operate")]
    another.shared.audit.record(
        AuditEntry("alice", "operate", "POST", "/train", "runs.train", 202, model="price")
    )
    [entry] = one.shared.audit.list()
    assert (entry.key_name, entry.model, entry.status) == ("alice", "price", 202)
    one.shared.keys.revoke("alice")
    assert key not in {k.name for k in another.shared.keys.list()}
    assert another.shared.keys.live_hashes() == []


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("mysql://scorer:pw-in-url@db/dropscore", "postgresql+psycopg://"),
        ("postgresql+psycopg://scorer:pw-in-url@db:5432", "name the database"),
    ],
)
def test_a_wrong_state_url_stops_start_in_one_line_without_its_password(
    tmp_path: Path, url: str, fragment: str
) -> None:
    from scoring.setting_values import SettingsError

    with pytest.raises(SettingsError) as refused:
        load_settings(None, env={"DROPSCORE__STATE__URL": url})
    message = str(refused.value)
    assert message.startswith("[state] url: ") and fragment in message
    assert "pw-in-url" not in message and "\n" not in message
