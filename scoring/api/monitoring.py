"""Prometheus metrics for one app: request counts and latencies, rows scored, and gauges read
at scrape time (model version, files by state, last retrain, drift), each with a ``model`` label.

The drift metrics are read from each model's drift records at scrape time, so every process
(the worker that scored a drop, any API replica) shows the same: the newest record's statistics
per feature (``dropscore_feature_drift``) and the drifted records by source
(``dropscore_drift_events_total``, which only grows: records are never removed).

Metrics live in a registry made per app, not in prometheus_client's global one, so tests can
build many apps. Under gunicorn (``PROMETHEUS_MULTIPROC_DIR`` set before the workers start)
counters are shared through prometheus_client's multiprocess files and a scrape sums them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from scoring.inference.dataplane import Scored

if TYPE_CHECKING:
    from scoring.monitoring.records_protocol import DriftRecords

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The statistics a drift record's features carry that ``dropscore_feature_drift`` exports.
DRIFT_METRICS = (
    "psi",
    "js",
    "ks_statistic",
    "ks_pvalue",
    "wasserstein",
    "null_rate_change",
    "out_of_range_share",
    "unseen_share",
)
PREDICTION_LABEL = "(prediction)"  # the predictions' row: no feature name has parentheses
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class Monitoring:
    """This app's Prometheus registry: request counters, latency and the gauges."""

    def __init__(self, gauges: Callable[[], dict[str, dict[str, Any]]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._gauges = gauges
        self.requests = Counter(
            "dropscore_requests",
            "HTTP requests by endpoint, status and model",
            ["endpoint", "method", "status", "model"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "dropscore_request_seconds",
            "HTTP request latency by endpoint and model",
            ["endpoint", "model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rows_scored = Counter(
            "dropscore_rows_scored",
            "rows scored, by path and model",
            ["path", "model"],
            registry=self.registry,
        )

    def observe(
        self, endpoint: str, method: str, status: int, seconds: float, model: str = ""
    ) -> None:
        """Count one answered request and record how long it took."""
        self.requests.labels(endpoint, method, str(status), model).inc()
        self.latency.labels(endpoint, model).observe(seconds)

    def count_rows(self, event: Scored) -> None:
        """Count a scoring's rows by route and model: the dataplane's first observer."""
        self.rows_scored.labels(event.protocol, event.model).inc(event.rows)

    def render(self) -> bytes:
        """Return the text exposition, summed over processes when under gunicorn."""
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
        else:
            registry = self.registry
        out = generate_latest(registry)
        scrape = CollectorRegistry()
        scrape.register(_StateCollector(self._gauges))
        return out + generate_latest(scrape)


class _StateCollector:
    """Gauges computed from the registry and ledger at scrape time: one truth, no drift."""

    def __init__(self, read: Callable[[], dict[str, dict[str, Any]]]) -> None:
        self._read = read  # model name → that model's gauges

    def collect(self) -> Iterator[GaugeMetricFamily]:
        by_model = self._read()
        version = GaugeMetricFamily(
            "dropscore_model_version", "champion version (0: none)", labels=["model"]
        )
        retrain = GaugeMetricFamily(
            "dropscore_last_retrain_timestamp_seconds",
            "when the newest model was trained",
            labels=["model"],
        )
        files = GaugeMetricFamily(
            "dropscore_files", "dropped files by ledger state", labels=["state", "model"]
        )
        for model, state in by_model.items():
            version.add_metric([model], float(state.get("model_version") or 0))
            retrain.add_metric([model], float(state.get("last_retrain_ts") or 0))
            for name, count in sorted((state.get("files") or {}).items()):
                files.add_metric([name, model], float(count))
        yield version
        yield retrain
        yield files
        yield from _drift_families(by_model)


def drift_gauges(records: DriftRecords) -> dict[str, Any]:
    """Read a model's newest drift record's statistics and its drifted records by source."""
    latest = records.latest(1)
    values: list[tuple[str, str, float]] = []
    if latest:
        report = latest[0].report
        columns = [*report["features"], *([report["prediction"]] if report["prediction"] else [])]
        for column in columns:
            name = PREDICTION_LABEL if column is report["prediction"] else column["name"]
            for metric in DRIFT_METRICS:
                value = column["stats"].get(metric)
                if isinstance(value, int | float):
                    values.append((name, metric, float(value)))
    return {"features": values, "events": records.drifted_by_source()}


def _drift_families(by_model: dict[str, dict[str, Any]]) -> Iterator[Any]:
    """The drift gauges and the drifted-records counter, from each model's ``drift`` entry."""
    gauge = GaugeMetricFamily(
        "dropscore_feature_drift",
        "each feature's drift statistic in the newest drift record (a drop, an upload, a window)",
        labels=["model", "feature", "metric"],
    )
    events = CounterMetricFamily(
        "dropscore_drift_events",
        "drift records whose verdict was drifted, by source",
        labels=["model", "source"],
    )
    for model, state in by_model.items():
        drift = state.get("drift") or {}
        for feature, metric, value in drift.get("features", ()):
            gauge.add_metric([model, feature, metric], value)
        for source, count in sorted(drift.get("events", {}).items()):
            events.add_metric([model, source], float(count))
    yield gauge
    yield events
