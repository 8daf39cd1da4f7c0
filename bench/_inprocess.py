"""In-process figures for ``bench/predict.py``: µs per call of each layer of a prediction."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._servers import BODY, X_TEST


def per_call_us(fn: Callable[[], Any], budget: float) -> tuple[float, float]:
    """Best and median µs per call over 5 repeats sized to ``budget`` seconds in all."""
    fn()
    n, t = 1, 0.0
    while n < 1_000_000:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        t = time.perf_counter() - t0
        if t >= budget / 25:
            break
        n *= 4
    reps = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        reps.append((time.perf_counter() - t0) / n * 1e6)
    return min(reps), statistics.median(reps)


def in_process(env: dict[str, str], model_path: Path, version: str, budget: float) -> list[str]:
    """µs per call of each layer, one BLAS thread like a worker: what a request spends where."""
    # Like `dropscore api`: prometheus_client picks its multiprocess values at import.
    metrics_dir = Path(env["TMPDIR"]) / "inproc-metrics"
    metrics_dir.mkdir(exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

    import numpy as np
    from threadpoolctl import threadpool_limits

    from bench.predict_baseline import make_app
    from ingest.state.db import StateDB
    from scoring.api.app import create_app
    from scoring.inference.rows import positional_to_array
    from scoring.lifecycle.predictor import LoadedModel
    from scoring.lifecycle.registry import Registry, load_trusted
    from scoring.settings import load_settings

    settings = load_settings(env=env)
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    pipeline = load_trusted(model_path)
    model = LoadedModel.build(version, pipeline, registry.card(int(version)))
    row = positional_to_array(list(X_TEST), model.schema)
    x = np.array(X_TEST).reshape(1, -1)
    expected = float(pipeline.predict(x)[0])
    got = model.predict_row(row)["prediction"]
    lines = [
        f"model v{version}: {model.card.get('estimator')}, {len(model.schema.features)} features;"
        f" fast path {'ON' if model.fast is not None else 'OFF'};"
        f" prediction {got:.6f} (pipeline {expected:.6f})"
    ]

    base_app = make_app(model_path)
    ds_app = create_app(settings)
    base_client, ds_client = base_app.test_client(), ds_app.test_client()
    headers = {"Content-Type": "application/json"}

    def via(client: Any) -> Callable[[], Any]:
        def call() -> Any:
            resp = client.post("/predict", data=BODY, headers=headers)
            assert resp.status_code == 200, resp.get_data(as_text=True)
            return resp

        return call

    cases: list[tuple[str, Callable[[], Any]]] = [
        ("pipeline.predict(np.array(X).reshape(1,-1))  [baseline core]",
         lambda: pipeline.predict(np.array(X_TEST).reshape(1, -1))),
        ("LoadedModel.predict_row(row)                 [dropscore core]",
         lambda: model.predict_row(row)),
        ("positional_to_array(X) + predict_row          [dropscore validate+predict]",
         lambda: model.predict_row(positional_to_array(X_TEST, model.schema))),
        ("Flask test client POST /predict, baseline app", via(base_client)),
        ("Flask test client POST /predict, dropscore app", via(ds_client)),
    ]  # fmt: skip
    with threadpool_limits(1):
        for label, fn in cases:
            best, median = per_call_us(fn, budget)
            lines.append(f"{label:<76} {best:9.1f} µs best  {median:9.1f} µs median")
    ds_app.extensions["dropscore"].champion.stop()
    return lines
