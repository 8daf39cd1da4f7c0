"""Traffic since start, read from the same Prometheus exposition ``GET /metrics`` serves.

Requests and their latencies carry a ``model`` label (the model a request's path named, or
none for /health, /metrics and unknown paths), so one model's traffic is the samples with its
label and the whole service's is every sample.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from scoring.traffic.figures import quantile

REQUESTS = "dropscore_requests"
LATENCY = "dropscore_request_seconds"
FILES = "dropscore_files"


def traffic(exposition: bytes, model: str | None = None) -> dict[str, Any]:
    """Sum requests and errors, estimate p50/p99 latency, and read the files-by-state gauge.

    With ``model``, only that model's requests and files; without, the whole service's.
    """
    requests = errors = 0.0
    buckets: dict[float, float] = defaultdict(float)
    files: dict[str, int] = {}
    for family in text_string_to_metric_families(exposition.decode("utf-8")):
        for sample in family.samples:
            if model is not None and sample.labels.get("model") != model:
                continue
            if sample.name == f"{REQUESTS}_total":
                requests += sample.value
                if int(sample.labels.get("status", "0")) >= 400:
                    errors += sample.value
            elif sample.name == f"{LATENCY}_bucket":
                buckets[float(sample.labels["le"])] += sample.value
            elif sample.name == FILES:
                state = sample.labels["state"]  # summed over the models
                files[state] = files.get(state, 0) + int(sample.value)
    ordered = sorted(buckets.items())
    return {
        "requests": int(requests),
        "errors": int(errors),
        "p50_ms": _ms(quantile(ordered, 0.50)),
        "p99_ms": _ms(quantile(ordered, 0.99)),
        "files": files,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)
