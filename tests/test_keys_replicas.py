"""Two API replicas on one state database: a key revoked anywhere stops working in both.

Each replica keeps the keys in memory (``KeyRing``) and re-reads the store at most every
``refresh_seconds`` (1 s), like the champion pointer: the store is how the other replicas learn.
Real HTTP servers, one real SQLite state file, the real clock (polled, never asserted).
"""

from __future__ import annotations

import requests

from ingest.state.db import StateDB
from scoring.api.app import create_app
from scoring.keys import KeyStore
from scoring.testing.waiting import wait_for

from ._server import serving
from .conftest import make_settings


def _status(url: str, key: str) -> int:
    answer = requests.get(url + "/models", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    return answer.status_code


def test_a_key_revoked_in_the_shared_store_stops_in_both_replicas(tmp_path):
    settings = make_settings(tmp_path)
    store = KeyStore(StateDB.at(settings.db_path))  # as `dropscore keys` opens it
    key = store.add("ci", "predict")
    other = store.add("keeper", "predict")  # auth stays on once "ci" is gone
    with serving(create_app(settings)) as a, serving(create_app(settings)) as b:
        for url in (a, b):
            assert _status(url, key) == 200
            assert _status(url, "ds_not-a-key") == 401
        store.revoke("ci")
        for url in (a, b):
            wait_for(lambda url=url: _status(url, key) == 401, timeout=30, what=f"401 at {url}")
            assert _status(url, other) == 200
        # A key added later works in both too: the same re-read.
        late = store.add("late", "predict")
        for url in (a, b):
            wait_for(lambda url=url: _status(url, late) == 200, timeout=30, what=f"200 at {url}")
