"""The dashboard in a real headless Chromium, driven by Playwright, over a real ``serve``.

Chromium comes from Debian's packages (``apt-get install chromium``); Playwright drives it through
``executable_path`` and never downloads a browser of its own. Screenshots of every page land in
``build/screenshots/`` (printed at the end of the run).
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pandas as pd
import pytest
import requests

from .conftest import ROOT, SAMPLE, wait_for
from .test_e2e_serve import serve  # noqa: F401 - the real-server fixture

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = ROOT / "build" / "screenshots"
KEY = "browser-test-key"

if CHROMIUM is None:
    pytest.skip(
        "Chromium not found: apt-get install chromium (the dashboard's browser tests need it)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright not installed: pip install -e '.[test]'"
)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser tab that records every console error and uncaught exception."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    tab = context.new_page()
    tab.errors = []
    tab.on("console", lambda m: m.type == "error" and tab.errors.append(m.text))
    tab.on("pageerror", lambda e: tab.errors.append(str(e)))
    yield tab
    context.close()


def shot(tab, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def until(tab, url: str, check, timeout: float = 60) -> None:
    """Reload a page until ``check(tab)`` holds: the way a person watches a page change."""

    def probe():
        tab.goto(url)
        return check(tab)

    wait_for(probe, timeout, interval=0.5)


def run_finished(known: int):
    """Tell whether a run newer than ``known`` runs is on the page and done."""

    def check(tab) -> bool:
        if tab.locator("[data-run]").count() <= known:
            return False
        state = tab.locator("[data-run]").first.locator(".state").first.inner_text()
        return state in ("succeeded", "skipped", "failed")

    return check


def test_an_operator_runs_the_service_from_the_browser(serve, page, tmp_path):  # noqa: F811
    server = serve("serve")
    server.ready()
    base = server.url
    data = tmp_path / "data"

    # Overview: the champion's version and metrics
    page.goto(base + "/")
    assert page.get_by_test_id("champion-version").inner_text() == "1"
    assert "r2" in page.get_by_test_id("champion-metrics").inner_text()
    shot(page, "overview")

    # A labelled drop appears in the ledger
    labelled = pd.read_csv(SAMPLE).iloc[::-1].head(300)  # other content than the bootstrap file
    labelled.to_csv(data / "inbox" / "train" / "more.csv", index=False)
    until(page, base + "/ui/files", lambda t: "more.csv" in t.get_by_test_id("ledger").inner_text())
    row = page.locator("tr", has_text="more.csv")
    wait_for(lambda: "normalized" in row.inner_text(), 30)

    # Retrain now, then see the new run's decision
    page.goto(base + "/ui/runs")
    known = page.locator("[data-run]").count()
    page.get_by_role("button", name="Retrain now").click()
    until(page, base + "/ui/runs", run_finished(known))
    newest = page.locator("[data-run]").first
    assert "succeeded" in newest.inner_text()
    assert newest.get_by_test_id("reason").inner_text().strip()
    shot(page, "runs")

    # Promote one version, roll back to the other: the champion follows
    page.goto(base + "/ui/models?v=2")
    before = requests.get(base + "/models/current", timeout=5).json()["version"]
    other = "1" if before == "2" else "2"
    verb = "Roll back to" if other == "1" else "Promote"
    page.get_by_role("button", name=f"{verb} version {other}").click()
    page.goto(base + "/")
    assert page.get_by_test_id("champion-version").inner_text() == other
    page.goto(base + "/ui/models")
    verb = "Roll back to" if before == "1" else "Promote"
    page.get_by_role("button", name=f"{verb} version {before}").click()
    page.goto(base + "/")
    assert page.get_by_test_id("champion-version").inner_text() == before
    page.goto(base + "/ui/models?v=2")
    assert page.locator("[data-plot=predicted_vs_actual] svg").count() == 1
    shot(page, "models")

    # Score a file through the drop zone, then download the result
    page.goto(base + "/ui/score")
    csv = pd.read_csv(SAMPLE).drop(columns=["target"]).head(25).to_csv(index=False)
    page.evaluate(
        """csv => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([csv], "batch.csv", {type: "text/csv"}));
            document.getElementById("drop-zone").dispatchEvent(
                new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }""",
        csv,
    )
    link = page.get_by_role("link", name="Download the scored file")
    link.wait_for(state="visible", timeout=60_000)
    with page.expect_download() as download:
        link.click()
    scored = pd.read_csv(io.StringIO(Path(download.value.path()).read_text()))
    assert len(scored) == 25 and "prediction" in scored.columns
    assert "Scored 25 rows" in page.get_by_role("status").inner_text()
    shot(page, "score")

    # A quarantined drop shows its reason, and can be retried
    (data / "inbox" / "score" / "broken.csv").write_bytes(b"age,bmi\n1,2,3,4\n5\n")
    until(
        page,
        base + "/ui/files?state=quarantined",
        lambda t: t.get_by_test_id("quarantine-reason").count() > 0,
    )
    reason = page.get_by_test_id("quarantine-reason").first.inner_text()
    assert reason and "broken.csv" in page.get_by_test_id("ledger").inner_text()
    shot(page, "files")
    page.locator("tr", has_text="broken.csv").get_by_role("button", name="Retry").first.click()
    assert "put back in the inbox" in page.get_by_role("status").first.inner_text()

    # A score drop is scored on arrival, and its output downloads from the ledger
    pd.read_csv(SAMPLE).drop(columns=["target"]).head(30).to_csv(
        data / "inbox" / "score" / "nightly.csv", index=False
    )
    until(page, base + "/ui/files?state=scored", lambda t: "nightly.csv" in t.content())
    with page.expect_download() as download:
        page.get_by_role("link", name="download scored output of file").first.click()
    saved = Path(download.value.path())
    name = download.value.suggested_filename
    output = pd.read_parquet(saved) if name.endswith(".parquet") else pd.read_csv(saved)
    assert len(output) == 30 and "prediction" in output.columns

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(base + "/")
    shot(page, "overview-phone")

    assert page.errors == [], page.errors
    assert server.stop() == 0


def test_with_keys_the_pages_ask_for_one(serve, page):  # noqa: F811
    server = serve("serve", DROPSCORE_API_KEYS=KEY)
    server.ready()
    page.goto(server.url + "/ui/models")
    assert page.url.startswith(server.url + "/ui/login")
    page.get_by_label("API key").fill("not-the-key")
    page.get_by_role("button", name="Log in").click()
    assert "not valid" in page.get_by_role("alert").inner_text()
    shot(page, "login")
    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Log in").click()
    assert page.url == server.url + "/ui/models"
    assert page.get_by_test_id("versions").count() == 1
    cookie = next(c for c in page.context.cookies() if c["name"] == "dropscore_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    refused = requests.get(server.url + "/models", timeout=5)  # no session, no key
    assert refused.status_code == 401
    page.get_by_role("button", name="Log out").click()
    page.goto(server.url + "/")
    assert page.url.startswith(server.url + "/ui/login")
    assert page.errors == [], page.errors
    assert server.stop() == 0
