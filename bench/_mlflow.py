"""MLflow's server for ``bench/protocols.py``: its virtualenv, the model in its format, the process.

The virtualenv (``bench/out/mlflow-venv``, git-ignored) is built once with the full ``mlflow``
package from PyPI and the scikit-learn and skops versions of dropscore's environment; a stamp
file holds what was asked for, so a changed pin installs again. The model: the pipeline dropscore
trained and registered is loaded from its skops file inside that virtualenv, cloned, fitted
again on the same rows (as a DataFrame, the way MLflow users fit) and saved with
``mlflow.sklearn.save_model`` (with a signature inferred from the training frame, as MLflow's
docs ask; MLflow 3 writes skops). The harness checks that both servers answer the same number.
"""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from bench._servers import HOST, Server, log

OUT = Path(__file__).resolve().parent / "out"
VENV = OUT / "mlflow-venv"
STAMP = VENV / ".bench-requirements"
INSTALL_TIMEOUT = 1800.0  # seconds; a cold install of mlflow on a loaded 2-core machine is slow
ONE_BLAS_THREAD = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}

# Runs inside the MLflow virtualenv: argv = skops file, output folder, training rows, features.
# dropscore fits on arrays (columns by position); an MLflow user fits on a DataFrame, and MLflow
# hands the model a DataFrame, which a position-fitted pipeline answers with a UserWarning on
# every request. So: dropscore's pipeline cloned (same steps and hyperparameters), its
# ColumnTransformer selecting the same columns by name, fitted on the same rows as a DataFrame.
# Trusting every type in the skops file is safe here only because this run wrote it.
EXPORT = """
import sys, json, numbers
import pandas as pd, skops.io as sio, mlflow.sklearn
from mlflow.models import infer_signature
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
src, out, csv, features = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
pipeline = clone(sio.load(src, trusted=sio.get_untrusted_types(file=src)))
for _, step in pipeline.steps:
    if isinstance(step, ColumnTransformer):
        step.set_params(transformers=[
            (name, t, [features[i] if isinstance(i, numbers.Integral) else i for i in cols])
            for name, t, cols in step.transformers])
rows = pd.read_csv(csv)
X, y = rows[features].astype("float64"), rows.drop(columns=features).iloc[:, 0]
pipeline.fit(X, y)
trusted = sio.get_untrusted_types(data=sio.dumps(pipeline))  # MLflow 3 saves with skops too
mlflow.sklearn.save_model(pipeline, out, signature=infer_signature(X, pipeline.predict(X)),
                          skops_trusted_types=trusted)
"""


def requirements() -> list[str]:
    """Full mlflow plus dropscore's scikit-learn and skops, so the skops file loads as saved."""
    return [
        "mlflow",
        f"scikit-learn=={metadata.version('scikit-learn')}",
        f"skops=={metadata.version('skops')}",
    ]


def python() -> Path:
    """The MLflow virtualenv's interpreter: every MLflow step runs there, never in ours."""
    return VENV / "bin" / "python"


def ensure_venv() -> Path:
    """Build the MLflow virtualenv unless the cached one already holds these requirements."""
    wanted = "\n".join(requirements())
    if python().exists() and STAMP.exists() and STAMP.read_text() == wanted:
        return python()
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log(f"building {VENV} with {', '.join(requirements())} (once; cached) ...")
    if not python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=600)
    proc = subprocess.run(
        [str(python()), "-m", "pip", "install", "--quiet", *requirements()],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"could not install mlflow into {VENV}:\n{proc.stdout}\n{proc.stderr}")
    STAMP.write_text(wanted)
    log(f"MLflow virtualenv ready in {time.monotonic() - started:.0f} s")
    return python()


def versions() -> str:
    """The versions that matter on the MLflow side, for the report."""
    code = (
        "import importlib.metadata as m, sys; print(sys.version.split()[0], *(f'{p} '"
        " + m.version(p) for p in ('mlflow', 'scikit-learn', 'numpy', 'pandas', 'uvicorn')),"
        " sep=', ')"
    )
    out = subprocess.run([str(python()), "-c", code], capture_output=True, text=True, timeout=120)
    return out.stdout.strip() or out.stderr.strip()


def export(model_file: Path, out: Path, csv: Path, features: list[str]) -> None:
    """Save dropscore's fitted pipeline as an MLflow sklearn model folder."""
    proc = subprocess.run(
        [str(python()), "-c", EXPORT, str(model_file), str(out), str(csv), json.dumps(features)],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"mlflow.sklearn.save_model failed:\n{proc.stdout}\n{proc.stderr}")


class MlflowServer(Server):
    """``mlflow models serve --env-manager local``: ready when ``GET /ping`` answers 200."""

    ready_path = "/ping"  # MLflow's health route (it has no /ready)
    ready_interval = 0.5


def server(model_dir: Path, workers: int, env: dict[str, str], cwd: Path, logs: Path) -> Server:
    """MLflow's scoring server on the exported model, its venv first on PATH, one BLAS thread."""
    bin_dir = str(VENV / "bin")
    cmd = [
        str(VENV / "bin" / "mlflow"), "models", "serve", "-m", str(model_dir),
        "--env-manager", "local", "-p", "{port}", "--host", "127.0.0.1", "-w", str(workers),
    ]  # fmt: skip
    menv = {k: v for k, v in env.items() if not k.startswith(("DROPSCORE", "VIRTUAL_ENV"))}
    menv.update(ONE_BLAS_THREAD)
    menv["PATH"] = f"{bin_dir}:{env.get('PATH', '')}"
    menv["VIRTUAL_ENV"] = str(VENV)
    return MlflowServer("mlflow", cmd, menv, cwd, logs)


def ping(port: int, path: str, count: int = 30) -> float:
    """p50 ms of GETs on one keep-alive connection: shows a server's fixed per-answer stall."""
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    latencies = []
    for _ in range(count):
        t = time.perf_counter()
        conn.request("GET", path)
        conn.getresponse().read()
        latencies.append((time.perf_counter() - t) * 1000)
    conn.close()
    return statistics.median(latencies)


def same_prediction(ours: int, theirs: int, case: tuple) -> None:
    """Both servers must answer the same number for the same row, or the race means nothing."""
    answers = []
    for port in (ours, theirs):
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        conn.request("POST", case[0], body=case[1], headers=case[2])
        response = conn.getresponse()
        body = response.read()
        conn.close()
        if response.status != 200:
            raise SystemExit(f"port {port} answered {response.status}: {body[:300]!r}")
        answers.append(float(json.loads(body)["predictions"][0]))
    if abs(answers[0] - answers[1]) > 1e-6 * max(1.0, abs(answers[0])):
        raise SystemExit(f"dropscore predicts {answers[0]}, MLflow {answers[1]}: not one model")
