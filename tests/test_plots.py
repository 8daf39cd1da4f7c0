"""The Models page's plots, rendered for real models and read back from their SVG.

Three real models (a regression on a skewed target, a binary and a three-class classifier),
each with two versions and its hold-out sample, are served by a real HTTP server; the page's
SVGs are parsed for their axis ticks, the bounds of those ticks, the scale notes, the font sizes
and the ROC's AUC.
"""

from __future__ import annotations

import itertools
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import requests

from ingest.state.db import StateDB
from scoring.api.app import create_app
from scoring.api.pages import plots, scales, svg
from scoring.lifecycle.registry import Registry

from ._server import serving
from .conftest import make_settings
from .test_pages import _register_with_holdout

NS = "{http://www.w3.org/2000/svg}"
ROWS = 1000


def _features(rng: np.random.Generator, n: int = ROWS) -> pd.DataFrame:
    return pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.normal(size=n)})


def _frames() -> dict[str, tuple[str, list[pd.DataFrame]]]:
    """Per model: its estimator and the frames its versions are trained on, oldest first."""
    rng = np.random.default_rng(3)
    x = _features(rng)
    near_exact = x.assign(target=3 * x.a + 2 * x.b + rng.normal(scale=0.01, size=ROWS))  # R² ≈ 1
    skewed = x.assign(target=np.exp(1.5 + 1.2 * x.a + 0.6 * x.b + rng.normal(scale=0.5, size=ROWS)))
    logit = 1.5 * x.a - x.b + rng.normal(scale=0.8, size=ROWS)
    binary = x.assign(target=np.where(logit > 0, "yes", "no"))
    three = x.assign(target=np.select([logit < -1, logit < 1], ["low", "mid"], "high"))
    return {
        "regression": ("linear_regression", [near_exact, skewed]),
        "binary": ("logistic_regression", [binary.head(300), binary]),
        "three": ("logistic_regression", [three.head(300), three]),
    }


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, dict]:
    """Serve each model and fetch its Models page: the SVGs by plot name, and the champion."""
    out = {}
    for name, (estimator, versions) in _frames().items():
        settings = make_settings(tmp_path_factory.mktemp(name), model={"estimator": estimator})
        registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
        for frame in versions:
            version = _register_with_holdout(settings, registry, frame)
        with serving(create_app(settings, registry=registry)) as url:
            response = requests.get(f"{url}/ui/models", timeout=60)
        assert response.status_code == 200, response.text
        out[name] = {
            "plots": _plots(response.text),
            "metrics": registry.get(version).metrics,
            "holdout": registry.holdout(version),
        }
    return out


def _plots(html: str) -> dict[str, ET.Element]:
    """Parse every SVG on a page, keyed by its aria-label (the plot's title)."""
    found = {}
    for markup in re.findall(r"<svg.*?</svg>", html, flags=re.S):
        root = ET.fromstring(markup)
        found[root.get("aria-label", "")] = root
    return found


def _texts(root: ET.Element, cls: str | None = None) -> Iterator[ET.Element]:
    for element in root.iter(f"{NS}text"):
        if cls is None or cls in (element.get("class") or "").split():
            yield element


def _ticks(root: ET.Element, axis: str) -> list[float]:
    return [float(t.text or "") for t in _texts(root, "tick") if axis in t.get("class", "").split()]


def _assert_nice(ticks: list[float]) -> float:
    """Check ticks are evenly spaced by 1, 2 or 5 times a power of ten, on multiples of it."""
    assert len(ticks) >= 3, ticks
    step = ticks[1] - ticks[0]
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(math.isclose(mantissa, m, rel_tol=1e-6) for m in (1, 2, 5)), (step, ticks)
    for value in ticks:
        assert math.isclose(value / step, round(value / step), abs_tol=1e-6), (value, step)
    assert all(math.isclose(b - a, step, rel_tol=1e-6) for a, b in itertools.pairwise(ticks)), ticks
    return step


def _frame_box(root: ET.Element) -> tuple[float, float, float, float]:
    rect = next(r for r in root.iter(f"{NS}rect") if r.get("class") == "plot-frame")
    x, y = float(rect.get("x", 0)), float(rect.get("y", 0))
    return x, y, x + float(rect.get("width", 0)), y + float(rect.get("height", 0))


def test_metric_by_version_stays_inside_what_the_metric_can_be(pages):
    r2 = pages["regression"]["plots"]["r2 by version"]
    ticks = _ticks(r2, "y")
    _assert_nice(ticks)
    assert max(ticks) <= 1.0  # one version's R² is 0.9999: the old axis went past 1
    assert min(ticks) <= 0.4  # and the other's is far below: both are inside
    for name in ("binary", "three"):
        f1 = _ticks(pages[name]["plots"]["f1 by version"], "y")
        _assert_nice(f1)
        assert min(f1) >= 0.0 and max(f1) <= 1.0


@pytest.mark.parametrize(
    ("metric", "values", "floor", "ceiling"),
    [
        ("r2", [0.2, 0.99, 1.0], None, 1.0),
        ("r2", [-0.5, 0.8], None, 1.0),  # R² may be negative
        ("f1", [0.95, 1.0], 0.0, 1.0),
        ("accuracy", [1.0], 0.0, 1.0),
        ("roc_auc", [0.0, 0.03], 0.0, 1.0),
        ("rmse", [0.01, 3.0], 0.0, None),
        ("mae", [0.0], 0.0, None),
    ],
)
def test_trend_ticks_are_round_and_bounded(metric, values, floor, ceiling):
    root = ET.fromstring(plots.trend([str(i + 1) for i in range(len(values))], values, metric, 0))
    ticks = _ticks(root, "y")
    _assert_nice(ticks)
    if floor is not None:
        assert min(ticks) >= floor
    if ceiling is not None:
        assert max(ticks) <= ceiling
    assert min(ticks) <= min(values) and max(ticks) >= max(values)  # every value on the axis
    if metric == "r2" and min(values) < 0:
        assert min(ticks) < 0


def test_points_are_drawn_inside_the_frame(pages):
    titles = ("r2 by version", "f1 by version", "predicted vs actual", "residuals")
    for page in pages.values():
        for title in (t for t in titles if t in page["plots"]):
            root = page["plots"][title]
            x0, y0, x1, y1 = _frame_box(root)
            for circle in root.iter(f"{NS}circle"):
                cx, cy = float(circle.get("cx", 0)), float(circle.get("cy", 0))
                assert x0 - 0.5 <= cx <= x1 + 0.5 and y0 - 0.5 <= cy <= y1 + 0.5, (title, cx, cy)


def test_a_skewed_target_gets_a_scale_that_fits_and_says_so(pages):
    page = pages["regression"]
    root = page["plots"]["predicted vs actual"]
    [note] = [t.text or "" for t in _texts(root, "scale-note")]
    assert "log scale" in note or "clipped to the 1st–99th percentile" in note
    drawn = len(list(root.iter(f"{NS}circle")))
    outside = int(re.search(r"(\d+) points? outside", note).group(1)) if "outside" in note else 0
    assert drawn + outside == page["holdout"]["rows"]  # nothing silently lost
    assert drawn > 0.9 * page["holdout"]["rows"]
    for axis in ("x", "y"):
        ticks = _ticks(root, axis)
        if "log scale" in note:  # 1, 2 or 5 times a power of ten, from decade to decade
            for t in ticks:
                mantissa = t / 10 ** math.floor(math.log10(t) + 1e-9)
                assert any(math.isclose(mantissa, m) for m in (1, 2, 5)), ticks
            assert ticks[-1] / ticks[0] >= 100
        else:
            _assert_nice(ticks)


def test_every_plot_uses_the_one_type_scale_at_one_width(pages):
    sizes: dict[str, set[float]] = {}
    for page in pages.values():
        for title, root in page["plots"].items():
            assert root.get("viewBox", "").split()[2] == str(svg.W), title  # one unit everywhere
            for element in _texts(root):
                size = element.get("font-size")
                assert size is not None, (title, element.text)
                role = (element.get("class") or "").split()[0]
                assert float(size) == svg.TYPE[role], (title, role, size)
                sizes.setdefault(role, set()).add(float(size))
    assert all(len(found) == 1 for found in sizes.values()), sizes
    confusion = pages["three"]["plots"]["confusion matrix"]
    roc = pages["three"]["plots"]["ROC curve"]
    tick = {float(t.get("font-size", 0)) for p in (confusion, roc) for t in _texts(p, "tick")}
    assert tick == {svg.TYPE["tick"]}  # the confusion matrix's labels are no bigger than the ROC's


def test_the_roc_curve_carries_its_auc(pages):
    binary = pages["binary"]
    legend = [t.text or "" for t in _texts(binary["plots"]["ROC curve"], "legend")]
    [auc] = [float(m.group(1)) for text in legend if (m := re.search(r"AUC (\d\.\d+)", text))]
    assert auc == pytest.approx(binary["metrics"]["roc_auc"], abs=2e-3)  # the card's, same rows
    three = [t.text or "" for t in _texts(pages["three"]["plots"]["ROC curve"], "legend")]
    assert sorted(text.split(":")[0] for text in three) == ["high", "low", "mid"]
    assert all(re.search(r"AUC \d\.\d{3}$", text) for text in three), three


def test_auc_of_a_perfect_an_inverted_and_a_chance_curve():
    assert plots.auc([0.0, 0.0, 1.0], [0.0, 1.0, 1.0]) == 1.0
    assert plots.auc([0.0, 1.0, 1.0], [0.0, 0.0, 1.0]) == 0.0
    assert plots.auc([0.0, 1.0], [0.0, 1.0]) == 0.5


# -- scales: pure functions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lo", "hi", "floor", "ceiling", "ticks"),
    [
        (0.0, 1.55, None, 1.0, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (0.41, 0.46, None, 1.0, [0.41, 0.42, 0.43, 0.44, 0.45, 0.46]),
        (0.0, 1.0, 0.0, 1.0, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (-50.0, 0.45, None, 1.0, [-50.0, -40.0, -30.0, -20.0, -10.0, 0.0]),
        (3.0, 97.0, 0.0, None, [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]),
    ],
)
def test_linear_scales_end_on_round_ticks_within_bounds(lo, hi, floor, ceiling, ticks):
    count = 6 if (lo, hi) == (0.0, 1.0) else scales.TICKS
    scale = scales.linear(lo, hi, floor=floor, ceiling=ceiling, count=count)
    assert list(scale.ticks) == pytest.approx(ticks)
    assert scale.lo <= max(lo, floor if floor is not None else lo)
    assert scale.hi >= min(hi, ceiling if ceiling is not None else hi)


def test_fit_picks_log_for_positive_skew_clip_for_outliers_and_plain_otherwise():
    rng = np.random.default_rng(0)
    lognormal = list(np.exp(rng.normal(0, 1.5, 2000)))
    assert scales.fit(lognormal).log
    with_outliers = [*rng.normal(0, 1, 2000), 400.0, -300.0]
    clipped = scales.fit(with_outliers)
    assert clipped.clipped and not clipped.log and clipped.hi < 400
    assert not scales.fit(lognormal, log=False).log  # residuals around a 0 line: never log
    plain = scales.fit(list(rng.normal(0, 1, 2000)))
    assert not plain.log and not plain.clipped
    assert (
        scales.describe(clipped, outside=2)
        == "clipped to the 1st–99th percentile, 2 points outside"
    )
    assert scales.describe(plain) is None


@pytest.mark.parametrize(
    ("ticks", "labels"),
    [
        ((0.0, 0.2, 0.4), ["0", "0.2", "0.4"]),
        ((0.94, 0.96, 0.98, 1.0), ["0.94", "0.96", "0.98", "1.00"]),
        ((0.0, 100000.0, 200000.0), ["0", "1e5", "2e5"]),
        ((120000.0, 140000.0), ["1.2e5", "1.4e5"]),
        ((-60.0, -40.0), ["-60", "-40"]),
    ],
)
def test_tick_labels_are_short_and_exact(ticks, labels):
    scale = scales.Scale(ticks[0], ticks[-1], ticks)
    assert [scale.label(t) for t in ticks] == labels
