"""The workers of one ``dropscore api`` share a burst of keep-alive clients fairly.

Before, the first worker to wake took every connection of a burst: 16 keep-alive clients (wrk
-c16) all on one of two workers in 4 runs of 8, which served them at half the machine's speed.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import time
from pathlib import Path

import psutil

from scoring.service.balance import STALE_SECONDS, Balance, slack
from tests._front import started

CLIENTS = 16
KEEP_ALIVE_GET = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"


def _burst(port: int) -> list[socket.socket]:
    """Open CLIENTS keep-alive connections at once; each is answered once and left open."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(CLIENTS)]
    for sock in socks:
        sock.sendall(KEEP_ALIVE_GET)
    for sock in socks:
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    return socks


def _held_by_each_worker(api: psutil.Process, port: int) -> list[int]:
    def held(worker: psutil.Process) -> int:
        found = worker.net_connections(kind="tcp")
        return sum(1 for c in found if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)

    return sorted(held(worker) for worker in api.children())


def test_a_burst_of_keep_alive_clients_is_split_between_the_workers(tmp_path: Path) -> None:
    """Three bursts of 16: each worker holds 8 give or take one (slack), never all 16."""
    with started("api", tmp_path) as (url, procs):
        port = int(url.rsplit(":", 1)[1])
        api = psutil.Process(procs[0].pid)
        for _ in range(3):
            socks = _burst(port)
            try:
                held = _held_by_each_worker(api, port)
                assert len(held) == 2 and sum(held) == CLIENTS, held
                assert held[1] - held[0] <= 2, held
            finally:
                for sock in socks:
                    sock.close()
            time.sleep(0.5)  # the workers see their connections closed (a loop turn)


FORK = multiprocessing.get_context("fork")


def _sibling(balance: Balance, held: int, ready, go, beat: bool) -> None:
    """A forked worker: join the table holding ``held``; beat until told to go (if ``beat``)."""
    balance.join()
    balance.may_accept(held)
    ready.set()
    while not go.is_set():
        if beat:
            balance.may_accept(held)
        time.sleep(0.05)


def test_a_worker_takes_one_ahead_of_the_least_loaded_then_waits(monkeypatch) -> None:
    """The rule itself, on a table shared with a real forked sibling; a dead one holds none."""
    balance = Balance(workers=2)
    ready, go = FORK.Event(), FORK.Event()
    child = FORK.Process(target=_sibling, args=(balance, 4, ready, go, True))
    child.start()
    try:
        assert ready.wait(30)
        balance.join()
        assert balance.may_accept(4) and not balance.may_accept(5)
        assert slack(64) == 5  # a flood is taken in batches
    finally:
        go.set()
        child.join(30)
    monkeypatch.setattr("scoring.service.balance.STARTING_SECONDS", 0.0)
    assert balance.may_accept(50), "a sibling that exited holds nobody back"


def test_a_sibling_that_stopped_beating_no_longer_counts(monkeypatch) -> None:
    """Alive but silent (stuck): after STALE_SECONDS the others stop leaving it its share."""
    balance = Balance(workers=2)
    ready, go = FORK.Event(), FORK.Event()
    child = FORK.Process(target=_sibling, args=(balance, 0, ready, go, False))
    child.start()
    try:
        assert ready.wait(30)
        balance.join()
        assert not balance.may_accept(3)
        monkeypatch.setattr("scoring.service.balance.STALE_SECONDS", 0.2)
        monkeypatch.setattr("scoring.service.balance.STARTING_SECONDS", 0.0)
        time.sleep(0.3)
        assert balance.may_accept(3)
    finally:
        go.set()
        child.join(30)


def test_a_lone_worker_leaves_a_share_to_a_sibling_still_starting_then_takes_all(
    monkeypatch,
) -> None:
    balance = Balance(workers=2)
    balance.join()
    assert balance.may_accept(0) and not balance.may_accept(1)
    monkeypatch.setattr("scoring.service.balance.STARTING_SECONDS", 0.0)
    assert balance.may_accept(1), "it never came: this worker takes every connection"
    assert STALE_SECONDS >= 1.0 and os.getpid() > 0
