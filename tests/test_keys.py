"""The key store on a real state.db, the ring each API process keeps, the CLI, a real server."""

from __future__ import annotations

import sqlite3

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy.exc import SQLAlchemyError

from ingest.state.db import StateDB
from scoring.errors import Conflict, NotFound, ValidationFailed
from scoring.keys import (
    PREFIX,
    ROLES,
    Identity,
    KeyRing,
    KeyStore,
    hash_key,
    identify,
    role_allows,
    settings_entries,
)
from scoring.lifecycle.registry import Registry
from scoring.lifecycle.runs import RunStore
from scoring.service.cli import main

from .conftest import make_settings, register_trained, wait_for
from .test_e2e_serve import cli_env, dropscore, serve  # noqa: F401 - the fixture

# -- the store -------------------------------------------------------------------------------


@pytest.fixture
def store(open_state) -> KeyStore:
    """The key store on each backend (a SQLite file, or a PostgreSQL database)."""
    return KeyStore(open_state())


def test_a_key_is_random_prefixed_and_stored_only_as_its_hash(settings):
    store = KeyStore(StateDB.at(settings.db_path))  # the file's bytes are read below
    first, second = store.add("alice", "operate"), store.add("bob", "predict")
    assert first.startswith(PREFIX) and second.startswith(PREFIX) and first != second
    assert len(first) > 40
    stored = b"".join(p.read_bytes() for p in settings.data_dir.glob("state.db*"))
    assert first.encode() not in stored and second.encode() not in stored
    with sqlite3.connect(settings.db_path) as conn:
        hashes = {row[0] for row in conn.execute("SELECT hash FROM api_keys")}
    assert hashes == {hash_key(first).hex(), hash_key(second).hex()}


def test_listing_shows_names_and_roles_never_hashes(store):
    store.add("alice", "operate")
    [info] = store.list()
    assert (info.name, info.role, info.revoked_at) == ("alice", "operate", None)
    assert not hasattr(info, "hash")


def test_a_name_is_taken_until_revoked_then_reusable(store):
    old = store.add("alice", "predict")
    with pytest.raises(Conflict, match="revoke it first"):
        store.add("alice", "admin")
    store.revoke("alice")
    new = store.add("alice", "admin")
    assert [h for h, _ in store.live_hashes()] == [hash_key(new)]
    assert hash_key(old) not in {h for h, _ in store.live_hashes()}
    assert [(k.name, bool(k.revoked_at)) for k in store.list(include_revoked=True)] == [
        ("alice", True),
        ("alice", False),
    ]


def test_revoking_an_unknown_key_is_not_found(store):
    with pytest.raises(NotFound, match="nobody"):
        store.revoke("nobody")


@pytest.mark.parametrize(
    ("name", "role", "problem"),
    [
        ("", "predict", "key name"),
        ("Alice", "predict", "lower-case"),
        ("../x", "predict", "key name"),
        ("a" * 65, "predict", "1-64"),
        ("settings-1", "predict", "settings"),
        ("alice", "root", "predict, operate, admin"),
    ],
)
def test_bad_names_and_roles_are_refused(store, name, role, problem):
    with pytest.raises(ValidationFailed, match=problem):
        store.add(name, role)
    assert store.list() == []


@pytest.mark.parametrize(
    ("have", "need", "allowed"),
    [(h, n, ROLES.index(h) >= ROLES.index(n)) for h in ROLES for n in ROLES],
)
def test_each_role_can_do_what_lower_roles_can(have, need, allowed):
    assert role_allows(have, need) is allowed


def test_identify_finds_the_one_matching_key_among_many():
    keys = [f"{PREFIX}{i}" for i in range(20)]
    entries = tuple((hash_key(k), Identity(f"k{i}", "predict")) for i, k in enumerate(keys))
    assert identify(keys[7], entries) == Identity("k7", "predict")
    assert identify(keys[0], entries) == Identity("k0", "predict")
    assert identify("ds_nope", entries) is None
    assert identify("", entries) is None


def test_settings_keys_are_admin_keys_named_by_position():
    entries = settings_entries(["s3cret", "other"])
    assert [identity for _, identity in entries] == [
        Identity("settings-1", "admin"),
        Identity("settings-2", "admin"),
    ]
    assert identify("other", tuple(entries)) == Identity("settings-2", "admin")


# -- the ring --------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_ring_rereads_the_store_once_its_copy_is_stale(store):
    clock = Clock()
    ring = KeyRing(store, ["s3cret"], refresh_seconds=1.0, clock=clock)
    assert ring.identify("s3cret") == Identity("settings-1", "admin")
    key = store.add("alice", "predict")
    assert ring.identify(key) is None  # the copy is fresh: no query per request
    clock.now += 1.0
    assert ring.identify(key) == Identity("alice", "predict")
    store.revoke("alice")
    clock.now += 0.5
    assert ring.identify(key) is not None
    clock.now += 0.5
    assert ring.identify(key) is None


def test_the_ring_is_off_only_when_no_key_exists_anywhere(store):
    clock = Clock()
    ring = KeyRing(store, [], clock=clock)
    assert not ring.enabled()
    store.add("alice", "predict")
    clock.now += 1.0
    assert ring.enabled()
    assert KeyRing(store, [], clock=clock).enabled()


def test_a_failed_reread_keeps_the_keys_loaded(store, tmp_path):
    clock = Clock()
    key = store.add("alice", "operate")
    ring = KeyRing(store, [], clock=clock)
    assert ring.identify(key) == Identity("alice", "operate")
    broken = tmp_path / "a-folder"
    broken.mkdir()
    ring.store = KeyStore(StateDB.at(broken))  # a folder is no database: every read fails
    clock.now += 5.0
    assert ring.enabled()  # auth never falls open because the store could not be read
    assert ring.identify(key) == Identity("alice", "operate")


def test_a_ring_that_never_loaded_fails_closed(tmp_path):
    broken = tmp_path / "a-folder"
    broken.mkdir()
    with pytest.raises(SQLAlchemyError):
        KeyRing(KeyStore(StateDB.at(broken)), []).enabled()


# -- older state.db files --------------------------------------------------------------------


def test_an_older_state_db_gains_the_who_columns(settings, tmp_path):
    settings.data_dir.mkdir(parents=True)
    with sqlite3.connect(settings.db_path) as conn:
        conn.executescript(
            "CREATE TABLE models (version INTEGER PRIMARY KEY, status TEXT NOT NULL,"
            " created_at TEXT NOT NULL, promoted_at TEXT, reason TEXT, estimator TEXT, task TEXT,"
            " metrics TEXT);"
            "INSERT INTO models VALUES (1, 'challenger', '2026-01-01', NULL, NULL, 'ridge',"
            " 'regression', '{}');"
            "CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, trigger TEXT NOT NULL,"
            " state TEXT NOT NULL, force INTEGER NOT NULL DEFAULT 0, queued_at TEXT NOT NULL,"
            " started_at TEXT, finished_at TEXT, rows INTEGER, version INTEGER,"
            " champion_version INTEGER, metrics TEXT, champion_metrics TEXT, promoted INTEGER,"
            " reason TEXT, skip TEXT, error TEXT, pid INTEGER);"
            "INSERT INTO runs (trigger, state, queued_at) VALUES ('cli', 'succeeded', 'x');"
        )
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    assert registry.get(1).promoted_by is None
    assert registry.promote(1, "rollback", by="alice").promoted_by == "alice"
    runs = RunStore(StateDB.at(settings.db_path))
    assert runs.get(1).requested_by is None
    assert runs.get(runs.create("api", requested_by="bob")).requested_by == "bob"


# -- the CLI ---------------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """Invoke dropscore with a settings file whose data folder is tmp_path/data."""
    path = tmp_path / "settings.toml"
    path.write_text(
        '[paths]\ndata_dir = "data"\n[server]\napi_keys = ["plain-settings-key-01"]\n', "utf-8"
    )
    for name in [n for n in __import__("os").environ if n.startswith("DROPSCORE")]:
        monkeypatch.delenv(name)

    def invoke(*args: str):
        return CliRunner().invoke(main, ["--settings", str(path), *args])

    return invoke


def test_keys_add_prints_the_key_once_and_list_never_shows_it(cli, tmp_path):
    added = cli("keys", "add", "ci-bot", "--role", "predict")
    assert added.exit_code == 0, added.output
    key = added.stdout.strip()
    assert key.startswith(PREFIX) and "\n" not in key  # alone on stdout: KEY=$(dropscore …)
    assert "will not be shown again" in added.stderr
    listed = cli("keys", "list")
    assert listed.exit_code == 0
    assert "ci-bot" in listed.output and "predict" in listed.output
    assert "settings-1" in listed.output and "admin" in listed.output
    assert key not in listed.output and "plain-settings-key-01" not in listed.output
    assert key not in cli("keys", "list", "--all").output
    ring = KeyRing(KeyStore(StateDB.at(tmp_path / "data" / "state.db")), [])
    assert ring.identify(key) == Identity("ci-bot", "predict")


def test_keys_revoke_stops_the_key(cli, tmp_path):
    key = cli("keys", "add", "temp", "--role", "admin").stdout.strip()
    revoked = cli("keys", "revoke", "temp")
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert KeyRing(KeyStore(StateDB.at(tmp_path / "data" / "state.db")), []).identify(key) is None
    assert "temp" not in cli("keys", "list").output
    assert "temp" in cli("keys", "list", "--all").output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("keys", "add", "dup", "--role", "predict"), "revoke it first"),
        (("keys", "add", "x", "--role", "root"), "'root' is not one of"),
        (("keys", "add", "Bad Name", "--role", "predict"), "lower-case"),
        (("keys", "revoke", "nobody"), "no live key named 'nobody'"),
        (("keys", "revoke", "settings-1"), "remove it there"),
    ],
)
def test_keys_errors_are_one_line(cli, args, message):
    cli("keys", "add", "dup", "--role", "predict")
    result = cli(*args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_audit_command_lists_who_changed_what(cli, tmp_path):
    from scoring.audit import AuditEntry, AuditLog

    assert "no audited requests yet" in cli("audit").output
    trail = AuditLog(StateDB.at(tmp_path / "data" / "state.db"))
    trail.record(AuditEntry("alice", "operate", "POST", "/models/7/promote", "x", 200, "7"))
    trail.record(AuditEntry("bob", "admin", "POST", "/train", "y", 202, run_id=3))
    table = cli("audit").output
    assert table.index("bob") < table.index("alice")  # newest first
    assert "POST /models/7/promote" in table
    only = cli("audit", "--key", "alice", "--json").output.splitlines()
    assert len(only) == 1 and '"version": "7"' in only[0]


# -- a real server ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_key_added_with_the_cli_works_in_a_running_server(serve, tmp_path):  # noqa: F811
    server = serve("api", "--workers", "1")
    env = cli_env(tmp_path / "data", 0)

    def status(headers: dict[str, str] | None = None) -> int | None:
        assert server.proc.poll() is None, server.log.read_text()
        try:
            return requests.get(server.url + "/models", headers=headers, timeout=2).status_code
        except requests.ConnectionError:
            return None

    wait_for(lambda: status() == 200, timeout=60, interval=0.1)  # no key anywhere: open
    added = dropscore("keys", "add", "ops", "--role", "operate", env=env)
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip()
    bearer = {"Authorization": f"Bearer {key}"}
    wait_for(lambda: status() == 401, timeout=10, interval=0.1)
    assert status(bearer) == 200
    promote = requests.post(server.url + "/models/1/promote", headers=bearer, timeout=5)
    assert promote.status_code == 404  # no model yet: allowed, audited, and answered
    audit = dropscore("audit", "--json", env=env)
    assert '"key_name": "ops"' in audit.stdout and '"status": 404' in audit.stdout
    revoked = dropscore("keys", "revoke", "ops", env=env)
    assert revoked.returncode == 0, revoked.stderr
    # The store is empty again, so the API is open; a revoked key then gains nothing over none.
    other = dropscore("keys", "add", "reader", "--role", "predict", env=env).stdout.strip()
    wait_for(lambda: status(bearer) == 401, timeout=10, interval=0.1)
    assert status({"Authorization": f"Bearer {other}"}) == 200


def test_a_promotion_from_the_cli_names_the_user(cli, tmp_path, diabetes):
    settings = make_settings(tmp_path)
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    register_trained(settings, registry, diabetes, promote=False)
    assert cli("models", "promote", "1").exit_code == 0
    by = registry.get(1).promoted_by
    assert by is not None and by.startswith("cli")
    assert by in cli("models").output


# -- keys typed into settings ----------------------------------------------------------------

SHORT = "k"  # the campaign's one-character key


@pytest.mark.parametrize(
    ("toml", "env", "expected"),
    [
        (f'api_keys = ["{SHORT}"]', {}, "at least 16 characters (entry 1"),
        ('api_keys = ["long-enough-key-0123456789", "sh0rt-key"]', {}, "(entry 2 is shorter)"),
        ("api_keys = [12345678901234567890]", {}, "expected a list of text"),
        ("", {"DROPSCORE_API_KEYS": f"long-enough-key-0123456789,{SHORT}"}, "at least 16"),
        ("", {"DROPSCORE__SERVER__API_KEYS": f'["{SHORT}"]'}, "at least 16 characters"),
    ],
)
def test_a_short_key_in_settings_stops_start_with_one_line_that_never_shows_it(
    tmp_path, monkeypatch, toml, env, expected
):
    for name in [n for n in __import__("os").environ if n.startswith("DROPSCORE")]:
        monkeypatch.delenv(name)
    path = tmp_path / "settings.toml"
    path.write_text(f'[paths]\ndata_dir = "data"\n[server]\n{toml}\n', "utf-8")
    result = CliRunner().invoke(main, ["--settings", str(path), "keys", "list"], env=env)
    assert result.exit_code != 0
    line = result.output.strip()
    assert "[server] api_keys" in line and expected in line, line
    assert "\n" not in line and "Traceback" not in line
    for secret in (SHORT + '"', "'" + SHORT + "'", "sh0rt-key", "12345678901234567890"):
        assert secret not in line
    assert "long-enough-key" not in line
