"""What the drift page shows: the timeline, one record's features as histograms, realized metrics.

``gather`` reads through the same functions the JSON API answers with (``DriftStore.latest``
and ``windows.summary`` as ``GET /drift``; the ``GET /drift/<id>``, ``GET /files/<id>/drift``
and ``GET /performance`` views themselves); everything else here is pure shaping of what they
return, tested directly. The page is bounded whatever the history: the newest ``TIMELINE``
records, ``FEATURES_SHOWN`` features' histograms a page.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from itertools import pairwise
from typing import TYPE_CHECKING, Any, TypeGuard

from scoring.api.pages import svg
from scoring.api.pages.plots import METRIC_RANGE
from scoring.monitoring.accumulate import SHOWN_CATEGORIES
from scoring.monitoring.profile import (
    PROFILE_FILE,
    CategoricalProfile,
    ColumnProfile,
    NumericProfile,
    Profile,
)
from scoring.monitoring.records_protocol import WINDOW
from scoring.monitoring.report import DRIFTED, NOT_COMPARED, STABLE, ColumnDrift

if TYPE_CHECKING:
    from scoring.api.context import Services
    from scoring.models.model import Model

TIMELINE = 100  # records on the page, newest first
FEATURES_SHOWN = 12  # features' histograms a page; the rest on the next pages
NAMED = 5  # drifted features named in a timeline row before "and N more"
DAYS = 90  # realized-metric days on the page (plot and table), the newest

# A verdict in the words people read on a badge, and the badge's colour class (style.css).
WORDS: Mapping[str | None, str] = {
    DRIFTED: "drifted",
    STABLE: "ok",
    NOT_COMPARED: "not compared",
    None: "not compared",
}
BADGE: Mapping[str | None, str] = {
    DRIFTED: "bad",
    STABLE: "ok",
    NOT_COMPARED: "skipped",
    None: "skipped",
}


def gather(
    s: Services, record_id: int | None, file_id: int | None, offset: int
) -> dict[str, Any]:
    """Gather the timeline, the chosen record (by id, by file, else the newest) and performance.

    An unknown record or a file without one is the API's own 404, with its reason.
    """
    from scoring.api.drift import file_drift, show_record
    from scoring.api.performance import show_performance
    from scoring.monitoring.windows import summary

    m = s.model()
    records = m.drift.latest(TIMELINE)
    chosen: dict[str, Any] | None
    if record_id is not None:
        chosen = show_record(record_id).get_json()
    elif file_id is not None:
        chosen = file_drift(file_id).get_json()
    else:
        chosen = records[0].to_dict() if records else None
    shown = None
    if chosen is not None:
        version = int(chosen["model_version"])
        shown = record_view(chosen, lambda: stored_profile(m, version), offset)
    return {
        "timeline": [entry(summary(r)) for r in records],
        "timeline_limit": TIMELINE,
        "chosen": shown,
        "performance": performance_view(show_performance().get_json()["versions"]),
    }


def stored_profile(m: Model, version: int) -> Profile | None:
    """Read the version's stored profile, or None: a page view never makes one from the lake
    (``monitoring.reference`` does that when a drop is scored, where the cost belongs)."""
    try:
        if m.artifacts.has(version, PROFILE_FILE):
            return Profile.from_dict(m.artifacts.read_json(version, PROFILE_FILE))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable or an older shape: the record's own histogram still shows
    return None


def entry(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Shape one timeline entry (``GET /drift``'s): where the rows came from, the badge."""
    drifted = list(summary.get("drifted_features") or [])
    more = len(drifted) - NAMED
    return {
        **summary,
        "where": where(summary),
        "words": WORDS.get(summary["verdict"], summary["verdict"]),
        "badge": BADGE.get(summary["verdict"], "skipped"),
        "named": drifted[:NAMED],
        "more": max(more, 0),
    }


def where(record: Mapping[str, Any]) -> str:
    """Say where a record's rows came from: a file of the ledger, a live window, an upload…"""
    source, ref = record["source"], record.get("ref")
    if record.get("file_id") is not None:
        return f"file {record['file_id']}"
    if source == WINDOW:
        return "live window" + (f" {ref}" if ref else "")
    named = {"score_file": "upload", "cli": "dropscore score", "job": "job"}.get(source, source)
    return named + (f" {ref}" if ref else "")


def ordered(columns: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Order a report's columns as the report does: drifted first, the most shifted first."""
    return sorted((dict(c) for c in columns), key=lambda c: ColumnDrift(**c).sort_key())


def record_view(
    record: Mapping[str, Any],
    profile: Callable[[], Profile | None],
    offset: int,
    limit: int = FEATURES_SHOWN,
) -> dict[str, Any]:
    """Shape one drift record (the API's JSON) for the page: one page of features, drifted first.

    ``offset`` past the last feature shows the last page; the predictions' column is shown on
    every page (it is one column, and says what the model made of the rows). ``profile`` is
    called only when a shown column has no histogram of its own (it was not compared): a
    profile holds its reservoir sample, megabytes for a wide model, and the record's
    histograms already carry the reference's counts.
    """
    columns = ordered(record.get("features") or [])
    last = max(len(columns) - 1, 0)
    start = min(offset, last - last % limit) if columns else 0
    page = columns[start : start + limit]
    read: list[Profile | None] = []

    def reference(column: Mapping[str, Any], prediction: bool = False) -> ColumnProfile | None:
        if column.get("histogram"):
            return None
        if not read:
            read.append(profile())
        found = read[0]
        if found is None:
            return None
        return found.prediction if prediction else found.features.get(column["name"])

    prediction = record.get("prediction")
    predicted = None
    if prediction is not None:
        predicted = column_view(prediction, reference(prediction, prediction=True))
    return {
        **{k: v for k, v in record.items() if k not in ("features", "prediction")},
        "where": where(record),
        "words": WORDS.get(record["verdict"], record["verdict"]),
        "badge": BADGE.get(record["verdict"], "skipped"),
        "features": [column_view(c, reference(c)) for c in page],
        "prediction": predicted,
        "feature_count": len(columns),
        "drifted_count": sum(1 for c in columns if c.get("drifted")),
        "offset": start,
        "limit": limit,
        "more": start + limit < len(columns),
    }


def column_view(column: Mapping[str, Any], reference: ColumnProfile | None) -> dict[str, Any]:
    """Shape one column's comparison: its verdict, its statistics in words, its histogram."""
    drifted = column.get("drifted")
    verdict = NOT_COMPARED if drifted is None else (DRIFTED if drifted else STABLE)
    found = column.get("stats") or {}
    unseen = found.get("unseen_categories") or {}
    return {
        "name": column["name"],
        "kind": column["kind"],
        "verdict": verdict,
        "words": WORDS[verdict],
        "badge": BADGE[verdict],
        "why": list(column.get("why") or []),
        "reason": column.get("reason"),
        "stats": statistics(found),
        "unseen": [(str(name), int(count)) for name, count in unseen.items()],
        "unseen_rows": found.get("unseen_rows"),
        "plot": plot(column, reference),
    }


def statistics(found: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Write a column's statistics as (name, value) lines, those it has, in a fixed order."""
    lines: list[tuple[str, str]] = []

    def add(name: str, words: str | None) -> None:
        if words is not None:
            lines.append((name, words))

    def fmt(key: str, spec: str = ".4g") -> str:
        value = found.get(key)
        return format(value, spec) if _finite(value) else "—"

    add("PSI", _number(found.get("psi")))
    add("Jensen–Shannon distance", _number(found.get("js")))
    if _finite(found.get("ks_statistic")):
        add("KS statistic (p-value)", f"{fmt('ks_statistic')} (p = {fmt('ks_pvalue', '.2g')})")
    if _finite(found.get("wasserstein")):
        norm = _finite(found.get("wasserstein_norm"))
        per_sd = f" ({fmt('wasserstein_norm', '.3g')} reference SDs)" if norm else ""
        add("Wasserstein distance", fmt("wasserstein") + per_sd)
    if _finite(found.get("null_rate_current")):
        change = found.get("null_rate_change")
        moved = f" ({change * 100:+.1f} points)" if _finite(change) else ""
        rates = f"{fmt('null_rate_reference', '.1%')} → {fmt('null_rate_current', '.1%')}"
        add("null rate (reference → current)", rates + moved)
    if _finite(found.get("out_of_range_share")):
        add("outside the training range", f"{fmt('out_of_range_share', '.1%')} of values")
    if _finite(found.get("min_current")) or _finite(found.get("min_reference")):
        before = f"{fmt('min_reference')} … {fmt('max_reference')}"
        after = f"{fmt('min_current')} … {fmt('max_current')}"
        add("range (reference → current)", f"{before} → {after}")
    if _finite(found.get("unseen_share")):
        add("rows in unseen categories", fmt("unseen_share", ".1%"))
    return lines


def plot(column: Mapping[str, Any], reference: ColumnProfile | None) -> str | None:
    """Draw the column's reference vs current histogram; the reference alone when the column
    was not compared but its profile is stored; None when there is neither."""
    name = str(column["name"])
    drawn = column.get("histogram")
    if drawn:
        if "categories" in drawn:
            labels = [str(c) for c in drawn["categories"]]
        else:
            edges = [float(e) for e in drawn.get("edges", [])]
            lo, hi = _range(reference, column.get("stats") or {})
            labels = bin_labels(edges, lo, hi)
        return svg.histogram(
            labels, drawn["reference"], drawn["current"], title=f"{name}: reference vs current"
        )
    if reference is None:
        return None
    note = "reference only: " + (column.get("reason") or "not compared")
    if isinstance(reference, CategoricalProfile):
        top = sorted(reference.counts.items(), key=lambda x: (-x[1], x[0]))[:SHOWN_CATEGORIES]
        labels, counts = [k for k, _ in top], [v for _, v in top]
    else:
        labels = bin_labels(list(reference.edges), reference.minimum, reference.maximum)
        counts = list(reference.counts)
    return svg.histogram(labels, counts, [], title=f"{name}: reference", note=note)


def bin_labels(edges: Sequence[float], lo: float | None, hi: float | None) -> list[str]:
    """Name the bins the reference's inner edges make (a value on an edge is in the bin above),
    the outer ones closed by the reference's min and max when known."""
    if not edges:
        return ["all values"]
    cuts = [f"{e:.3g}" for e in edges]
    first = f"{lo:.3g} – {cuts[0]}" if lo is not None else f"< {cuts[0]}"
    last = f"{cuts[-1]} – {hi:.3g}" if hi is not None else f"≥ {cuts[-1]}"
    return [first, *[f"{a} – {b}" for a, b in pairwise(cuts)], last]


def performance_view(versions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Shape ``GET /performance``'s versions: the plot of the primary metric and its table,
    over the newest ``DAYS`` days."""
    metric = next((v["primary_metric"] for v in versions if v.get("primary_metric")), None)
    recent = set(sorted({d["day"] for v in versions for d in v["realized"]})[-DAYS:])
    versions = [
        {**v, "realized": [d for d in v["realized"] if d["day"] in recent]} for v in versions
    ]
    rows = [
        {
            "version": v["version"],
            "day": d["day"],
            "rows": d["rows"],
            "realized": d["metrics"].get(metric) if metric else None,
            "holdout": v["holdout"].get(metric) if metric else None,
        }
        for v in versions
        for d in v["realized"]
    ]
    drawn = metric is not None and bool(rows)
    return {
        "metric": metric,
        "rows": rows,
        "plot": _performance_plot(versions, metric) if drawn and metric else None,
    }


def _performance_plot(versions: Sequence[Mapping[str, Any]], metric: str) -> str:
    floor, ceiling = METRIC_RANGE.get(metric, (None, None))
    return svg.performance(versions, metric, floor=floor, ceiling=ceiling)


def _range(reference: ColumnProfile | None, found: Mapping[str, Any]) -> tuple[Any, Any]:
    """The reference's min and max: its profile's, else those the record copied from it."""
    if isinstance(reference, NumericProfile):
        return reference.minimum, reference.maximum
    lo, hi = found.get("min_reference"), found.get("max_reference")
    return (lo if _finite(lo) else None), (hi if _finite(hi) else None)


def _number(value: Any) -> str | None:
    return f"{value:.4g}" if _finite(value) else None


def _finite(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
