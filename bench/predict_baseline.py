"""The bare baseline for ``bench/predict.py``: the tutorial Flask app under dropscore's gunicorn.

It does only ``np.array(request.json["X_test"]).reshape(1, -1)`` and ``pipeline.predict`` on the
pipeline that ``dropscore train`` wrote, and it runs under exactly the gunicorn options of
``service.server.serve_gunicorn`` (gthread, same threads, keepalive, timeouts, one BLAS thread
per worker after fork), so the only difference the benchmark sees is the application.

    python -m bench.predict_baseline --model DATA/models/1/model.skops --bind 127.0.0.1:8001
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

if not __package__:
    # Run as a file, this folder would come first on sys.path and its modules (bench/ingest.py)
    # would shadow the project's top-level packages.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    sys.path.insert(0, str(ROOT))


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


def gunicorn_options(bind: str, workers: int, threads: int) -> dict[str, Any]:
    """The options ``service.server.serve_gunicorn`` sets, minus its Prometheus bookkeeping."""
    return {
        "bind": bind,
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 300,
        "graceful_timeout": 30,
        "keepalive": 5,
        "preload_app": False,
        "accesslog": None,
        "post_worker_init": _one_blas_thread,
    }


def _one_blas_thread(_worker: Any) -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def serve(model_path: str, bind: str, workers: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    class Application(BaseApplication):
        def load_config(self) -> None:
            for key, value in gunicorn_options(bind, workers, threads).items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return make_app(model_path)  # after fork, in each worker, like dropscore's factory

    Application().run()


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
