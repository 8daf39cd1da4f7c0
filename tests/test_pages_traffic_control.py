"""The models page's traffic control sets what ``PUT /traffic`` sets, on a real server.

A person signed in with an ``operate`` key sets a canary from the form; the API, and the page,
show it; a bad field comes back as one line naming it and changes nothing; a ``predict`` key's
session may read the control but not use it.
"""

from __future__ import annotations

import re

import requests

from ingest.state.db import StateDB
from scoring.api.app import create_app
from scoring.api.traffic import traffic_of
from scoring.keys import KeyStore
from scoring.lifecycle.registry import Registry

from ._server import serving
from .conftest import make_settings, register_trained

TIMEOUT = 30


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF field on the page"
    return match.group(1)


def _signed_in(url: str, key: str) -> requests.Session:
    browser = requests.Session()
    token = _csrf(browser.get(f"{url}/ui/login", timeout=TIMEOUT).text)
    done = browser.post(f"{url}/ui/login", data={"key": key, "csrf_token": token}, timeout=TIMEOUT)
    assert done.status_code == 200, done.text
    return browser


def test_the_traffic_control_sets_the_model_traffic(tmp_path, diabetes):
    settings = make_settings(tmp_path, model={"estimator": "ridge"})
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    register_trained(settings, registry, diabetes)
    register_trained(settings, registry, diabetes.iloc[:100], promote=False)
    store = KeyStore(StateDB.at(settings.shared_db_path))
    operate, reader = store.add("ops", "operate"), store.add("reader", "predict")
    app = create_app(settings)
    with serving(app) as url:
        browser = _signed_in(url, operate)
        page = browser.get(f"{url}/ui/models", timeout=TIMEOUT).text
        assert 'data-testid="traffic"' in page and "Now: <strong>off</strong>" in page
        form = {"mode": "canary", "version": "2", "fraction": "0.25", "key": "X-Customer"}
        done = browser.post(
            f"{url}/ui/models/traffic", data={**form, "csrf_token": _csrf(page)}, timeout=TIMEOUT
        )
        assert done.status_code == 200 and "traffic of default: canary" in done.text
        api = requests.get(
            f"{url}/traffic", headers={"Authorization": f"Bearer {operate}"}, timeout=TIMEOUT
        ).json()
        assert api == {"mode": "canary", "version": 2, "fraction": 0.25, "key": "X-Customer",
                       "challenger": "2", "rule": None}  # fmt: skip

        bad = browser.post(
            f"{url}/ui/models/traffic",
            data={"mode": "shadow", "fraction": "lots", "csrf_token": _csrf(done.text)},
            timeout=TIMEOUT,
        )
        assert bad.status_code == 200 and "traffic not changed: fraction" in bad.text
        assert "Now: <strong>canary</strong>" in bad.text  # nothing changed

        viewer = _signed_in(url, reader)
        shown = viewer.get(f"{url}/ui/models", timeout=TIMEOUT).text
        refused = viewer.post(
            f"{url}/ui/models/traffic",
            data={"mode": "off", "csrf_token": _csrf(shown)},
            timeout=TIMEOUT,
        )
        assert refused.status_code == 403
        traffic_of(app).stop()
