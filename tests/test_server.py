"""``serve`` binds its sockets before anything starts, and waitress serves on them."""

from __future__ import annotations

import socket
import threading
import urllib.request
from collections.abc import Iterator

import pytest
from waitress import wasyncore
from waitress.server import create_server

from scoring.service.server import CannotListen, listen_sockets, url_of


def _app(environ: dict, start_response) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"up"]


@pytest.fixture
def held() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def test_a_port_in_use_is_one_line_naming_host_and_port(held: int) -> None:
    with pytest.raises(CannotListen) as caught:
        listen_sockets("127.0.0.1", held)
    assert str(caught.value) == (
        f"port {held} on 127.0.0.1 is in use (by another dropscore?); choose another with"
        " --port or DROPSCORE__SERVER__PORT"
    )


def test_the_port_is_held_from_the_bind_on(held: int) -> None:
    sockets = listen_sockets("127.0.0.1", 0)
    try:
        port = sockets[0].getsockname()[1]
        with pytest.raises(CannotListen, match=f"port {port} on 127.0.0.1 is in use"):
            listen_sockets("127.0.0.1", port)  # no gap for another process to take it
    finally:
        for sock in sockets:
            sock.close()


def test_waitress_serves_on_the_sockets_with_one_port_for_every_address() -> None:
    sockets = listen_sockets("localhost", 0)  # 127.0.0.1, and ::1 where the machine has IPv6
    assert len({sock.getsockname()[1] for sock in sockets}) == 1
    server = create_server(_app, sockets=sockets, threads=1)
    sockmap = getattr(server, "map", None) or server._map  # MultiSocketServer or one TcpWSGIServer
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for sock in sockets:
            with urllib.request.urlopen(url_of(sock), timeout=10) as answer:
                assert answer.read() == b"up"
    finally:
        server.task_dispatcher.shutdown()
        wasyncore.close_all(sockmap)
        thread.join(timeout=10)
