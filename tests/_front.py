"""Real ``serve`` and ``api`` processes for the front's tests, and raw sockets to hold open."""

from __future__ import annotations

import resource
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from scoring.testing.checkout import ROW
from scoring.testing.ports import free_port
from scoring.testing.processes import contextmanager_for, process_env, wait_ready

MODES = ["serve", "api"]
PARTIAL = b"GET /health HTTP/1.1\r\nHost: x\r\n"  # a request's head without its blank line


@contextmanager
def started(mode: str, folder: Path, **env: str) -> Iterator[tuple[str, list]]:
    """Start ``serve``, or a worker and then ``api --workers 2``; yield the URL and processes."""
    port = free_port()
    environ = process_env(folder / "data", port, **env)
    with contextmanager_for(mode, environ, folder) as procs:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, procs[0], timeout=180)
        yield url, procs


def raise_nofile(need: int) -> None:
    """Let this test process hold ``need`` more sockets (soft limit up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, need + 1024), hard))


def hold(url: str, count: int, send: bytes = PARTIAL) -> list[socket.socket]:
    """Open ``count`` connections that each send ``send`` and never finish their request."""
    port = int(url.rsplit(":", 1)[1])
    held = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        if send:
            sock.sendall(send)
        held.append(sock)
    return held


def probe(url: str, timeout: float) -> tuple[float, float]:
    """Ask /health and /predict once each on new connections; return their seconds."""
    took = []
    for method, path, body in (("GET", "/health", None), ("POST", "/predict", {"X_test": ROW})):
        start = time.monotonic()
        response = requests.request(method, url + path, json=body, timeout=timeout)
        took.append(time.monotonic() - start)
        assert response.status_code == 200, response.text[:300]
    return took[0], took[1]


def close_all(sockets: list[socket.socket]) -> None:
    """Close the test's own end of every held connection."""
    for sock in sockets:
        sock.close()
