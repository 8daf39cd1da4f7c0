"""``dropscore traffic``: one model's setting shown and set in lines for people, per model.

The setting the command stores is the one a running server follows: a server over the same
data folder answers ``GET /models/<name>/traffic`` with it.
"""

from __future__ import annotations

import os

import pytest
import requests
from click.testing import CliRunner

from ingest.state.db import StateDB
from scoring.api.app import create_app
from scoring.lifecycle.registry import Registry
from scoring.service.cli import main
from scoring.settings import load_settings

from ._server import serving
from .conftest import register_trained

SETTINGS = """
[paths]
data_dir = "{data}"

[training]
bootstrap_data = ""

[models.price]
target = "target"
estimator = "ridge"

[models.churn]
target = "target"
estimator = "ridge"
"""


@pytest.fixture
def run(tmp_path, monkeypatch, diabetes):
    """Invoke dropscore on a two-model settings file; price has versions 1 (champion) and 2."""
    path = tmp_path / "settings.toml"
    path.write_text(SETTINGS.format(data=tmp_path / "data"), encoding="utf-8")
    for name in [n for n in os.environ if n.startswith("DROPSCORE")]:
        monkeypatch.delenv(name)
    settings = load_settings(path, env={})
    price = settings.for_model("price")
    registry = Registry(price.models_dir, StateDB.at(price.db_path))
    register_trained(price, registry, diabetes)
    register_trained(price, registry, diabetes.iloc[:100], promote=False)

    def invoke(*args: str):
        return CliRunner().invoke(main, ["--settings", str(path), *args])

    invoke.settings = settings  # type: ignore[attr-defined]
    return invoke


def test_traffic_is_shown_set_and_followed_per_model(run):
    shown = run("traffic", "--model", "price")
    assert shown.exit_code == 0, shown.output
    assert "traffic off" in shown.output

    done = run("traffic", "--model", "price", "canary", "--version", "2", "--fraction", "0.2",
               "--key", "X-Customer")  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "canary: version 2 answers 20% of requests, sticky by X-Customer" in done.output
    assert "traffic off" in run("traffic", "--model", "churn").output  # its own setting

    with serving(create_app(run.settings)) as url:
        answer = requests.get(f"{url}/models/price/traffic", timeout=30).json()
    assert answer == {
        "mode": "canary", "version": 2, "fraction": 0.2, "key": "X-Customer", "challenger": "2",
        "rule": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["canary"], "--fraction"),
        (["shadow", "--fraction", "2"], "--fraction: must be a number from 0 to 1"),
        (["shadow", "--version", "9"], "no version 9; the model has 1, 2"),
        (["shadow", "--version", "two"], "--version"),
        (["--fraction", "0.5"], "name one"),
    ],
)
def test_a_bad_setting_is_refused_in_one_line(run, args, says):
    result = run("traffic", "--model", "price", *args)
    assert result.exit_code != 0
    assert says in result.output
    assert "Traceback" not in result.output
    assert "traffic off" in run("traffic", "--model", "price").output  # nothing stored


def test_a_canary_rule_is_set_and_its_last_check_shown(run):
    from scoring.audit import AuditLog
    from scoring.models.factory import open_model
    from scoring.traffic.check import check_canary

    done = run("traffic", "--model", "price", "canary", "--version", "2", "--fraction", "0.2",
               "--rule", "min_requests=50", "--rule", "max_p99_ratio=1.25")  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "by rule: after 50 requests each" in done.output and "p99 at most ×1.25" in done.output
    model = open_model(run.settings.for_model("price"))
    rule = model.traffic.get().rule
    assert rule is not None
    assert (rule.min_requests, rule.max_p99_ratio, rule.passes) == (50, 1.25, 3)

    checked = check_canary(model, AuditLog(StateDB.at(run.settings.shared_db_path)))
    assert checked.evaluation is not None and checked.evaluation.outcome == "wait"
    shown = run("traffic", "--model", "price")
    assert "canary rule, last check" in shown.output and "too few requests" in shown.output

    bad = run("traffic", "--model", "price", "canary", "--fraction", "0.2", "--rule", "speed=2")
    assert bad.exit_code != 0 and "--rule.speed: unknown" in bad.output
    odd = run("traffic", "--model", "price", "canary", "--fraction", "0.2", "--rule", "fast")
    assert odd.exit_code == 2 and "give NAME=NUMBER" in odd.output
    assert "--rule" in run("traffic", "--model", "price", "--rule", "default").output
