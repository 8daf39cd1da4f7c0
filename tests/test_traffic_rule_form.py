"""A canary rule set through the API survives the dashboard's form, on a real server.

An operator sets a custom rule with ``PUT /traffic``; another changes only the fraction on the
models page: the form carries the rule's fields as the page shows them, so the rule stays what
was set. The API records the champion and challenger the rule's counts belong to, and the
OpenAPI schema describes each of the rule's fields as ``CanaryRule`` declares it.
"""

from __future__ import annotations

import re
from typing import Any

import requests

from ingest.state.db import StateDB
from scoring.api.app import create_app
from scoring.api.traffic import traffic_of
from scoring.keys import KeyStore
from scoring.lifecycle.registry import Registry
from scoring.traffic.rule import RULE_DOCS, RULE_FIELDS

from ._server import serving
from .conftest import make_settings, register_trained

TIMEOUT = 30


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF field on the page"
    return match.group(1)


def _form_fields(page: str) -> dict[str, str]:
    """Read the traffic form's text inputs as a browser would send them."""
    form = page[page.index('action="/ui/models/traffic"') :]
    form = form[: form.index("</form>")]
    return dict(re.findall(r'<input name="([^"]+)"[^>]*value="([^"]*)"', form))


def _schemas(node: Any) -> list[dict[str, Any]]:
    """Every object schema in the spec, however deep."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict):
            found.append(node)
        for value in node.values():
            found.extend(_schemas(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_schemas(value))
    return found


def test_changing_the_fraction_on_the_page_keeps_the_rule_set_by_the_api(tmp_path, diabetes):
    settings = make_settings(tmp_path, model={"estimator": "ridge"})
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    register_trained(settings, registry, diabetes)
    register_trained(settings, registry, diabetes, promote=False)
    operate = KeyStore(StateDB.at(settings.shared_db_path)).add("ops", "operate")
    auth = {"Authorization": f"Bearer {operate}"}
    app = create_app(settings)
    with serving(app) as url:
        rule = {"min_requests": 500, "max_p99_ratio": 1.25, "passes": 10}
        body = {"mode": "canary", "version": 2, "fraction": 0.1, "rule": rule}
        put = requests.put(f"{url}/traffic", json=body, headers=auth, timeout=TIMEOUT)
        assert put.status_code == 200, put.text
        checks = requests.get(f"{url}/challenger", headers=auth, timeout=TIMEOUT).json()["rule"]
        assert (checks["champion"], checks["challenger"], checks["passes"]) == (1, 2, 0)

        browser = requests.Session()
        token = _csrf(browser.get(f"{url}/ui/login", timeout=TIMEOUT).text)
        browser.post(f"{url}/ui/login", data={"key": operate, "csrf_token": token},
                     timeout=TIMEOUT)  # fmt: skip
        page = browser.get(f"{url}/ui/models", timeout=TIMEOUT).text
        form = {**_form_fields(page), "fraction": "0.3", "mode": "canary", "rule": "default"}
        done = browser.post(f"{url}/ui/models/traffic", data={**form, "csrf_token": _csrf(page)},
                            timeout=TIMEOUT)  # fmt: skip
        assert done.status_code == 200 and "traffic of default: canary" in done.text
        now = requests.get(f"{url}/traffic", headers=auth, timeout=TIMEOUT).json()
        assert now["fraction"] == 0.3
        assert now["rule"] is not None
        assert {k: now["rule"][k] for k in rule} == rule, now["rule"]

        # a field typed on the page is read by name; a bad one is refused by name
        form = {**_form_fields(done.text), "mode": "canary", "rule": "default",
                "rule.passes": "4", "rule.failures": "lots"}  # fmt: skip
        form["csrf_token"] = _csrf(done.text)
        bad = browser.post(f"{url}/ui/models/traffic", data=form, timeout=TIMEOUT)
        assert bad.status_code == 200 and "traffic not changed: rule.failures" in bad.text
        form["rule.failures"] = "5"
        browser.post(f"{url}/ui/models/traffic", data={**form, "csrf_token": _csrf(bad.text)},
                     timeout=TIMEOUT)  # fmt: skip
        now = requests.get(f"{url}/traffic", headers=auth, timeout=TIMEOUT).json()
        assert (now["rule"]["passes"], now["rule"]["failures"]) == (4, 5)
        assert now["rule"]["min_requests"] == 500

        spec = requests.get(f"{url}/openapi.json", headers=auth, timeout=TIMEOUT).json()
        rules = [s for s in _schemas(spec) if set(s["properties"]) == set(RULE_FIELDS)]
        assert rules, "no schema of the rule in /openapi.json"
        for schema in rules:
            described = {name: p.get("description") for name, p in schema["properties"].items()}
            assert described == RULE_DOCS
        traffic_of(app).stop()
