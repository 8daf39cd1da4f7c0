"""The bare baseline for ``bench/predict.py``: the tutorial Flask app under dropscore's gunicorn.

It does only ``np.array(request.json["X_test"]).reshape(1, -1)`` and ``pipeline.predict`` on the
pipeline that ``dropscore train`` wrote, and it runs under the gunicorn options of
``scoring.service.server.gunicorn_options`` (imported, not copied: gthread, same threads,
keepalive, timeouts, one BLAS thread per worker after fork), so the only difference the
benchmark sees is the application (and dropscore's Prometheus clean-up on worker exit).

    python -m bench.predict_baseline --model DATA/models/1/model.skops --bind 127.0.0.1:8001
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def make_app(model_path: str | Path) -> Any:
    """The minimal app: one POST /predict, plus GET /ready for the harness."""
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


def serve(model_path: str, bind: str, workers: int, threads: int) -> None:
    """Serve the minimal app under dropscore's own gunicorn options until stopped."""
    from scoring.service.server import gunicorn_options, run_gunicorn

    # make_app runs after fork, in each worker, like dropscore's factory.
    run_gunicorn(lambda: make_app(model_path), gunicorn_options(bind, workers, threads))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="path to model.skops")
    parser.add_argument("--bind", default="127.0.0.1:8001")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    serve(args.model, args.bind, args.workers, args.threads)


if __name__ == "__main__":
    main()
