"""No 500 for anything a client sends: schemathesis against a real server, from /openapi.json.

A waitress server on 127.0.0.1 serves the real app over a temporary data folder with a trained
champion and API keys set. Schemathesis's own command line reads the server's /openapi.json
and tests every operation it lists, with the key and without it, with valid and invalid inputs
(its examples, coverage and fuzzing phases, positive and negative data); the checks are: no
server error, and a status code, content type, body and headers the spec documents. A new
endpoint is covered as soon as its view has an ``@operation`` note.
(The command line, not schemathesis's pytest plugin: the plugin breaks on pytest 9.2.)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ingest.state.db import StateDB

from .conftest import SAMPLE, make_settings, register_trained

pytestmark = pytest.mark.slow

KEY = "fuzz-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)


# Operations whose success path the run must reach (examples in the spec lead it there).
MUST_SUCCEED = (
    "predict.predict",
    "score.score_file",
    "runs.start_training",
    "models.show_model",
    "models.promote_model",
    "mlflow.invocations",
    "oip.infer",
    "kserve.predict",
)
REQUESTS = re.compile(
    r'^dropscore_requests_total\{endpoint="([^"]+)",method="[A-Z]+",model="[^"]*",'
    r'status="(\d+)"\} (\S+)$',
    re.M,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory, diabetes) -> Iterator[str]:
    """A real threaded server over a fresh data folder with a champion and a key."""
    from waitress import create_server

    from scoring.api.app import create_app, warm
    from scoring.lifecycle.registry import Registry
    from scoring.service.runtime import open_intake

    tmp = tmp_path_factory.mktemp("fuzz")
    config = make_settings(tmp, server={"api_keys": [KEY], "max_rows_per_request": 1000})
    registry = Registry(config.models_dir, StateDB.at(config.db_path))
    register_trained(config, registry, diabetes)
    register_trained(config, registry, diabetes.sample(200, random_state=1), promote=False)
    # Ledger rows to read (a normalized drop and a quarantined one) and a lake to retrain on.
    _, _, intake = open_intake(config)
    intake.take_copy(SAMPLE, "train")
    empty = tmp / "empty.csv"
    empty.write_text("")
    intake.take_copy(empty, "score")
    app = warm(create_app(config, registry=registry))  # as `dropscore serve` and `api` do
    httpd = create_server(app, host="127.0.0.1", port=0, threads=4, ident="dropscore")
    thread = threading.Thread(target=httpd.run, name="fuzz-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.effective_port}"
    finally:
        httpd.close()
        thread.join(timeout=10)


def answered(url: str) -> dict[str, set[int]]:
    """Read from the server's own metrics which statuses each endpoint answered."""
    text = requests.get(f"{url}/metrics", headers=AUTH, timeout=30).text
    seen: dict[str, set[int]] = {}
    for endpoint, status, count in REQUESTS.findall(text):
        if float(count) > 0:
            seen.setdefault(endpoint, set()).add(int(status))
    return seen


def operation_endpoints(spec_file: Path) -> set[str]:
    """Return the Flask endpoint of every operation (operationId, less a method suffix and the
    route number a view serving several routes adds)."""
    spec = json.loads(spec_file.read_text())
    return {
        re.sub(r"\.\d+$", "", op["operationId"].removesuffix(f".{method}"))
        for item in spec["paths"].values()
        for method, op in item.items()
    }


def schemathesis_run(url: str, examples: int, report: Path, *headers: str) -> None:
    """Run schemathesis over every operation of the served spec; fail with its report."""
    # Fetched with the key (the spec is not public when keys are set), then fuzzed as told.
    spec = requests.get(f"{url}/openapi.json", headers=AUTH, timeout=30)
    assert spec.status_code == 200, spec.text
    (report / "openapi.json").write_bytes(spec.content)
    args = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--no-color",
        "run",
        "openapi.json",
        "--url",
        url,
        "--checks",
        ",".join(CHECKS),
        "--phases",
        "examples,coverage,fuzzing",
        "--mode",
        "all",
        "--max-examples",
        str(examples),
        "--seed",
        "20261125",
        # One worker: with two, schemathesis's threads parse lambdas' source (ast.parse, via
        # hypothesis) at once, which CPython 3.11 can fail with "SystemError: AST constructor
        # recursion depth mismatch" (a schemathesis-side runtime error, not a server answer).
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "all",
        f"--report-dir={report}",
    ]
    for header in headers:
        args += ["--header", header]
    # cwd: schemathesis keeps a cache folder in the working directory.
    done = subprocess.run(
        args, cwd=report, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-5000:]


def test_no_server_error_with_key(server, tmp_path):
    schemathesis_run(server, 40, tmp_path, f"Authorization: Bearer {KEY}")
    # The run reached every operation, and the core of the main ones, not just their 4xx.
    seen = answered(server)
    assert not {s for s in seen.values() for s in s if s >= 500}, seen
    operations = operation_endpoints(tmp_path / "openapi.json")
    assert operations <= set(seen), operations - set(seen)
    for endpoint in MUST_SUCCEED:
        assert any(200 <= s < 300 for s in seen[endpoint]), (endpoint, seen[endpoint])


def test_no_server_error_without_key(server, tmp_path):
    schemathesis_run(server, 5, tmp_path)
