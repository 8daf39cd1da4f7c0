"""Shadow and canary traffic, set at run time, on real servers over real HTTP.

The default model has four versions trained on the bundled sample: 1 (the champion), 2 (the
same rows, so it answers as 1 does), 3 (other rows, so it answers otherwise) and 4 (fewer
columns, so it raises on the champion's matrix). Keys are stored per role, so the role table
and the audit trail are exercised as a client meets them. No test asserts a time: a replica
following a change, and the shadow's figures, are polled for with a generous deadline.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests

from ingest.state.db import StateDB
from scoring.api.app import create_app
from scoring.api.traffic import traffic_of
from scoring.audit import AuditLog
from scoring.keys import KeyStore
from scoring.lifecycle.registry import Registry
from scoring.settings import Settings

from ._server import serving
from .conftest import make_settings, register_trained

TIMEOUT = 30
DEADLINE = 60.0  # seconds a poll may take on a loaded machine before the test fails


@dataclass
class Served:
    url: str
    settings: Settings
    keys: dict[str, str]
    rows: list[dict]

    def headers(self, role: str = "operate", **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}", **extra}

    def put(self, body: object, role: str = "operate", url: str | None = None):
        return requests.put(
            f"{url or self.url}/traffic", json=body, headers=self.headers(role), timeout=TIMEOUT
        )

    def predict(self, row: dict, session=None, url: str | None = None, **headers: str) -> dict:
        post = (session or requests).post
        response = post(
            f"{url or self.url}/predict",
            json={"features": row},
            headers=self.headers("predict", **headers),
            timeout=TIMEOUT,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def challenger(self) -> dict:
        response = requests.get(
            f"{self.url}/models/default/challenger", headers=self.headers("predict"),
            timeout=TIMEOUT,
        )  # fmt: skip
        assert response.status_code == 200, response.text
        return response.json()


def poll(check, what: str):
    """Return check()'s first truthy value; fail after DEADLINE seconds (not a timing assert)."""
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    pytest.fail(f"gave up waiting for {what}")


@pytest.fixture(scope="module")
def served(tmp_path_factory, diabetes) -> Iterator[Served]:
    settings = make_settings(tmp_path_factory.mktemp("traffic"), model={"estimator": "ridge"})
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    register_trained(settings, registry, diabetes)  # 1: the champion
    register_trained(settings, registry, diabetes, promote=False)  # 2: answers as 1
    register_trained(settings, registry, diabetes.iloc[:120], promote=False)  # 3: otherwise
    register_trained(settings, registry, diabetes.drop(columns=["s5", "s6"]), promote=False)
    store = KeyStore(StateDB.at(settings.shared_db_path))
    keys = {role: store.add(f"{role}-key", role) for role in ("predict", "operate")}
    rows = diabetes.drop(columns="target").iloc[:40].to_dict(orient="records")
    app = create_app(settings)
    with serving(app) as url:
        yield Served(url, settings, keys, rows)
        traffic_of(app).stop()


@pytest.fixture
def off(served: Served) -> Iterator[Served]:
    """Each test starts, and ends, with the traffic off."""
    assert served.put({"mode": "off"}).status_code == 200
    yield served
    assert served.put({"mode": "off"}).status_code == 200


def problems(response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {d["field"]: d["problem"] for d in response.json()["error"]["details"]}


def test_put_is_validated_field_by_field_and_needs_operate(off: Served):
    assert off.put({"mode": "canary", "fraction": 0.5}, role="predict").status_code == 403
    assert "mode" in problems(off.put({"mode": "mirror"}))
    assert "fraction" in problems(off.put({"mode": "canary"}))  # canary must say how much
    assert "fraction" in problems(off.put({"mode": "shadow", "fraction": 1.5}))
    assert "fraction" in problems(off.put({"mode": "shadow", "fraction": True}))
    assert "version" in problems(off.put({"mode": "shadow", "version": "v2"}))
    assert "key" in problems(off.put({"mode": "shadow", "key": "X-Canary-Key"}))  # canary only
    assert "key" in problems(off.put({"mode": "canary", "fraction": 0.1, "key": "a b/../c"}))
    assert "colour" in problems(off.put({"mode": "off", "colour": "red"}))
    assert "(body)" in problems(off.put([1, 2]))
    missing = off.put({"mode": "canary", "version": 99, "fraction": 0.5})
    assert problems(missing) == {"version": "not a registered version"}
    assert "1, 2, 3, 4" in missing.json()["error"]["message"]

    body = {"mode": "canary", "version": 3, "fraction": 0.25, "key": "X-Customer"}
    answer = off.put(body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {**body, "challenger": "3", "rule": None}
    shown = requests.get(f"{off.url}/models/default/traffic", headers=off.headers("predict"))
    assert shown.json() == {**body, "challenger": "3", "rule": None}
    latest = off.put({"mode": "shadow"}).json()  # latest: the newest that is not the champion
    assert (latest["version"], latest["fraction"], latest["challenger"]) == ("latest", 1.0, "4")

    trail = AuditLog(StateDB.at(off.settings.shared_db_path))
    audited = [e for e in trail.list() if e.path == "/traffic"]
    assert {(e.key_name, e.method, e.status) for e in audited} >= {
        ("operate-key", "PUT", 200),
        ("operate-key", "PUT", 422),
    }
    assert "3" in {e.version for e in audited}  # the version a canary named


def binomial_bounds(n: int, p: float, sigmas: float = 5.0) -> tuple[float, float]:
    spread = sigmas * math.sqrt(n * p * (1 - p))
    return n * p - spread, n * p + spread


def test_canary_answers_its_fraction_and_says_which_version(off: Served):
    assert off.put({"mode": "canary", "version": 3, "fraction": 0.3}).status_code == 200
    before = _served_requests(off.challenger(), "3")
    n = 2000

    def one(i: int) -> str:
        return off.predict(off.rows[i % len(off.rows)], session=sessions[i % 4])["model_version"]

    sessions = [requests.Session() for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        answered = Counter(pool.map(one, range(n)))
    assert set(answered) == {"1", "3"}
    low, high = binomial_bounds(n, 0.3)
    assert low <= answered["3"] <= high, answered
    # every answer the canary gave is counted for its version (this replica wrote them all)
    assert _served_requests(off.challenger(), "3") - before == answered["3"]


def _served_requests(figures: dict, version: str) -> int:
    return sum(d["figures"]["requests"] for d in figures["served"] if d["version"] == version)


def test_a_sticky_key_always_gets_the_same_version(off: Served):
    assert off.put({"mode": "canary", "version": 3, "fraction": 0.5}).status_code == 200
    seen: dict[str, set[str]] = {}
    for customer in range(60):
        for attempt in range(4):
            row = off.rows[(customer + attempt) % len(off.rows)]  # other rows, same key
            version = off.predict(row, **{"X-Canary-Key": f"c{customer}"})["model_version"]
            seen.setdefault(f"c{customer}", set()).add(version)
    assert all(len(versions) == 1 for versions in seen.values()), seen
    assert {v for versions in seen.values() for v in versions} == {"1", "3"}  # both serve

    # a key named in the setting: a header of that name, or a one-row body's field
    body = {"mode": "canary", "version": 3, "fraction": 0.5, "key": "age"}
    assert off.put(body).status_code == 200
    by_age: dict[float, set[str]] = {}
    for _ in range(3):
        for row in off.rows:
            by_age.setdefault(row["age"], set()).add(off.predict(row)["model_version"])
    assert all(len(versions) == 1 for versions in by_age.values()), by_age
    assert {v for versions in by_age.values() for v in versions} == {"1", "3"}


def _shadow(figures: dict, version: str) -> dict:
    days = [d for d in figures["shadow"] if d["version"] == version]
    return days[0]["figures"] if days else {}


def test_shadow_agrees_with_an_equal_challenger_and_not_with_another(off: Served):
    plain = [off.predict(row)["prediction"] for row in off.rows]
    for version in ("2", "3"):
        before = _shadow(off.challenger(), version).get("compared_rows", 0)
        assert off.put({"mode": "shadow", "version": int(version)}).status_code == 200
        answers = [off.predict(row) for row in off.rows]
        assert [a["prediction"] for a in answers] == plain  # the champion still answers
        assert {a["model_version"] for a in answers} == {"1"}
        poll(
            lambda v=version, b=before: _shadow(off.challenger(), v).get("compared_rows", 0)
            >= b + len(off.rows),
            f"the shadow of version {version}",
        )
    same, other = _shadow(off.challenger(), "2"), _shadow(off.challenger(), "3")
    assert same["mean_abs_diff"] == pytest.approx(0.0, abs=1e-9)
    assert same["correlation"] == pytest.approx(1.0, abs=1e-6)
    assert same["errors"] == 0 and same["mean_latency_ms"] is not None
    assert other["mean_abs_diff"] > 1.0  # version 3 saw other rows: its answers differ
    assert other["correlation"] < 1.0


def test_a_challenger_that_raises_never_changes_an_answer(off: Served):
    plain = [off.predict(row) for row in off.rows]
    assert off.put({"mode": "shadow", "version": 4, "fraction": 1.0}).status_code == 200
    shadowed = [off.predict(row) for row in off.rows]
    assert shadowed == plain
    poll(lambda: _shadow(off.challenger(), "4").get("errors", 0) >= len(off.rows), "errors")


def test_another_replica_follows_a_put(off: Served, tmp_path):
    other = create_app(off.settings)  # a second process's app over the same data folder
    row = off.rows[0]
    with serving(other) as url:
        assert off.predict(row, url=url)["model_version"] == "1"
        assert off.put({"mode": "canary", "version": 3, "fraction": 1.0}).status_code == 200
        poll(lambda: off.predict(row, url=url)["model_version"] == "3", "the replica's canary")
        assert off.put({"mode": "off"}).status_code == 200
        poll(lambda: off.predict(row, url=url)["model_version"] == "1", "the replica's off")
        traffic_of(other).stop()



def test_reads_describe_the_champion_during_a_canary(off: Served):
    assert off.put({"mode": "canary", "version": 3, "fraction": 1.0}).status_code == 200
    assert off.predict(off.rows[0])["model_version"] == "3"  # every scoring goes to 3
    ready = requests.get(
        f"{off.url}/v2/models/default/ready", headers=off.headers("predict"), timeout=TIMEOUT
    )
    assert ready.status_code == 200 and ready.json()["version"] == "1"  # a read: the champion
