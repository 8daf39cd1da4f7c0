"""A real S3 endpoint for tests and benches: one ``moto_server`` process on 127.0.0.1.

moto's server speaks the S3 REST protocol over HTTP, so the code under test reaches it exactly
as it reaches AWS or MinIO (pyarrow's S3 client, signed requests, ETags, listings); only the
endpoint differs. One server per test session (``tests/_s3.py``) or per bench run: it starts in
about a second and each user takes a fresh bucket or prefix on it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scoring.testing.ports import HOST, free_port
from scoring.testing.waiting import wait_for

# Dummy credentials: moto accepts any, the client must still sign its requests with some.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "dropscore-test",
    "AWS_SECRET_ACCESS_KEY": "dropscore-test-secret",
    "AWS_REGION": "us-east-1",
}


@dataclass(frozen=True)
class S3Endpoint:
    """A running S3 endpoint and a bucket on it, with the environment that reaches it."""

    endpoint: str  # http://127.0.0.1:PORT
    bucket: str
    env: dict[str, str]  # the dummy AWS_* credentials

    def url(self, prefix: str = "") -> str:
        """Name a prefix of the bucket as ``[storage] url`` spells it."""
        return f"s3://{self.bucket}/{prefix}".rstrip("/")

    def fresh_prefix(self, label: str = "t") -> str:
        """Return a prefix no other user of this bucket has, so tests never see each other."""
        return f"{label}-{uuid.uuid4().hex[:12]}"

    def settings(self, prefix: str) -> dict[str, str]:
        """The ``[storage]`` section that puts a service's files under ``prefix`` of the bucket."""
        return {"url": self.url(prefix), "endpoint_url": self.endpoint, "region": "us-east-1"}

    def process_env(self, prefix: str) -> dict[str, str]:
        """The environment variables that point a ``dropscore`` process at ``prefix``."""
        return {
            **self.env,
            "DROPSCORE__STORAGE__URL": self.url(prefix),
            "DROPSCORE__STORAGE__ENDPOINT_URL": self.endpoint,
            "DROPSCORE__STORAGE__REGION": "us-east-1",
        }


def _moto_server() -> str:
    """Find the moto_server script beside this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).with_name("moto_server")
    found = str(beside) if beside.exists() else shutil.which("moto_server")
    if found is None:
        raise RuntimeError("moto_server not found: pip install 'moto[server]' (the test extra)")
    return found


@contextmanager
def moto_endpoint(log: Path, bucket: str | None = None) -> Iterator[S3Endpoint]:
    """Run one moto_server on a free port with a fresh bucket; stop it on the way out."""
    import pyarrow.fs as pafs

    port = free_port()
    endpoint = f"http://{HOST}:{port}"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [_moto_server(), "-H", HOST, "-p", str(port)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for(lambda: _answers(endpoint, proc), 60, 0.1, f"moto_server on {endpoint}")
        name = bucket or f"dropscore-{uuid.uuid4().hex[:12]}"
        maker = pafs.S3FileSystem(
            access_key=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            secret_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region=CREDENTIALS["AWS_REGION"],
            scheme="http",
            endpoint_override=f"{HOST}:{port}",
            allow_bucket_creation=True,
        )
        maker.create_dir(name)
        yield S3Endpoint(endpoint, name, dict(CREDENTIALS))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def hosted_moto(folder: Path) -> Iterator[dict[str, Any]]:
    """Run the session's moto_server for its other processes; yield how they reach it."""
    with moto_endpoint(folder / "moto_server.log") as endpoint:
        yield asdict(endpoint)  # S3Endpoint(**info) again in each of them


def _answers(endpoint: str, proc: subprocess.Popen[bytes]) -> bool:
    """Tell whether the server answers HTTP yet; raise when it exited instead."""
    import urllib.error
    import urllib.request

    if proc.poll() is not None:
        raise RuntimeError(f"moto_server exited with {proc.returncode}")
    try:
        with urllib.request.urlopen(endpoint + "/moto-api/", timeout=5):
            return True
    except urllib.error.HTTPError:
        return True  # it answered, with an error: it is up
    except OSError:
        return False
