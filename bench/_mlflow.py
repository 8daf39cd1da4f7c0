"""MLflow's server for ``bench/protocols.py``: its virtualenv, the model in its format, the process.

The virtualenv (``bench/out/mlflow-venv``, git-ignored) is built once with the full ``mlflow``
package from PyPI and the scikit-learn and skops versions of dropscore's environment; a stamp
file holds what was asked for, so a changed pin installs again. The model is not retrained:
the pipeline dropscore trained and registered is loaded from its skops file inside that
virtualenv and re-saved with ``mlflow.sklearn.save_model`` (with a signature inferred from the
training frame, as MLflow's docs ask), so both servers hold the same fitted parameters, and
the harness checks that they answer the same number.
"""

from __future__ import annotations

import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from bench._servers import READY_TIMEOUT, Server, log, request

OUT = Path(__file__).resolve().parent / "out"
VENV = OUT / "mlflow-venv"
STAMP = VENV / ".bench-requirements"
INSTALL_TIMEOUT = 1800.0  # seconds; a cold install of mlflow on a loaded 2-core machine is slow
ONE_BLAS_THREAD = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}

# Runs inside the MLflow virtualenv: argv = skops file, output folder, training CSV, features.
# Trusting every type in the file is safe here only because this run wrote it moments ago.
EXPORT = """
import sys, json
import pandas as pd, skops.io as sio, mlflow.sklearn
from mlflow.models import infer_signature
src, out, csv, features = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
pipeline = sio.load(src, trusted=sio.get_untrusted_types(file=src))
X = pd.read_csv(csv)[features]
mlflow.sklearn.save_model(pipeline, out, signature=infer_signature(X, pipeline.predict(X)))
print(mlflow.__version__)
"""


def requirements() -> list[str]:
    """Full mlflow plus dropscore's scikit-learn and skops, so the skops file loads as saved."""
    return [
        "mlflow",
        f"scikit-learn=={metadata.version('scikit-learn')}",
        f"skops=={metadata.version('skops')}",
    ]


def python() -> Path:
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
    import json

    proc = subprocess.run(
        [str(python()), "-c", EXPORT, str(model_file), str(out), str(csv), json.dumps(features)],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"mlflow.sklearn.save_model failed:\n{proc.stdout}\n{proc.stderr}")


class MlflowServer(Server):
    """``mlflow models serve --env-manager local``: ready when ``GET /ping`` answers 200."""

    def wait_ready(self, headers: dict[str, str]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited before it was ready\n{self.log_tail()}")
            try:
                status, body = request(self.port, "GET", "/ping", None, headers, timeout=2)
                if status == 200:
                    return
                last = f"{status} {body[:200]!r}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} not ready after {READY_TIMEOUT:.0f}s ({last})")


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
