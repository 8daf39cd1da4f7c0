"""From the built wheel to a running service, with nothing from the checkout.

The wheel is built from the repository (``pip wheel --no-deps``, no build isolation: nothing is
downloaded), installed with ``--no-deps`` into a new virtual environment, and the dependencies
are made visible by a ``.pth`` line naming this environment's site-packages: ``.pth`` files
found there are not processed, so this checkout's editable install does not leak in. Then, in
a folder outside the checkout, ``dropscore init`` and ``dropscore serve`` run as a user would,
and the API, the dashboard, its static files and the Swagger UI answer.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import requests

from .conftest import ROOT, SAMPLE, free_port
from .test_e2e_serve import NAMED, Server

pytestmark = pytest.mark.slow

NOT_SOURCE = (".venv", ".git", "build", "data", "*.egg-info", "__pycache__", ".*_cache", ".hypo*")


def run(*args: str | Path, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=600, check=False, **kw
    )
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A new virtual environment with the built wheel in it; return its bin/ folder."""
    base = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools builds in the source folder, and a build/ left there from
    # an earlier build would ship files the checkout no longer has.
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
        "--wheel-dir", base / "dist", source,
    )  # fmt: skip
    (wheel,) = (base / "dist").glob("dropscore-*.whl")
    venv = base / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    pip = (sys.executable, "-m", "pip", "--python", python)
    run(*pip, "install", "--no-deps", "--no-index", wheel)
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = Path(run(python, "-c", where).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
    (purelib / "dependencies.pth").write_text("\n".join(sorted(ours)) + "\n", encoding="utf-8")
    return venv / "bin"


class Installed(Server):
    """`dropscore serve` started by the installed console script, not this checkout's python."""

    def __init__(self, script: Path, cwd: Path, port: int, log: Path) -> None:
        self.url, self.log = f"http://127.0.0.1:{port}", log
        self._fh = open(log, "w")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(
            [script, "serve"],
            cwd=cwd,
            env=env_for(DROPSCORE__SERVER__PORT=str(port)),
            stdout=self._fh,
            stderr=subprocess.STDOUT,
        )


def env_for(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DROPSCORE", "PYTHON"))}
    return {**env, **extra}


def test_the_installed_package_is_the_wheel_not_the_checkout(installed, tmp_path):
    where = run(
        installed / "python", "-c", "import scoring; print(scoring.__file__)",
        cwd=tmp_path, env=env_for(),
    ).stdout.strip()  # fmt: skip
    assert Path(where).is_relative_to(installed.parent), where
    assert not Path(where).is_relative_to(ROOT)


def test_init_then_serve_from_the_wheel_outside_the_checkout(installed, tmp_path):
    folder = tmp_path / "service"
    folder.mkdir()
    sample = tmp_path / "diabetes.csv"
    sample.write_bytes(SAMPLE.read_bytes())
    init = run(
        installed / "dropscore", "init", "sugar", "--target", "target", sample,
        cwd=folder, env=env_for(),
    )  # fmt: skip
    assert "took diabetes.csv as the first training drop" in init.stdout
    assert (folder / "settings.toml").read_text(encoding="utf-8").startswith("# dropscore settings")

    port = free_port()
    server = Installed(installed / "dropscore", folder, port, tmp_path / "serve.log")
    try:
        assert server.ready(timeout=240)["models"] == {"sugar": "1"}
        predicted = requests.post(
            f"{server.url}/models/sugar/predict", json={"features": NAMED}, timeout=10
        )
        assert predicted.status_code == 200, predicted.text
        overview = requests.get(server.url + "/", timeout=30)
        assert overview.status_code == 200 and "<html" in overview.text.lower()
        docs = requests.get(server.url + "/docs", timeout=10)
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        for asset in ("/ui/static/style.css", "/docs/assets/swagger-ui.css"):
            answer = requests.get(server.url + asset, timeout=10)
            assert answer.status_code == 200 and answer.content, asset
    finally:
        assert server.stop() == 0, server.log.read_text()
