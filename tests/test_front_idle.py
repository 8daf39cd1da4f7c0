"""A thousand idle or trickling connections cost ``serve`` and ``api`` memory, not service.

Against a real ``serve`` and a real ``api`` (two gunicorn workers): 1,000 connections send a
request's head without its blank line (some of them a further header line every second, some
nothing at all) and hold on. Meanwhile ``/health`` and ``/predict`` keep answering within a
second on new connections; once ``[server] header_seconds`` have passed, the server itself
closes every held connection, with a 408 to those that had started a request. Before the front,
``serve`` stopped accepting at waitress' 100 connections and ``api`` gave a thread to each.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from ._front import MODES, close_all, hold, probe, raise_nofile, started

pytestmark = pytest.mark.slow

IDLE = 850  # the head of a request, then nothing
TRICKLING = 100  # the head, then one more header line every second
SILENT = 50  # connected, nothing sent
HEADER_SECONDS = 15  # the deadline under test; long enough to probe while all are held
ANSWER_SECONDS = 1.0  # what a client of the service must still get, with 1,000 sockets held
ROUNDS = 8


@contextmanager
def trickle(sockets: list[socket.socket]) -> Iterator[None]:
    """Send one more header line on every socket each second until the server closes it."""
    stop = threading.Event()

    def run() -> None:
        alive = list(sockets)
        while alive and not stop.wait(1.0):
            for sock in list(alive):
                try:
                    sock.send(b"X-Trickle: 1\r\n")
                except OSError:  # closed by the server: that is the point
                    alive.remove(sock)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def readable_now(sockets: list[socket.socket]) -> int:
    """Count the sockets with something to read (bytes or the server's close) right now."""
    with selectors.DefaultSelector() as sel:
        for sock in sockets:
            sel.register(sock, selectors.EVENT_READ)
        return len(sel.select(timeout=0))


def wait_closed(
    sockets: list[socket.socket], timeout: float
) -> tuple[dict[socket.socket, bytes], set]:
    """Read every socket until the server closes it; return what each got, and those still open."""
    got = {sock: b"" for sock in sockets}
    left = set(sockets)
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:  # epoll: no limit at descriptor 1024
        for sock in sockets:
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ)
        while left and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1.0):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    data = b""
                if data:
                    got[sock] += data
                else:
                    sel.unregister(sock)
                    left.discard(sock)
    return got, left


@pytest.mark.parametrize("mode", MODES)
def test_a_thousand_held_connections_leave_the_service_answering_and_are_closed_late(
    mode: str, tmp_path
) -> None:
    raise_nofile(IDLE + TRICKLING + SILENT)
    env = {"DROPSCORE__SERVER__HEADER_SECONDS": str(HEADER_SECONDS)}
    with started(mode, tmp_path, **env) as (url, _procs):
        idle = hold(url, IDLE)
        trickling = hold(url, TRICKLING)
        silent = hold(url, SILENT, send=b"")
        held = idle + trickling + silent
        try:
            with trickle(trickling):
                for _ in range(ROUNDS):
                    health, predict = probe(url, timeout=10)
                    assert health < ANSWER_SECONDS and predict < ANSWER_SECONDS, (health, predict)
                assert readable_now(held) == 0  # every one was still held while we asked

                got, still_open = wait_closed(held, timeout=HEADER_SECONDS + 90)
            assert not still_open, f"{len(still_open)} connections were never closed"
            started_a_request = [got[sock] for sock in idle + trickling]
            assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in started_a_request)
            assert b'"code": "request_timeout"' in started_a_request[0]
            assert all(got[sock] == b"" for sock in silent)  # nothing asked: closed, no answer
            probe(url, timeout=10)  # and the service goes on
        finally:
            close_all(held)
