"""The dataplane step, seen from an observer registered on a real app behind a real server.

Every protocol scores through ``scoring.inference.dataplane``: one request is one event, naming
the version that answered, its route and its row count (a bulk upload: one event with counts, no
rows). An observer that raises is logged and changes nothing a client sees.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from ingest.state.db import StateDB
from scoring.api.app import create_app
from scoring.inference.dataplane import Dataplane, Scored
from scoring.lifecycle.registry import Registry
from scoring.settings import Settings

from ._server import serving
from .conftest import make_settings, register_trained

TIMEOUT = 60
FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
ROW = [0.038, 0.05, 0.062, 0.022, -0.044, -0.035, -0.043, -0.003, 0.02, -0.018]
RECORD = dict(zip(FEATURES, ROW, strict=True))


class Recorder:
    """An observer that keeps every event (the server's threads call it concurrently)."""

    def __init__(self) -> None:
        self.events: list[Scored] = []
        self._lock = threading.Lock()

    def __call__(self, event: Scored) -> None:
        with self._lock:
            self.events.append(event)

    def take(self) -> list[Scored]:
        """Return the events so far and start afresh."""
        with self._lock:
            out, self.events = self.events, []
        return out


def explode(event: Scored) -> None:
    raise RuntimeError(f"an observer's bug, on {event.protocol}")


@dataclass
class Served:
    url: str
    settings: Settings
    dataplane: Dataplane
    recorder: Recorder


@pytest.fixture(scope="module")
def served(tmp_path_factory, diabetes) -> Iterator[Served]:
    """Two versions of one model (2 is the champion), served with a recording observer."""
    settings = make_settings(tmp_path_factory.mktemp("dataplane"))
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    register_trained(settings, registry, diabetes.head(300))
    register_trained(settings, registry, diabetes)
    app = create_app(settings)
    recorder = Recorder()
    dataplane = app.extensions["dropscore"].dataplane
    dataplane.add(recorder)
    with serving(app) as url:
        yield Served(url, settings, dataplane, recorder)


def _csv(rows: int) -> str:
    return ",".join(FEATURES) + "\n" + "".join(",".join(map(str, ROW)) + "\n" for _ in range(rows))


def _infer(rows: int, request_id: str) -> dict:
    return {
        "id": request_id,
        "inputs": [{"name": "x", "shape": [rows, 10], "datatype": "FP64", "data": [ROW] * rows}],
    }


# One request per protocol: (method, path, request keywords) → (route, rows, version).
CALLS = {
    "predict one": (("/predict", {"json": {"features": RECORD}}), ("predict", 1, "2")),
    "predict many, a named version": (
        ("/versions/1/predict", {"json": {"instances": [ROW] * 2}}),
        ("predict", 2, "1"),
    ),
    "invocations": (("/invocations", {"json": {"instances": [ROW] * 3}}), ("invocations", 3, "2")),
    "kserve v1": (
        ("/v1/models/default:predict", {"json": {"instances": [RECORD] * 2}}),
        ("kserve", 2, "2"),
    ),
    "v2 infer": (
        ("/v2/models/default/versions/1/infer", {"json": _infer(4, "infer-4")}),
        ("infer", 4, "1"),
    ),
    "explain": (("/explain?version=1", {"json": {"instances": [ROW] * 5}}), ("explain", 5, "1")),
    "score-file": (
        ("/score-file", {"data": _csv(6), "headers": {"Content-Type": "text/csv"}}),
        ("score_file", 6, "2"),
    ),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_each_protocol_sends_one_event_with_its_rows_and_version(served: Served, call: str):
    (path, given), (route, rows, version) = CALLS[call]
    kwargs = dict(given)
    served.recorder.take()
    headers = {"X-Request-Id": f"req-{route}", **kwargs.pop("headers", {})}
    response = requests.post(served.url + path, headers=headers, timeout=TIMEOUT, **kwargs)
    assert response.status_code == 200, response.text
    [event] = served.recorder.take()  # exactly one, and already there: observers run in-line
    assert (event.model, event.protocol, event.rows, event.version) == (
        "default",
        route,
        rows,
        version,
    )
    assert event.seconds >= 0
    if route == "score_file":  # a bulk run: counts, not rows
        assert (event.features, event.predictions, event.failed) == (None, None, 0)
        assert response.headers["X-Rows-Scored"] == str(rows)
        return
    assert event.request_id == ("infer-4" if route == "infer" else f"req-{route}")
    assert event.schema is not None and event.schema.names == FEATURES
    assert event.features is not None and event.features.reshape(-1, 10).shape == (rows, 10)
    assert len(event.predictions) == rows
    if route in ("predict", "invocations", "kserve") and rows > 1:
        assert list(event.predictions) == response.json()["predictions"]


def test_a_failed_request_sends_no_event(served: Served):
    served.recorder.take()
    response = requests.post(
        served.url + "/predict", json={"instances": [[1, 2]]}, timeout=TIMEOUT
    )
    assert response.status_code == 422
    assert served.recorder.take() == []


def test_an_observer_that_raises_changes_no_answer(served: Served, caplog):
    before = {name: _answer(served, name) for name in CALLS if name != "score-file"}
    counted = _rows_scored(served, "invocations")
    served.dataplane.observers.insert(0, explode)  # first: the ones after it still run
    try:
        with caplog.at_level("ERROR", logger="dropscore.dataplane"):
            after = {name: _answer(served, name) for name in before}
    finally:
        served.dataplane.observers.remove(explode)
    assert after == before
    assert _rows_scored(served, "invocations") == counted + 3  # the counter, after it, ran
    assert len(served.recorder.take()) >= len(before)
    assert any("observer failed" in r.getMessage() for r in caplog.records)


def test_the_event_is_immutable():
    event = Scored("default", "1", "predict", 1, 0.0)
    with pytest.raises(AttributeError):
        event.rows = 2  # type: ignore[misc]


def _answer(served: Served, name: str) -> tuple[int, object]:
    (path, kwargs), _ = CALLS[name]
    response = requests.post(served.url + path, timeout=TIMEOUT, **kwargs)
    return response.status_code, response.json()


def _rows_scored(served: Served, route: str) -> float:
    text = requests.get(served.url + "/metrics", timeout=TIMEOUT).text
    sample = f'dropscore_rows_scored_total{{model="default",path="{route}"}} '
    lines = [line for line in text.splitlines() if line.startswith(sample)]
    return float(lines[0].split()[-1]) if lines else 0.0


def test_a_scored_drop_is_one_event_with_its_counts(tmp_path, diabetes):
    """A drop scored on arrival (the real watcher) reports to the dataplane: counts, no rows."""
    from ingest.pipeline.watcher import Watcher
    from scoring.bulk.drops import on_arrival
    from scoring.lifecycle.champion import ChampionHolder
    from scoring.service.runtime import open_intake

    from .conftest import wait_for

    settings = make_settings(tmp_path, ingest={"stable_seconds": 0.2, "rescan_seconds": 1.0})
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    register_trained(settings, registry, diabetes)
    config, ledger, intake = open_intake(settings)
    recorder = Recorder()
    intake.on_normalized = on_arrival(
        settings, intake, ChampionHolder(registry).peek, Dataplane([explode, recorder])
    )
    watcher = Watcher(config, intake)
    watcher.start()
    try:
        inbox = settings.data_dir / "inbox" / "score"
        inbox.mkdir(parents=True, exist_ok=True)
        (inbox / "drop.csv.part").write_text(_csv(7))
        (inbox / "drop.csv.part").rename(inbox / "drop.csv")
        record = wait_for(lambda: (r := ledger.list(state="scored")) and r[0], timeout=30)
        wait_for(lambda: recorder.events, timeout=30)  # told right after the ledger
    finally:
        watcher.stop()
    [event] = recorder.take()  # after the observer that raised: it changed nothing
    assert (event.protocol, event.rows, event.failed, event.version) == ("drop", 7, 0, "1")
    assert (event.file_id, event.features, event.predictions) == (record.id, None, None)
    assert record.rows_scored == 7


def test_serve_shares_its_dataplane_so_scored_drops_reach_the_metrics(tmp_path, diabetes):
    """As ``serve`` wires it: the background's dataplane is the app's, counter first."""
    from scoring.service.runtime import background

    from .conftest import wait_for

    settings = make_settings(tmp_path, ingest={"stable_seconds": 0.2, "rescan_seconds": 1.0})
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    register_trained(settings, registry, diabetes)
    with background(settings) as bg:
        app = create_app(settings, served=bg.models, dataplane=bg.dataplane)
        assert app.extensions["dropscore"].dataplane is bg.dataplane
        with serving(app) as url:
            inbox = settings.layout.inbox("score")
            inbox.mkdir(parents=True, exist_ok=True)
            (inbox / "drop.csv.part").write_text(_csv(7))
            (inbox / "drop.csv.part").rename(inbox / "drop.csv")
            served = Served(url, settings, bg.dataplane, Recorder())
            wait_for(lambda: _rows_scored(served, "drop") == 7, timeout=60, what="7 drop rows")
