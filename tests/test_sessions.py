"""Dashboard sessions end on the server: logout, key revocation, idle and absolute lifetimes.

Every test runs a real server (waitress on 127.0.0.1) over a real state.db, and drives it with a
real HTTP client keeping cookies like a browser; a "copy of the cookie" is a second client given
the same cookie value, as an attacker who kept it would.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from ingest.state.db import StateDB
from scoring.api.app import create_app
from scoring.audit import AuditLog
from scoring.keys import KeyStore
from scoring.lifecycle.registry import Registry
from scoring.service.cli import main
from scoring.settings import SettingsError
from tests._server import serving
from tests.conftest import make_settings, register_trained, wait_for
from tests.test_e2e_serve import serve  # noqa: F401 - the fixture: real processes

KEY = "sessions-test-key-0123456789"
COOKIE = "dropscore_session"


@contextmanager
def server(tmp_path: Path, diabetes, **server_settings: Any) -> Iterator[str]:
    """Serve two registered versions (2 is the champion) with ``KEY`` as a settings key."""
    settings = make_settings(tmp_path, server={"api_keys": [KEY], **server_settings})
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    register_trained(settings, registry, diabetes)
    register_trained(settings, registry, diabetes)
    with serving(create_app(settings, registry=registry)) as url:
        yield url


def csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def log_in(url: str, key: str = KEY, **headers: str) -> tuple[requests.Session, requests.Response]:
    """Log in through the form as a browser does; return the browser and the login answer."""
    browser = requests.Session()
    token = csrf(browser.get(f"{url}/ui/login", headers=headers, timeout=30).text)
    answer = browser.post(
        f"{url}/ui/login",
        data={"key": key, "csrf_token": token},
        headers=headers,
        allow_redirects=False,
        timeout=30,
    )
    assert answer.status_code == 302 and "/ui/login" not in answer.headers["Location"]
    return browser, answer


def copy_of(browser: requests.Session) -> requests.Session:
    """A second client holding the same cookie value, as someone who copied it."""
    thief = requests.Session()
    thief.cookies.set(COOKIE, browser.cookies[COOKIE])
    return thief


def page(client: requests.Session, url: str, path: str = "/ui/models") -> requests.Response:
    return client.get(url + path, allow_redirects=False, timeout=30)


def promote(client: requests.Session, url: str, token: str, version: int) -> requests.Response:
    return client.post(
        f"{url}/ui/models/{version}/promote",
        data={"csrf_token": token},
        allow_redirects=False,
        timeout=30,
    )


def champion(tmp_path: Path) -> int | None:
    settings = make_settings(tmp_path)
    return Registry(settings.models_dir, StateDB.at(settings.db_path)).champion_version()


def audit_rows(tmp_path: Path) -> list:
    return AuditLog(StateDB.at(tmp_path / "data" / "state.db")).list()


def sessions_table(tmp_path: Path) -> list[sqlite3.Row]:
    with sqlite3.connect(tmp_path / "data" / "state.db") as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute("SELECT * FROM sessions").fetchall()


def is_login(answer: requests.Response) -> bool:
    return answer.status_code == 302 and "/ui/login" in answer.headers["Location"]


# -- logout --------------------------------------------------------------------------------------


def test_a_cookie_copied_before_logout_opens_nothing_after_it(tmp_path, diabetes):
    """The campaign's: a copy kept after POST /ui/logout still promoted a model (302, audited)."""
    with server(tmp_path, diabetes) as url:
        browser, _ = log_in(url)
        token = csrf(page(browser, url).text)
        thief = copy_of(browser)
        assert page(thief, url).status_code == 200  # the copy works while the session lives
        out = browser.post(
            f"{url}/ui/logout", data={"csrf_token": token}, allow_redirects=False, timeout=30
        )
        assert out.status_code == 302
        assert is_login(page(thief, url))
        assert is_login(promote(thief, url, token, 1))
        api = thief.post(f"{url}/models/1/promote", headers={"X-CSRF-Token": token}, timeout=30)
        assert api.status_code == 401
    assert champion(tmp_path) == 2
    assert audit_rows(tmp_path) == []
    assert sessions_table(tmp_path) == []


def test_the_table_keeps_only_a_hash_of_the_session_id_and_never_the_key(tmp_path, diabetes):
    settings = make_settings(tmp_path, server={"api_keys": [KEY]})
    app = create_app(settings)
    with serving(app) as url:
        browser, _ = log_in(url)
        cookie = browser.cookies[COOKIE]
    content = app.session_interface.get_signing_serializer(app).loads(cookie)  # type: ignore[attr-defined]
    assert KEY not in str(content)
    [row] = sessions_table(tmp_path)
    assert content["sid"] not in str(dict(row)) and KEY not in str(dict(row))
    assert row["key_name"] == "settings-1"


# -- the key ends its sessions -------------------------------------------------------------------


def test_revoking_a_key_with_the_cli_ends_its_sessions_at_once(tmp_path, diabetes, monkeypatch):
    for name in [n for n in __import__("os").environ if n.startswith("DROPSCORE")]:
        monkeypatch.delenv(name)
    with server(tmp_path, diabetes) as url:
        operator_key = KeyStore(StateDB.at(tmp_path / "data" / "state.db")).add("ops", "operate")
        browser, _ = log_in(url, operator_key)
        kept, _ = log_in(url)  # another key's session, which must live on
        assert page(browser, url).status_code == 200
        path = tmp_path / "settings.toml"
        path.write_text(
            f'[paths]\ndata_dir = "data"\n[server]\napi_keys = ["{KEY}"]\n', encoding="utf-8"
        )
        revoked = CliRunner().invoke(main, ["--settings", str(path), "keys", "revoke", "ops"])
        assert revoked.exit_code == 0, revoked.output
        # at once, not after the key ring's one-second re-read: the session row is gone
        assert is_login(page(browser, url))
        assert page(kept, url).status_code == 200
    assert [row["key_name"] for row in sessions_table(tmp_path)] == ["settings-1"]


def test_a_key_removed_from_api_keys_ends_its_sessions_on_restart(tmp_path, diabetes):
    with server(tmp_path, diabetes) as url:
        browser, _ = log_in(url)
        cookie = browser.cookies[COOKIE]
    other = "another-settings-key-0123456789"
    settings = make_settings(tmp_path, server={"api_keys": [other]})
    with serving(create_app(settings)) as url:
        thief = requests.Session()
        thief.cookies.set(COOKIE, cookie)
        assert is_login(page(thief, url))
    assert sessions_table(tmp_path) == []


# -- lifetimes -----------------------------------------------------------------------------------


def age(tmp_path: Path, column: str, seconds: float) -> None:
    """Move every session's stamp back in time, as if that long had passed."""
    with sqlite3.connect(tmp_path / "data" / "state.db") as conn:
        conn.execute(f"UPDATE sessions SET {column} = {column} - ?", (seconds,))


@pytest.mark.parametrize(
    ("column", "seconds"),
    [("seen_at", 31 * 60), ("created_at", 3 * 3600)],
    ids=["idle", "absolute"],
)
def test_a_session_ends_after_its_idle_and_its_absolute_lifetime(
    tmp_path, diabetes, column, seconds
):
    with server(tmp_path, diabetes, session_idle_minutes=30, session_max_hours=2) as url:
        browser, _ = log_in(url)
        assert page(browser, url).status_code == 200
        age(tmp_path, column, 60)  # a minute is well inside both lifetimes
        assert page(browser, url).status_code == 200
        age(tmp_path, column, seconds)
        assert is_login(page(browser, url))
    assert sessions_table(tmp_path) == []


def test_a_session_in_use_is_kept_alive_but_not_past_its_absolute_lifetime(tmp_path, diabetes):
    with server(tmp_path, diabetes, session_idle_minutes=30, session_max_hours=2) as url:
        browser, _ = log_in(url)
        for _ in range(3):  # used every 20 minutes, 1 h in all: idle never trips
            age(tmp_path, "seen_at", 20 * 60)
            age(tmp_path, "created_at", 20 * 60)
            assert page(browser, url).status_code == 200
        age(tmp_path, "created_at", 61 * 60)
        assert is_login(page(browser, url))


# -- CSRF ----------------------------------------------------------------------------------------


def test_a_forged_post_is_refused_with_its_reason_and_never_audited_as_the_key(
    tmp_path, diabetes, caplog
):
    caplog.set_level(logging.WARNING, logger="dropscore.audit")
    with server(tmp_path, diabetes) as url:
        browser, _ = log_in(url)
        forged = browser.post(f"{url}/ui/models/1/promote", allow_redirects=False, timeout=30)
        assert forged.status_code == 400
        assert forged.json()["error"]["code"] == "bad_request"
        wrong = promote(browser, url, "not-the-token", 1)
        assert wrong.status_code == 400
        api = browser.post(f"{url}/models/1/promote", timeout=30)
        assert api.status_code == 401
    assert champion(tmp_path) == 2
    assert audit_rows(tmp_path) == []
    refused = [r for r in caplog.records if r.getMessage() == "request refused"]
    assert len(refused) == 3
    assert all("CSRF" in r.reason and r.key_name == "settings-1" for r in refused)


def test_a_post_with_the_token_is_audited_under_the_key(tmp_path, diabetes):
    with server(tmp_path, diabetes) as url:
        browser, _ = log_in(url)
        token = csrf(page(browser, url).text)
        assert promote(browser, url, token, 1).status_code == 302
    assert champion(tmp_path) == 1
    [entry] = audit_rows(tmp_path)
    assert (entry.key_name, entry.status) == ("settings-1", 302)


# -- TLS behind a proxy --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trusted", "secure"),
    [(["127.0.0.1"], True), (["10.0.0.0/8"], False), ([], False), (["127.0.0.0/8", "::1"], True)],
)
def test_the_cookie_is_secure_behind_a_trusted_tls_proxy_only(tmp_path, diabetes, trusted, secure):
    proxied = {"X-Forwarded-Proto": "https"}
    with server(tmp_path, diabetes, trusted_proxies=trusted) as url:
        # the browser speaks https to the proxy, so it sends back a Secure cookie: by hand here
        form = requests.get(f"{url}/ui/login", headers=proxied, timeout=30)
        answer = requests.post(
            f"{url}/ui/login",
            data={"key": KEY, "csrf_token": csrf(form.text)},
            headers={**proxied, "Cookie": f"{COOKIE}={form.cookies[COOKIE]}"},
            allow_redirects=False,
            timeout=30,
        )
        assert is_login(answer) is False and answer.status_code == 302
        for response in (form, answer):
            assert ("Secure" in response.headers["Set-Cookie"]) is secure
        _, plain = log_in(url)
        assert "Secure" not in plain.headers["Set-Cookie"]


@pytest.mark.parametrize(
    ("trusted", "chain", "seen"),
    [
        (["127.0.0.1"], "203.0.113.7", "203.0.113.7"),
        (["127.0.0.1", "10.0.0.0/8"], "198.51.100.1, 203.0.113.7, 10.1.2.3", "203.0.113.7"),
        ([], "203.0.113.7", "127.0.0.1"),
        (["10.0.0.0/8"], "203.0.113.7", "127.0.0.1"),
        (["127.0.0.1"], "not-an-address", "127.0.0.1"),
    ],
)
def test_x_forwarded_for_names_the_client_only_from_a_trusted_proxy(
    tmp_path, diabetes, caplog, trusted, chain, seen
):
    caplog.set_level(logging.WARNING, logger="dropscore.audit")
    with server(tmp_path, diabetes, trusted_proxies=trusted) as url:
        answer = requests.get(f"{url}/models", headers={"X-Forwarded-For": chain}, timeout=30)
        assert answer.status_code == 401
    [record] = [r for r in caplog.records if r.getMessage() == "request refused"]
    assert record.remote_addr == seen


@pytest.mark.parametrize("entry", ["proxy.example", "10.0.0.0/33", "", "127.0.0.1/8/8"])
def test_trusted_proxies_must_be_addresses_or_networks(tmp_path, entry):
    with pytest.raises(SettingsError) as info:
        make_settings(tmp_path, server={"trusted_proxies": [entry]})
    assert "[server] trusted_proxies" in str(info.value) and "\n" not in str(info.value)


def login_form(server, headers: dict[str, str]) -> requests.Response:
    """Wait until a real server answers its login form (``api`` has no model, so no /ready)."""

    def fetch() -> requests.Response | None:
        assert server.proc.poll() is None, server.log.read_text()
        try:
            return requests.get(f"{server.url}/ui/login", headers=headers, timeout=5)
        except (requests.ConnectionError, requests.Timeout):
            return None

    return wait_for(fetch, timeout=180, interval=0.2)


@pytest.mark.slow
@pytest.mark.parametrize("command", [("serve",), ("api", "--workers", "1")])
def test_both_servers_leave_forwarded_headers_to_trusted_proxies(serve, command):  # noqa: F811
    """waitress (serve) cleared X-Forwarded-*, gunicorn (api) trusted them from 127.0.0.1 itself."""
    proxied = {"X-Forwarded-Proto": "https"}
    untrusted = serve(*command, DROPSCORE_API_KEYS=KEY)
    form = login_form(untrusted, proxied)
    assert "Secure" not in form.headers["Set-Cookie"]  # no proxy is trusted: ignored
    assert untrusted.stop() == 0
    trusted = serve(
        *command, DROPSCORE_API_KEYS=KEY, DROPSCORE__SERVER__TRUSTED_PROXIES="127.0.0.1"
    )
    form = login_form(trusted, proxied)
    assert "Secure" in form.headers["Set-Cookie"]
    assert trusted.stop() == 0


def test_a_process_whose_key_copy_is_stale_keeps_a_new_keys_session(tmp_path):
    """Another worker's ring re-reads keys once a second: it must not end a session it cannot
    place yet, only one whose key is gone from the store too."""
    from scoring.api.pages import session as page_session
    from scoring.keys import Identity, KeyRing, hash_key

    settings = make_settings(tmp_path, server={"api_keys": [KEY]})
    app = create_app(settings)
    store = KeyStore(StateDB.at(settings.shared_db_path))
    stale = KeyRing(store, [KEY], refresh_seconds=10**9)
    stale.entries()  # loaded before the key below exists, and never re-read
    late = store.add("late", "predict")
    with app.test_request_context("/ui/models"):
        sessions = page_session.store()
        page_session.session["sid"] = sessions.start("late", hash_key(late))
        assert page_session.identify(stale) == Identity("late", "predict")
        store.revoke("late")  # ends the row itself; and a row left behind is ended on sight
        page_session.session["sid"] = sessions.start("late", hash_key(late))
        assert page_session.identify(stale) is None
    assert sessions_table(tmp_path) == []
