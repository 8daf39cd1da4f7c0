"""`dropscore serve` (and `api`) on a port in use: one line naming it, exit 1, nothing started."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from .conftest import ROOT, SAMPLE


@pytest.fixture
def other_server() -> Iterator[int]:
    """A real HTTP server holding a port, as another program (or dropscore) would."""
    server = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("command", "how"), [("serve", "option"), ("serve", "environment"), ("api", "option")]
)
def test_a_port_in_use_stops_before_anything_starts(other_server, tmp_path, command, how):
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPSCORE")}
    env.update(
        DROPSCORE_SETTINGS=str(ROOT / "settings.toml"),
        DROPSCORE__PATHS__DATA_DIR=str(data),
        DROPSCORE__SERVER__HOST="127.0.0.1",
        DROPSCORE__TRAINING__BOOTSTRAP_DATA=str(SAMPLE),
    )
    args = [command]
    if how == "option":
        args += ["--port", str(other_server)]
    else:
        env["DROPSCORE__SERVER__PORT"] = str(other_server)
    done = subprocess.run(
        [sys.executable, "-m", "scoring", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    said = [line for line in done.stderr.splitlines() if not line.startswith("{")]  # JSON log
    assert said == [
        f"Error: port {other_server} on 127.0.0.1 is in use (by another dropscore?); choose"
        " another with --port or DROPSCORE__SERVER__PORT"
    ]
    if command == "serve":  # nothing ran: no folder lock, no ledger, no training, no watcher
        assert not data.exists()
