"""The overview's traffic is the picked model's, with the whole service's beside it.

Two models served by a real HTTP server get different numbers of requests (and errors); each
model's overview counts its own, and the service column counts them all, /health included.
"""

from __future__ import annotations

import re

import pytest
import requests

from ingest.state.db import StateDB
from scoring.api.app import create_app
from scoring.lifecycle.registry import Registry

from ._server import serving
from .conftest import make_settings, register_trained

ROW = {
    "features": {
        "age": 0.03,
        "sex": 0.05,
        "bmi": 0.06,
        "bp": 0.02,
        "s1": -0.04,
        "s2": -0.03,
        "s3": -0.04,
        "s4": 0.0,
        "s5": 0.02,
        "s6": -0.02,
    }
}


@pytest.fixture
def url(tmp_path, diabetes):
    settings = make_settings(
        tmp_path, models={"sugar": {"target": "target"}, "pressure": {"target": "target"}}
    )
    for name in ("sugar", "pressure"):
        one = settings.for_model(name)
        one.db_path.parent.mkdir(parents=True, exist_ok=True)
        register_trained(one, Registry(one.models_dir, StateDB.at(one.db_path)), diabetes)
    with serving(create_app(settings)) as address:
        yield address


def _traffic(page: str) -> dict[str, int]:
    """Read the traffic table's counts by data-testid."""
    return {
        k: int(v) for k, v in re.findall(r'data-testid="((?:requests|errors)[\w-]*)">(\d+)<', page)
    }


def test_each_model_s_overview_counts_its_own_requests_beside_the_service_s(url):
    with requests.Session() as http:
        for _ in range(5):
            assert http.post(f"{url}/models/sugar/predict", json=ROW, timeout=30).ok
        assert (
            http.post(f"{url}/models/sugar/predict", json={"features": {}}, timeout=30).status_code
            == 422
        )
        for _ in range(2):
            assert http.post(f"{url}/models/pressure/predict", json=ROW, timeout=30).ok
        health = [http.get(f"{url}/health", timeout=30).status_code for _ in range(3)]
        sugar = _traffic(http.get(f"{url}/?model=sugar", timeout=30).text)
        pressure = _traffic(http.get(f"{url}/?model=pressure", timeout=30).text)
    # A request is counted once answered: a page does not count its own view.
    assert sugar["requests"] == 6 and pressure["requests"] == 2  # not the service's 11
    assert sugar["errors"] == 1 and pressure["errors"] == 0
    unhealthy = sum(status >= 400 for status in health)
    # the service: 6 + 2 predictions and 3 /health, then also the sugar overview's view
    assert (sugar["requests-total"], sugar["errors-total"]) == (6 + 2 + 3, 1 + unhealthy)
    assert (pressure["requests-total"], pressure["errors-total"]) == (6 + 2 + 3 + 1, 1 + unhealthy)
