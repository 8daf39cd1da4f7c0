"""The bare peer for ``bench/predict.py``: the Flask tutorial app, run as the tutorial ships it.

It does only ``np.array(request.json["X_test"]).reshape(1, -1)`` and ``model.predict`` on the
pipeline ``dropscore train`` wrote, loaded at import like the tutorial's ``app.py``, and the
bench starts it with the tutorial's own command, ``gunicorn -w 2 app:app`` (sync workers and
every other gunicorn default; only the port is given), not with dropscore's gunicorn settings:
the peer as its users run it. The model's path comes from ``BASELINE_MODEL``.

    BASELINE_MODEL=DATA/models/1/model.skops gunicorn -w 2 -b 127.0.0.1:8001 \\
        bench.predict_baseline:app
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

MODEL_VARIABLE = "BASELINE_MODEL"


def make_app(model_path: str | Path) -> Any:
    """Build the minimal app: one POST /predict, plus GET /ready for the harness."""
    import numpy as np
    from flask import Flask, jsonify, request

    from scoring.lifecycle.registry import load_trusted

    pipeline = load_trusted(Path(model_path))
    app = Flask("baseline")

    @app.post("/predict")
    def predict() -> Any:
        X = np.array(request.json["X_test"]).reshape(1, -1)
        return jsonify({"prediction": float(pipeline.predict(X)[0])})

    @app.get("/ready")
    def ready() -> Any:
        return jsonify({"status": "ready"})

    return app


def __getattr__(name: str) -> Any:
    """Build ``app`` when gunicorn asks for it (``bench.predict_baseline:app``), not at import."""
    if name == "app":
        return make_app(os.environ[MODEL_VARIABLE])
    raise AttributeError(name)
