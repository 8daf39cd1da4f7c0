"""The port waitress bound is found whether it opened one socket or several."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from waitress.server import create_server

from scoring.service.server import bound_port


def _app(environ: dict, start_response: object) -> list[bytes]:
    return []


@pytest.fixture
def opened() -> Iterator[list]:
    servers: list = []
    yield servers
    for server in servers:
        server.close()


@pytest.mark.parametrize(
    "listen",
    [
        "127.0.0.1:0",  # one socket: a TcpWSGIServer
        "127.0.0.1:0 127.0.0.1:0",  # several (as "localhost" → 127.0.0.1 and ::1 gives)
    ],
)
def test_bound_port_is_a_port_the_server_listens_on(listen: str, opened: list) -> None:
    server = create_server(_app, listen=listen)
    opened.append(server)
    port = bound_port(server)
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # the kernel accepted: something listens there, and port 0 was resolved
