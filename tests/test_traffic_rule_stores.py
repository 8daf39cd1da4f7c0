"""One check of a canary's rule on both state backends (SQLite files; a real PostgreSQL).

The check reads the model's traffic figures and registry, promotes through the registry, and
writes the shared audit trail: on PostgreSQL those are the model's schema and the default one.
The figures are written as the serving processes write them (``TrafficStore.add``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scoring.models.factory import open_models
from scoring.settings import Settings, load_settings
from scoring.traffic.check import check_canary
from scoring.traffic.figures import SERVED, DayFigures
from scoring.traffic.setting import parse_setting
from scoring.traffic.shadow import today
from scoring.traffic.store import DayKey

from .conftest import register_trained

SETTINGS = """
[paths]
data_dir = "data"

[training]
bootstrap_data = ""

[models.price]
target = "target"
estimator = "ridge"
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def settings_on(request, tmp_path: Path) -> Settings:
    (tmp_path / "settings.toml").write_text(SETTINGS, encoding="utf-8")
    env: dict[str, Any] = {}
    if request.param == "postgresql":
        env["DROPSCORE__STATE__URL"] = request.getfixturevalue("pg_url")
    return load_settings(tmp_path / "settings.toml", env=env)


def served(requests: int, errors: int = 0, seconds: float = 0.004) -> DayFigures:
    figures = DayFigures()
    for _ in range(requests):
        figures.served(1, seconds)
    figures.errors = errors
    return figures


def test_a_rule_promotes_and_rolls_back_on_either_backend(settings_on, diabetes):
    models = open_models(settings_on)
    price = models["price"]
    view = settings_on.for_model("price")
    for promote in (True, False, False):  # 1 the champion; 2 and 3 challengers
        register_trained(view, price.registry, diabetes, promote=promote)
    store = price.traffic
    store.add({DayKey(1, today(), SERVED): served(400)})  # before the canary: not counted
    store.set(parse_setting({"mode": "canary", "version": 3, "fraction": 0.5,
                             "rule": {"min_requests": 50, "failures": 1}}))  # fmt: skip
    store.add({DayKey(1, today(), SERVED): served(60), DayKey(3, today(), SERVED): served(55, 5)})
    checked = check_canary(price, models.shared.audit)
    assert checked.evaluation is not None and checked.evaluation.decision == "rollback"
    assert "error rate 8.33% vs champion 0.00%" in checked.evaluation.reason
    assert store.get().mode == "off" and price.registry.champion_version() == 1
    assert models.shared.audit.list(limit=1)[0].endpoint == "traffic.rule_rollback"

    store.set(parse_setting({"mode": "canary", "version": 2, "fraction": 0.5,
                             "rule": {"min_requests": 50, "passes": 1}}))  # fmt: skip
    store.add({DayKey(1, today(), SERVED): served(60), DayKey(2, today(), SERVED): served(60)})
    checked = check_canary(price, models.shared.audit)
    assert checked.evaluation is not None and checked.evaluation.decision == "promote"
    assert price.registry.champion_version() == 2
    assert price.registry.get(2).promoted_by == "rule"
    assert models.shared.audit.list(limit=1)[0].path == "/models/price/versions/2/promote"
    assert check_canary(price, models.shared.audit).evaluation is None  # off now: nothing to do
