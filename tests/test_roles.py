"""Roles over HTTP with Flask's test client on a real state.db: who may call what, and the audit."""

from __future__ import annotations

import pytest

from ingest.state.db import StateDB
from scoring.api.app import create_app
from scoring.api.auth import ENDPOINT_ROLES, OPEN_ENDPOINTS, required_role
from scoring.audit import AuditLog
from scoring.keys import ROLES, KeyStore
from scoring.lifecycle.runs import RunStore

from .conftest import assert_error, make_settings, wait_for

ROW = {
    "age": 0.038,
    "sex": 0.05,
    "bmi": 0.061,
    "bp": 0.021,
    "s1": -0.044,
    "s2": -0.034,
    "s3": -0.043,
    "s4": -0.002,
    "s5": 0.019,
    "s6": -0.017,
}


@pytest.fixture
def keys(settings) -> dict[str, str]:
    """One stored key per role, named for it."""
    store = KeyStore(StateDB.at(settings.db_path))
    return {role: store.add(f"{role}-key", role) for role in ROLES}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def wait_run_done(client, run_id: int, headers: dict[str, str]) -> dict:
    """A started retrain runs in a thread: let it finish before the data folder goes away."""
    return wait_for(
        lambda: (
            (r := client.get(f"/runs/{run_id}", headers=headers).get_json())
            and r["state"] in ("succeeded", "skipped", "failed")
            and r
        ),
        timeout=60,
    )


# -- the table -------------------------------------------------------------------------------


def test_every_endpoint_has_an_explicit_role_or_is_open(app):
    """A new endpoint must be placed in ENDPOINT_ROLES (or OPEN_ENDPOINTS) on purpose."""
    registered = {rule.endpoint for rule in app.url_map.iter_rules()}
    missing = sorted(registered - set(ENDPOINT_ROLES) - OPEN_ENDPOINTS)
    assert not missing, f"endpoints without a role in scoring/api/auth.py: {missing}"


def test_role_table_names_only_real_endpoints_and_roles(app):
    registered = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert set(ENDPOINT_ROLES) | OPEN_ENDPOINTS <= registered
    assert set(ENDPOINT_ROLES.values()) <= set(ROLES)
    assert not OPEN_ENDPOINTS & set(ENDPOINT_ROLES)


def test_unknown_endpoints_need_admin():
    assert required_role("pages.something_new") == "admin"


# -- the matrix ------------------------------------------------------------------------------

ALLOWED = {
    "predict": {"read", "predict"},
    "operate": {"read", "predict", "train", "promote"},
    "admin": {"read", "predict", "train", "promote", "audit"},
}
ACTIONS = ("read", "predict", "train", "promote", "audit")


def act(client, action: str, headers: dict[str, str]):
    return {
        "read": lambda: client.get("/models", headers=headers),
        "predict": lambda: client.post("/predict", json={"features": ROW}, headers=headers),
        "train": lambda: client.post("/train", headers=headers),
        "promote": lambda: client.post("/models/1/promote", headers=headers),
        "audit": lambda: client.get("/audit", headers=headers),
    }[action]()


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", ACTIONS)
def test_role_matrix(client, trained, keys, role, action):
    response = act(client, action, bearer(keys[role]))
    if action in ALLOWED[role]:
        assert response.status_code == (202 if action == "train" else 200), response.get_json()
        if action == "train":
            wait_run_done(client, response.get_json()["run_id"], bearer(keys["admin"]))
    else:
        needed = "operate" if action in ("train", "promote") else "admin"
        error = assert_error(response, 403, "forbidden", needed, f"{role}-key")
        assert error["details"] == [{"role_needed": needed, "role": role}]


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize(
    "header", [None, "Bearer", "Bearer ds_not-a-key", "Basic x", "ds_", "Bearer predict-key"]
)
def test_missing_or_wrong_key_is_401(client, trained, keys, action, header):
    headers = {"Authorization": header} if header else {}
    assert_error(act(client, action, headers), 401, "unauthorized")


def test_a_key_of_any_role_learns_a_path_does_not_exist(client, keys):
    assert_error(client.get("/nowhere"), 401, "unauthorized")
    assert_error(client.get("/nowhere", headers=bearer(keys["predict"])), 404, "not_found")


def test_probes_stay_open(client, trained, keys):
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 200


def test_no_key_anywhere_leaves_the_api_open(client, trained):
    assert client.get("/models").status_code == 200
    assert client.post("/models/1/promote").status_code == 200
    settings = client.application.extensions["dropscore"].settings
    [entry] = AuditLog(StateDB.at(settings.db_path)).list()
    assert entry.key_name is None and entry.version == "1" and entry.status == 200


def test_a_key_added_to_the_store_turns_auth_on_and_revoking_turns_it_off(client, settings):
    assert client.get("/models").status_code == 200
    store = KeyStore(StateDB.at(settings.db_path))
    key = store.add("first", "predict")
    wait_for(lambda: client.get("/models").status_code == 401, timeout=10)
    assert client.get("/models", headers=bearer(key)).status_code == 200
    store.revoke("first")
    wait_for(lambda: client.get("/models", headers=bearer(key)).status_code == 200, timeout=10)


def test_a_revoked_key_is_refused_while_others_work(client, keys, settings):
    KeyStore(StateDB.at(settings.db_path)).revoke("operate-key")
    wait_for(
        lambda: client.get("/models", headers=bearer(keys["operate"])).status_code == 401,
        timeout=10,
    )
    assert client.get("/models", headers=bearer(keys["predict"])).status_code == 200


# -- the plain settings list -----------------------------------------------------------------


@pytest.fixture
def plain_client(tmp_path, registry):
    settings = make_settings(
        tmp_path, server={"api_keys": ["s3cret-key-0123456789", "other-key-0123456789"]}
    )
    return create_app(settings, registry=registry).test_client()


@pytest.mark.parametrize(
    ("key", "name"),
    [("s3cret-key-0123456789", "settings-1"), ("other-key-0123456789", "settings-2")],
)
def test_settings_keys_are_admin_keys(plain_client, trained, key, name):
    assert plain_client.post("/models/1/promote", headers=bearer(key)).status_code == 200
    [entry] = plain_client.get("/audit", headers=bearer(key)).get_json()["audit"]
    assert (entry["key_name"], entry["role"]) == (name, "admin")


def test_settings_keys_and_stored_keys_work_side_by_side(plain_client, trained, settings):
    key = KeyStore(StateDB.at(settings.db_path)).add("reader", "predict")
    assert plain_client.get("/models", headers=bearer(key)).status_code == 200
    assert plain_client.get("/models", headers=bearer("s3cret-key-0123456789")).status_code == 200
    assert_error(plain_client.get("/audit", headers=bearer(key)), 403, "forbidden", "admin")


# -- the audit -------------------------------------------------------------------------------


def test_promote_is_audited_and_recorded_with_the_key_name(client, trained, keys, settings):
    response = client.post("/models/1/promote", headers=bearer(keys["operate"]))
    assert response.get_json()["promoted_by"] == "operate-key"
    listed = client.get("/models", headers=bearer(keys["predict"])).get_json()["models"]
    assert listed[0]["promoted_by"] == "operate-key"
    [entry] = AuditLog(StateDB.at(settings.db_path)).list()
    assert (entry.key_name, entry.role, entry.method, entry.path, entry.status, entry.version) == (
        "operate-key",
        "operate",
        "POST",
        "/models/1/promote",
        200,
        "1",
    )


def test_train_is_audited_and_the_run_names_the_key(client, trained, keys, settings):
    response = client.post("/train", headers=bearer(keys["admin"]))
    assert response.status_code == 202
    run_id = response.get_json()["run_id"]
    run = wait_run_done(client, run_id, bearer(keys["predict"]))
    assert run["requested_by"] == "admin-key"
    assert RunStore(StateDB.at(settings.db_path)).get(run_id).requested_by == "admin-key"
    [entry] = client.get("/audit", headers=bearer(keys["admin"])).get_json()["audit"]
    assert entry["key_name"] == "admin-key" and entry["run_id"] == run_id
    assert entry["path"] == "/train" and entry["status"] == 202


def test_a_failed_change_is_audited_with_its_status(client, trained, keys, settings):
    assert_error(client.post("/models/9/promote", headers=bearer(keys["admin"])), 404, "not_found")
    [entry] = AuditLog(StateDB.at(settings.db_path)).list()
    assert (entry.key_name, entry.status, entry.version) == ("admin-key", 404, "9")


def test_reads_predictions_and_refusals_are_not_audited(client, trained, keys, settings):
    client.get("/models", headers=bearer(keys["admin"]))
    client.post("/predict", json={"features": ROW}, headers=bearer(keys["admin"]))
    client.post("/models/1/promote", headers=bearer(keys["predict"]))  # 403
    client.post("/models/1/promote")  # 401
    assert AuditLog(StateDB.at(settings.db_path)).list() == []


def test_audit_listing_filters_by_key_and_validates_paging(client, trained, keys):
    client.post("/models/1/promote", headers=bearer(keys["operate"]))
    client.post("/models/1/promote", headers=bearer(keys["admin"]))
    admin = bearer(keys["admin"])
    body = client.get("/audit?key=operate-key", headers=admin).get_json()
    assert [e["key_name"] for e in body["audit"]] == ["operate-key"]
    both = client.get("/audit", headers=admin).get_json()["audit"]
    assert [e["key_name"] for e in both] == ["admin-key", "operate-key"]  # newest first
    assert_error(client.get("/audit?limit=0", headers=admin), 422, "invalid_input", "limit")
