"""``/ui/login?next=…`` sends a person only to a path on this service, as a browser reads it.

Against a real server: the Location header is read the way a browser reads it (WHATWG URL
parsing: C0 controls and spaces stripped at the ends, tabs and newlines dropped, backslashes as
slashes), resolved against the service's URL, and must land on the service's own host.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring.api.app import create_app
from tests._server import serving
from tests.conftest import make_settings

KEY = "redirect-test-key-0123456789"
C0_AND_SPACE = "".join(chr(c) for c in range(0x21))


def browser_reads(location: str) -> str:
    """Normalize a Location the way a browser's URL parser does before resolving it."""
    return re.sub("[\t\r\n]", "", location.strip(C0_AND_SPACE)).replace("\\", "/")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    settings = make_settings(tmp_path_factory.mktemp("redirect"), server={"api_keys": [KEY]})
    with serving(create_app(settings)) as url:
        yield url


def login_location(url: str, target: str) -> str:
    """Log in with a valid key and ``next=target``; return the Location the server answers."""
    with requests.Session() as browser:
        form = browser.get(f"{url}/ui/login", timeout=30)
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token, form.text
        answer = browser.post(
            f"{url}/ui/login",
            params={"next": target},
            data={"key": KEY, "csrf_token": token.group(1)},
            allow_redirects=False,
            timeout=30,
        )
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def lands_on(url: str, location: str) -> str | None:
    return urlsplit(urljoin(url + "/", browser_reads(location))).hostname


@pytest.mark.parametrize(
    "target",
    [
        "/\t/evil.example",  # the campaign's: ?next=/%09/evil.example
        "/\n/evil.example",
        "/\r\n/evil.example",
        "\\\\evil.example",
        "/\\evil.example",
        "\\/evil.example",
        " //evil.example",
        "\x00//evil.example",
        "//evil.example",
        "https://evil.example/",
        "https:evil.example",
        "javascript:alert(1)",
        "/ /evil.example",
        "//[",  # a netloc urlsplit cannot parse ("Invalid IPv6 URL"): was a 500
        "/\\[evil.example",
    ],
)
def test_the_campaigns_next_values_stay_on_this_service(server, target):
    location = login_location(server, target)
    assert lands_on(server, location) == "127.0.0.1", location


def test_a_path_on_this_service_is_followed(server):
    assert login_location(server, "/ui/runs?offset=50") == "/ui/runs?offset=50"


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    target=st.one_of(
        st.text(max_size=40),
        st.text(alphabet="/\\\t\r\n :.@%09evil", max_size=20),
        st.builds(
            lambda a, b: a + "evil.example" + b,
            st.text("/\\\t \x0b:", max_size=6),
            st.text(max_size=6),
        ),
    )
)
def test_any_next_lands_on_this_service(server, target):
    location = login_location(server, target)
    assert lands_on(server, location) == "127.0.0.1", location


@pytest.mark.parametrize(
    "referer",
    [
        "http://evil.example/ui/files",
        "//evil.example/",
        "/\t/evil.example",
        "javascript:alert(1)",
        "http://[evil.example/",  # urlsplit cannot parse it: was a 500
    ],
)
def test_the_retry_button_goes_back_only_to_a_page_of_this_service(server, referer):
    """The retry button redirects to the page it was pressed on, read from Referer: a header."""
    with requests.Session() as browser:
        token = re.search(
            r'name="csrf_token" value="([^"]+)"', browser.get(f"{server}/ui/login").text
        )
        assert token
        browser.post(
            f"{server}/ui/login", data={"key": KEY, "csrf_token": token.group(1)}, timeout=30
        )
        page = browser.get(f"{server}/ui/files", timeout=30)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token, page.text
        answer = browser.post(
            f"{server}/ui/files/999/retry",
            data={"csrf_token": token.group(1)},
            headers={"Referer": referer},
            allow_redirects=False,
            timeout=30,
        )
    assert answer.status_code == 302, answer.text
    assert lands_on(server, answer.headers["Location"]) == "127.0.0.1", answer.headers["Location"]


def test_the_retry_button_goes_back_to_the_filtered_page_it_was_pressed_on(server):
    with requests.Session() as browser:
        form = browser.get(f"{server}/ui/login", timeout=30).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token
        browser.post(
            f"{server}/ui/login", data={"key": KEY, "csrf_token": token.group(1)}, timeout=30
        )
        here = f"{server}/ui/files?state=quarantined"
        token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get(here).text)
        assert token
        answer = browser.post(
            f"{server}/ui/files/999/retry",
            data={"csrf_token": token.group(1)},
            headers={"Referer": here},
            allow_redirects=False,
            timeout=30,
        )
    assert answer.headers["Location"] == "/ui/files?state=quarantined"
