"""The drift page in a real headless Chromium over a real server (issue 20, point 7).

A person opens the files page, follows the scored drop's drift badge and reads the drop's drift:
the shifted feature first, its histogram drawn with bars as tall as their counts say, the unseen
category named as text. Then the timeline's live window, which says why it was not compared,
and the realized-performance plot. The pages work with JavaScript off; with it on, the
markup-like names run nothing.
"""

from __future__ import annotations

import pytest

from .test_browser import browser, page, shot  # noqa: F401 - the browser fixtures
from .test_pages_drift import HOSTILE, HOSTILE_CATEGORY, SHIFTED, served  # noqa: F401

pytestmark = pytest.mark.slow


def test_a_person_follows_a_drift_badge_to_the_drop_s_histograms_without_javascript(
    served,  # noqa: F811
    browser,  # noqa: F811
):
    viewport = {"width": 1280, "height": 900}
    context = browser.new_context(viewport=viewport, java_script_enabled=False)
    tab = context.new_page()
    try:
        tab.goto(served["url"] + "/ui/files")
        tab.get_by_role("link", name=f"drift of file {served['file_id']}: drifted").click()
        tab.wait_for_url(f"**/ui/drift?file={served['file_id']}")
        first = tab.get_by_test_id("drift-column").first
        assert first.get_attribute("data-feature") == SHIFTED
        assert first.get_attribute("data-verdict") == "drifted"
        assert "PSI" in first.get_by_test_id("column-stats").inner_text()

        bars = first.locator("rect[data-side=reference]")
        drawn = [
            (int(bars.nth(i).get_attribute("data-count")), bars.nth(i).bounding_box()["height"])
            for i in range(bars.count())
        ]
        assert len(drawn) == 10  # the reference's ten quantile bins
        count, height = max(drawn, key=lambda b: b[1])
        assert height > 20  # drawn at a size a person can read
        for c, h in drawn:  # as tall as the counts say, on screen
            assert h == pytest.approx(height * c / count, abs=1.0)

        unseen = tab.locator('[data-testid=drift-column][data-feature="colour"]')
        assert HOSTILE_CATEGORY in unseen.get_by_test_id("unseen").inner_text()
        assert tab.locator("img").count() == 0
        shot(tab, "drift")
    finally:
        context.close()


def test_the_timeline_window_says_why_and_hostile_names_run_nothing(served, page):  # noqa: F811
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(served["url"] + "/")
    page.get_by_role("link", name="Drift", exact=True).click()
    page.get_by_role("link", name=f"drift record {served['hostile']}").click()
    reason = page.get_by_test_id("record-reason").inner_text()
    assert reason.startswith(f"no feature could be compared ({HOSTILE}")
    assert page.get_by_test_id("record-verdict").inner_text() == "not compared"
    plot = page.locator("[data-plot=performance] svg")
    assert plot.is_visible() and plot.locator("circle").count() == 1
    page.goto(served["url"] + f"/ui/drift?file={served['file_id']}")  # the unseen category
    assert page.locator("img").count() == 0
    assert dialogs == [] and page.errors == [], (dialogs, page.errors)
