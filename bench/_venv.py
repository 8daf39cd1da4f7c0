"""A third-party tool a bench compares with, in its own cached virtualenv under ``bench/out``.

Built once with pip from the index this machine uses; a stamp file holds what was asked for, so
a changed requirement installs again, and nothing of it reaches dropscore's environment (the
tool's dependencies never meet ours). ``bench/_mlflow.py`` builds MLflow's the same way.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench._servers import log

OUT = Path(__file__).resolve().parent / "out"
INSTALL_TIMEOUT = 1800.0  # seconds; a cold install on a loaded 2-core machine is slow


def ensure(name: str, requirements: list[str]) -> Path:
    """Return ``bench/out/<name>-venv``'s interpreter, built with ``requirements`` if needed."""
    venv = OUT / f"{name}-venv"
    python = venv / "bin" / "python"
    stamp = venv / ".bench-requirements"
    wanted = "\n".join(requirements)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log(f"building {venv} with {', '.join(requirements)} (once; cached) ...")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=600)
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *requirements],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"could not install {name} into {venv}:\n{proc.stdout}\n{proc.stderr}")
    stamp.write_text(wanted)
    log(f"{name} virtualenv ready in {time.monotonic() - started:.0f} s")
    return python


def version(python: Path, package: str) -> str:
    """The installed version of ``package`` in that virtualenv, for the report."""
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120)
    return out.stdout.strip() or out.stderr.strip()
