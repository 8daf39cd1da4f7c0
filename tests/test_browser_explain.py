"""A row explained on the dashboard, in a real headless Chromium over a real ``serve``.

The server trains a random forest at first start (so the explanation goes through shap); the
person fills in one row on "Explain a row" and reads a bar per feature, biggest first, rising
bars and falling ones in two colours, and the base and prediction written out: the same numbers
``POST /explain`` answers for that row.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest
import requests

from .conftest import SAMPLE
from .test_browser import browser, page, shot  # noqa: F401 - the browser fixtures
from .test_e2e_serve import serve  # noqa: F401 - the real-server fixture

pytestmark = pytest.mark.slow
pytest.importorskip("shap", reason="the shap extra: pip install -e '.[test]'")

ROW = pd.read_csv(SAMPLE).drop(columns=["target"]).iloc[0].to_dict()
SIGNED = re.compile(r"^(.+): ([+-][0-9.e+-]+)$")


def test_a_person_reads_one_rows_explanation_as_a_bar_chart(serve, page):  # noqa: F811
    server = serve("serve", DROPSCORE__MODEL__ESTIMATOR="random_forest")
    server.ready(timeout=120)
    base = server.url

    page.goto(base + "/")
    page.get_by_role("link", name="Explain a row").click()
    for name, value in ROW.items():
        page.locator(f'input[name="f.{name}"]').fill(str(value))
    page.get_by_role("button", name="Explain").click()
    chart = page.locator("[data-plot=explanation] svg")
    chart.wait_for(state="visible", timeout=120_000)

    # the API's answer for the same row: the page must show these numbers
    answer = requests.post(base + "/explain", json={"features": ROW}, timeout=60).json()
    row = answer["explanations"][0]
    assert answer["space"] == "prediction"

    bars = chart.locator("g.contribution")
    assert bars.count() == len(ROW)
    drawn = []
    for i in range(bars.count()):
        name, value = SIGNED.match(bars.nth(i).locator("rect title").text_content()).groups()
        drawn.append((name, float(value)))
        rect = bars.nth(i).locator("rect")
        expected = "bar-pos" if float(value) >= 0 else "bar-neg"
        assert rect.get_attribute("class") == expected
    assert [abs(v) for _, v in drawn] == sorted((abs(v) for _, v in drawn), reverse=True)
    for name, value in drawn:  # each bar is the API's contribution (to the digits drawn)
        assert value == pytest.approx(row["contributions"][name], rel=1e-5, abs=1e-9)
    signs = {v >= 0 for _, v in drawn}
    if len(signs) == 2:  # rising and falling bars are told apart by colour, not only by class
        fills = {
            b.locator("rect").evaluate("r => getComputedStyle(r).fill")
            for b in (bars.nth(i) for i in range(bars.count()))
        }
        assert len(fills) == 2, fills

    shown = float(page.get_by_test_id("explained-prediction").inner_text())
    assert shown == pytest.approx(row["prediction"], rel=1e-5)
    assert float(page.get_by_test_id("explained-base").inner_text()) == pytest.approx(
        row["base_value"], rel=1e-5
    )
    assert chart.locator("text.base").text_content().startswith("base value ")
    assert chart.locator("text.prediction").text_content().startswith("= prediction ")
    shot(page, "explain")

    # a value the model cannot take is said on the page, as the API says it
    page.locator('input[name="f.age"]').fill("old")
    page.get_by_role("button", name="Explain").click()
    assert "age: expected a number" in page.get_by_test_id("explain-error").inner_text()

    assert page.errors == [], page.errors
    assert server.stop() == 0
