"""The drift page (issue 20, point 7): its data shaping and SVG geometry as pure functions, then
the page itself over a real HTTP server, on one tiny model trained once for the module.

The module's drop is scored through the real intake with drift on (as ``dropscore worker``
wires it): one feature shifted by a standard deviation, a categorical column given a category
the training data never had, named like markup. Realized metrics are stored as the label join
stores them; the page must show what ``GET /performance`` answers.
"""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import requests

from scoring.api.app import create_app
from scoring.api.pages import drift, svg
from scoring.bulk.drops import on_arrival
from scoring.models.factory import open_model
from scoring.monitoring.bulk import BulkDrift
from scoring.monitoring.profile import categorical_profile, numeric_profile
from scoring.monitoring.reference import profile_step
from scoring.monitoring.report import ColumnDrift, Thresholds, judge
from scoring.service.runtime import open_intake

from ._server import serving
from .conftest import make_settings, register_trained

HOSTILE = "<script>alert(1)</script>"
HOSTILE_CATEGORY = "<img src=x onerror=alert(2)>"
SHIFTED = "bmi"
SVG = "{http://www.w3.org/2000/svg}"


def _bars(markup: str) -> dict[str, list[tuple[int, float]]]:
    """Read a histogram's bars: per side, (count, drawn height), in drawing order."""
    root = ET.fromstring(markup)
    out: dict[str, list[tuple[int, float]]] = {"reference": [], "current": []}
    for rect in root.iter(f"{SVG}rect"):
        if rect.get("data-side"):
            bar = (int(rect.get("data-count")), float(rect.get("height")))
            out[rect.get("data-side")].append(bar)
    return out


def _column(name: str, drifted: bool | None, psi: float = 0.0, **more) -> dict:
    return {
        "name": name,
        "kind": "numeric",
        "drifted": drifted,
        "why": [],
        "reason": None if drifted is not None else "absent from the data",
        "stats": {"psi": psi},
        "histogram": None,
        **more,
    }


# -- pure: shaping and geometry -------------------------------------------------------------------


def test_histogram_bar_heights_are_proportional_to_each_sides_counts():
    reference, current = [10, 20, 40, 0], [5, 0, 15, 30]
    bars = _bars(svg.histogram(["a", "b", "c", "d"], reference, current, title="t"))
    for side, counts in (("reference", reference), ("current", current)):
        drawn = bars[side]
        assert [c for c, _ in drawn] == counts
        tallest = max(drawn, key=lambda b: b[1])
        for count, height in drawn:  # height / count is one constant per side
            assert height == pytest.approx(tallest[1] * count / tallest[0], abs=0.02)
    # sides are drawn as shares of their own rows: 30 of 50 current (60%) is taller than
    # 40 of 70 reference (57%), though fewer rows
    assert bars["current"][3][1] > bars["reference"][2][1]


def test_a_histogram_of_the_reference_alone_draws_no_current_bars():
    bars = _bars(svg.histogram(["x", "y"], [3, 1], [], title="t", note="reference only"))
    assert [c for c, _ in bars["reference"]] == [3, 1] and bars["current"] == []


def test_columns_are_ordered_drifted_first_then_the_most_shifted():
    columns = [
        _column("calm", False, 0.01),
        _column("absent", None),
        _column("moved", True, 0.3),
        _column("moved_more", True, 0.9),
        _column("calmer", False, 0.001),
    ]
    assert [c["name"] for c in drift.ordered(columns)] == [
        "moved_more",
        "moved",
        "calm",
        "calmer",
        "absent",
    ]


@pytest.mark.parametrize(
    ("offset", "shown", "start", "more"),
    [(0, 12, 0, True), (12, 12, 12, True), (24, 6, 24, False), (10_000, 6, 24, False)],
)
def test_a_record_shows_a_bounded_page_of_features(offset, shown, start, more):
    record = {
        "id": 1,
        "model_version": "1",
        "source": "window",
        "file_id": None,
        "ref": None,
        "created_at": "2026-12-06T10:00:00Z",
        "verdict": "drifted",
        "reason": "r",
        "rows": 10,
        "features": [_column(f"f{i:02d}", i % 3 == 0, i / 100) for i in range(30)],
        "prediction": None,
    }
    view = drift.record_view(record, lambda: None, offset, limit=12)
    assert (len(view["features"]), view["offset"], view["more"]) == (shown, start, more)
    assert (view["feature_count"], view["drifted_count"]) == (30, 10)
    if offset == 0:  # the ten drifted come first, most shifted first
        assert [f["name"] for f in view["features"][:3]] == ["f27", "f24", "f21"]
        assert {f["verdict"] for f in view["features"][:10]} == {"drifted"}


def test_the_profile_is_read_once_and_only_for_a_column_without_its_own_histogram():
    drawn = {"edges": [0.5], "reference": [5, 5], "current": [1, 9]}
    reads = []

    def profile():
        reads.append(1)
        return None

    record = {"id": 1, "verdict": "stable", "source": "cli", "model_version": "1"}
    compared = [_column("a", False, histogram=drawn), _column("b", True, 1.0, histogram=drawn)]
    drift.record_view({**record, "features": compared}, profile, 0)
    assert reads == []  # the record's histograms carry the reference's counts
    drift.record_view({**record, "features": [*compared, _column("x", None), _column("y", None)]},
                      profile, 0)  # fmt: skip
    assert reads == [1]


def test_bins_are_named_by_the_reference_edges_closed_by_its_range():
    assert drift.bin_labels([1.0, 2.5], 0.0, 9.0) == ["0 – 1", "1 – 2.5", "2.5 – 9"]
    assert drift.bin_labels([1.0], None, None) == ["< 1", "≥ 1"]
    assert drift.bin_labels([], 3.0, 3.0) == ["all values"]


def test_statistics_are_written_out_with_the_null_rate_change_and_unseen_categories():
    found = {
        "psi": 0.4321,
        "js": 0.25,
        "ks_statistic": 0.5,
        "ks_pvalue": 1e-9,
        "wasserstein": 0.8,
        "wasserstein_norm": 1.02,
        "null_rate_reference": 0.0,
        "null_rate_current": 0.1,
        "null_rate_change": 0.1,
        "out_of_range_share": 0.05,
        "unseen_categories": {HOSTILE_CATEGORY: 4},
        "unseen_rows": 4,
        "unseen_share": 0.04,
    }
    column = {**_column("c", True, 0.4321), "stats": found, "why": ["psi 0.432 > 0.2"]}
    view = drift.column_view(column, None)
    stats = dict(view["stats"])
    assert stats["PSI"] == "0.4321" and stats["Jensen–Shannon distance"] == "0.25"
    assert stats["KS statistic (p-value)"] == "0.5 (p = 1e-09)"
    assert stats["Wasserstein distance"] == "0.8 (1.02 reference SDs)"
    assert stats["null rate (reference → current)"] == "0.0% → 10.0% (+10.0 points)"
    assert stats["outside the training range"] == "5.0% of values"
    assert view["unseen"] == [(HOSTILE_CATEGORY, 4)] and view["words"] == "drifted"


def test_a_statistic_stored_as_null_is_a_dash_never_an_error():
    found = {"psi": None, "ks_statistic": 0.2, "ks_pvalue": None, "min_reference": 1.0,
             "max_reference": None, "min_current": 0.5, "max_current": 2.0}  # fmt: skip
    stats = dict(drift.statistics(found))
    assert "PSI" not in stats and stats["KS statistic (p-value)"] == "0.2 (p = —)"
    assert stats["range (reference → current)"] == "1 … — → 0.5 … 2"


def test_a_column_not_compared_says_why_and_draws_its_reference_from_the_profile():
    values = np.arange(100, dtype=float)
    profile = numeric_profile(values, values[:10], bins=4)
    view = drift.column_view(_column("gone", None), profile)
    assert view["reason"] == "absent from the data" and view["words"] == "not compared"
    bars = _bars(view["plot"])
    assert [c for c, _ in bars["reference"]] == list(profile.counts) and bars["current"] == []
    assert "reference only: absent from the data" in view["plot"]
    assert drift.column_view(_column("gone", None), None)["plot"] is None


def test_hostile_names_and_categories_are_escaped_in_the_plots():
    counts = categorical_profile(np.array(["a", "b", "b"], dtype=object))
    column = {
        **_column(HOSTILE, True, 1.0),
        "kind": "categorical",
        "histogram": {
            "categories": [HOSTILE_CATEGORY, "b"],
            "reference": [0, 2],
            "current": [5, 1],
        },
    }
    markup = drift.column_view(column, counts)["plot"]
    root = ET.fromstring(markup)  # well-formed: nothing the names hold became markup
    assert not [e for e in root.iter() if e.tag.removeprefix(SVG) in ("script", "img")]
    assert HOSTILE not in markup and HOSTILE_CATEGORY not in markup
    assert "&lt;script&gt;" in markup and "&lt;img src=x" in markup


def test_the_performance_plot_draws_each_day_and_the_holdout_as_a_line():
    versions = [
        {
            "version": "2",
            "primary_metric": "r2",
            "holdout": {"r2": 0.5},
            "realized": [
                {"day": "2026-12-04", "rows": 10, "metrics": {"r2": 0.45}},
                {"day": "2026-12-05", "rows": 12, "metrics": {"r2": 0.2}},
            ],
        },
        {
            "version": "1",
            "primary_metric": "r2",
            "holdout": {"r2": 0.4},
            "realized": [{"day": "2026-12-03", "rows": 8, "metrics": {"r2": None}}],
        },
    ]
    view = drift.performance_view(versions)
    assert view["metric"] == "r2" and len(view["rows"]) == 3
    root = ET.fromstring(view["plot"])
    points = {c.get("data-day"): float(c.get("cy")) for c in root.iter(f"{SVG}circle")}
    assert set(points) == {"2026-12-04", "2026-12-05"}  # a day without a value draws nothing
    assert points["2026-12-04"] < points["2026-12-05"]  # higher r2, higher on the plot
    lines = {ln.get("data-version"): float(ln.get("y1")) for ln in root.iter(f"{SVG}line")}
    assert lines["2"] < points["2026-12-04"] < lines["1"]  # 0.5 above 0.45 above 0.4
    assert drift.performance_view([])["plot"] is None


# -- the page over a real server -----------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory, diabetes):
    """A real server over a model whose one scored drop drifted, with realized metrics."""
    tmp = tmp_path_factory.mktemp("drift-page")
    settings = make_settings(tmp, monitoring={"min_rows": 50})
    model = open_model(settings)
    frame = diabetes.assign(colour=np.where(np.arange(len(diabetes)) % 2, "red", "blue"))
    version, result = register_trained(settings, model.registry, frame)
    profile_step(model.registry, version, frame, result)
    _config, ledger, intake = open_intake(settings, model)
    intake.on_normalized = on_arrival(settings, intake, model.champion.peek, drift=BulkDrift(model))
    drop = frame.drop(columns="target").head(300).copy()
    drop[SHIFTED] = drop[SHIFTED] + diabetes[SHIFTED].std()
    drop.loc[:40, "colour"] = HOSTILE_CATEGORY
    src = tmp / "shifted.csv"
    drop.to_csv(src, index=False)
    file_id = intake.take_copy(src, "score").id
    assert ledger.get(file_id).drift == "drifted"
    model.outcomes.measured(version, "2026-12-05", 40, {"r2": 0.31, "mae": 40.0})
    # a live window's record naming a feature like markup, not compared: it says why
    absent = ColumnDrift(HOSTILE, "numeric", None, reason=f"absent from the data: {HOSTILE}")
    report = judge([absent], None, 120, Thresholds())
    hostile = model.drift.add(
        model_version=version, source="window", rows=120, verdict=report.verdict,
        report=report.to_dict(), ref="w-1",
    )  # fmt: skip
    model.stop()
    with serving(create_app(settings)) as url:
        yield {"url": url, "file_id": file_id, "hostile": hostile.id, "version": version}


def _get(url: str) -> requests.Response:
    return requests.get(url, timeout=60)


def test_the_files_page_badge_links_to_the_drop_s_drift_and_it_shows_the_shift_first(served):
    url, file_id = served["url"], served["file_id"]
    files = _get(f"{url}/ui/files").text
    badge = re.search(r'<a class="state bad" data-testid="drift-badge" href="([^"]+)"', files)
    assert badge and badge.group(1) == f"/ui/drift?file={file_id}"
    page = _get(url + badge.group(1).replace("&amp;", "&"))
    assert page.status_code == 200
    api = _get(f"{url}/models/default/files/{file_id}/drift").json()
    html = page.text
    assert f'data-record="{api["id"]}"' in html and api["drifted_features"][0] == SHIFTED
    column = r'data-testid="drift-column" data-feature="([^"]+)" data-verdict="(\w+)"'
    shown = re.findall(column, html)
    names = [name for name, _ in shown]
    assert names[0] == SHIFTED and shown[0][1] == "drifted"  # drifted first
    verdicts = [v for _, v in shown[: len(api["features"])]]
    assert verdicts == sorted(verdicts, key=lambda v: v != "drifted")
    assert len(names) == min(len(api["features"]), drift.FEATURES_SHOWN) + 1  # + predictions
    assert html.count('data-plot="histogram"') == len(names)
    # the unseen category is named, escaped, never markup
    assert HOSTILE_CATEGORY not in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html


def test_the_timeline_lists_the_drop_and_the_window_each_with_its_verdict(served):
    url = served["url"]
    html = _get(f"{url}/ui/drift").text
    timeline = _get(f"{url}/models/default/drift").json()["timeline"]
    rows = re.findall(r'<tr data-entry="(\d+)"', html)
    assert [int(r) for r in rows] == [e["id"] for e in timeline]
    assert f"file {served['file_id']}" in html and "live window w-1" in html
    assert re.search(r'<span class="state bad">drifted</span>', html)
    assert re.search(r'<span class="state skipped">not compared</span>', html)


def test_a_record_that_was_not_compared_says_why_with_hostile_names_escaped(served):
    html = _get(f"{served['url']}/ui/drift?record={served['hostile']}").text
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    reason = re.search(r'data-testid="record-reason">([^<]*)<', html).group(1)
    assert reason.startswith("no feature could be compared (&lt;script&gt;")
    assert "not compared: absent from the data" in html


def test_the_realized_performance_plot_shows_what_the_api_answers(served):
    url = served["url"]
    html = _get(f"{url}/ui/drift").text
    [version] = _get(f"{url}/models/default/performance").json()["versions"]
    [day] = version["realized"]
    plot = re.search(r'<figure data-plot="performance">(.*?)</figure>', html, re.S).group(1)
    root = ET.fromstring(plot)
    [point] = list(root.iter(f"{SVG}circle"))
    assert point.get("data-day") == day["day"] and point.get("data-version") == version["version"]
    assert f"r2 {day['metrics']['r2']:.4g} on 40 labelled rows" in point.find(f"{SVG}title").text
    [holdout] = [ln for ln in root.iter(f"{SVG}line") if "holdout" in ln.get("class", "")]
    assert f"{version['holdout']['r2']:.4g}" in holdout.find(f"{SVG}title").text


def test_links_lead_to_the_drift_page_and_bad_choices_are_json_errors(served):
    url = served["url"]
    assert 'href="/ui/drift"' in _get(f"{url}/").text  # the nav
    assert 'href="/ui/drift"' in _get(f"{url}/ui/models").text
    missing = _get(f"{url}/ui/drift?record=999999")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "no drift record 999999 for this model"
    bad = _get(f"{url}/ui/drift?record=%3Cscript%3E")
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "record"
    unknown = _get(f"{url}/ui/drift?file=424242")
    assert unknown.status_code == 404 and "not in the ledger" in unknown.json()["error"]["message"]
    paged = _get(f"{url}/ui/drift?file={served['file_id']}&offset=999999")
    assert paged.status_code == 200  # past the last page: the last page


def test_the_timeline_shows_the_newest_records_only(tmp_path):
    settings = make_settings(tmp_path)
    model = open_model(settings)
    report = judge([], None, 0, Thresholds()).to_dict()
    for i in range(drift.TIMELINE + 5):
        model.drift.add(
            model_version=1, source="window", rows=0, verdict="not_compared", report=report,
            ref=f"w{i}",
        )  # fmt: skip
    model.stop()
    html = create_app(settings).test_client().get("/ui/drift").get_data(as_text=True)
    rows = [int(r) for r in re.findall(r'<tr data-entry="(\d+)"', html)]
    assert rows == list(range(drift.TIMELINE + 5, 5, -1))  # the newest, newest first
    assert f"The newest {drift.TIMELINE} records" in html


# -- structure -------------------------------------------------------------------------------------

PAGES = Path(__file__).resolve().parents[1] / "scoring" / "api" / "pages"
# What a page must not reach for: the drift tables (it reads through the API's functions and the
# model's stores), SQL, and the reference builder (a page view must never profile from the lake).
FORBIDDEN = ("sqlalchemy", "scoring.monitoring.records", "scoring.monitoring.reference")


def forbidden_imports(source: str) -> list[str]:
    """Name the modules a page source imports that it must not."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        found += [n for n in names if any(n == f or n.startswith(f + ".") for f in FORBIDDEN)]
    return found


def test_no_page_queries_drift_tables_or_builds_a_profile():
    assert forbidden_imports("from scoring.monitoring.reference import reference\n")
    assert forbidden_imports("import sqlalchemy.sql\n")
    for path in sorted(PAGES.glob("*.py")):
        assert forbidden_imports(path.read_text(encoding="utf-8")) == [], path.name
