"""One server of each kind per test session, whatever the number of xdist workers using it.

``scoring.testing.shared`` is exercised for real on its cheapest kind (a moto_server starts in
about a second): separate user processes, as xdist's workers are, join the same session folder
and get the same server; the first one out leaves it running, the last one out stops it, and a
user killed with -9 does not leave it behind. Then an ``ast`` read of ``tests/``: no fixture or
test starts its own PostgreSQL, moto_server or Dask cluster beside the session's.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path

from scoring.testing.processes import started
from scoring.testing.shared import alive, shared
from scoring.testing.waiting import wait_for

TESTS = Path(__file__).resolve().parent
TIMEOUT = 120.0  # a loaded 2-core machine

# A user of the session's moto_server, as an xdist worker is: it prints what it was given and
# holds the server until SIGTERM, when it leaves the way a session's teardown does.
USER = """
import json, signal, sys, time
from pathlib import Path
from scoring.testing.shared import shared

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
with shared("moto", Path(sys.argv[1])) as info:
    print(json.dumps(info), flush=True)
    while True:
        time.sleep(1)
"""


def given(log: Path) -> dict:
    """Wait for a user process to print the endpoint it was given; return it."""
    return json.loads(wait_for(lambda: log.read_text().strip(), TIMEOUT, 0.1, f"a line in {log}"))


def answers(endpoint: str) -> bool:
    """Tell whether an HTTP server answers at the endpoint (an error status is an answer)."""
    try:
        with urllib.request.urlopen(endpoint + "/moto-api/", timeout=5):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def host_pid(session: Path) -> int:
    return int(json.loads((session / "moto" / "info.json").read_text())["pid"])


def test_two_processes_share_one_server_and_the_last_one_out_stops_it(tmp_path: Path) -> None:
    session = tmp_path / "shared"
    user = [sys.executable, "-c", USER, str(session)]
    with started(user, dict(os.environ), tmp_path / "a.log") as first:
        one = given(tmp_path / "a.log")
        host = host_pid(session)
        with started(user, dict(os.environ), tmp_path / "b.log"):
            two = given(tmp_path / "b.log")
            assert two == one  # the same endpoint and bucket: no second server started
            assert host_pid(session) == host
            first.send_signal(signal.SIGTERM)
            assert first.wait(timeout=TIMEOUT) == 0
            assert alive(host) and answers(one["endpoint"])  # the other user still has it
        wait_for(lambda: not alive(host), TIMEOUT, 0.1, "the host to stop")
    assert not answers(one["endpoint"])
    assert not (session / "moto" / "info.json").exists()


def test_a_user_killed_with_minus_9_leaves_no_server_behind(tmp_path: Path) -> None:
    session = tmp_path / "shared"
    user = [sys.executable, "-c", USER, str(session)]
    with started(user, dict(os.environ), tmp_path / "a.log") as proc:
        endpoint = given(tmp_path / "a.log")["endpoint"]
        host = host_pid(session)
        proc.kill()  # no teardown runs: the host must notice by itself
        proc.wait()
        wait_for(lambda: not alive(host), TIMEOUT, 0.1, "the host to stop on its own")
    assert not answers(endpoint)


def test_one_process_alone_starts_and_stops_it_as_a_serial_run_does(tmp_path: Path) -> None:
    with shared("moto", tmp_path) as info:
        host = host_pid(tmp_path)
        assert answers(info["endpoint"])
    assert not answers(info["endpoint"])  # stopped before shared() returns
    wait_for(lambda: not alive(host), TIMEOUT, 0.1, "the host to exit")


def server_starts(tree: ast.Module) -> list[str]:
    """Name the server-starting helpers a module imports (each would start a second server)."""
    starters = {"start_postgres", "moto_endpoint", "dask_cluster", "LocalCluster"}
    return sorted(
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.name in starters
    )


def test_the_tests_reach_their_servers_only_through_the_session() -> None:
    found = {
        path.name: names
        for path in sorted(TESTS.glob("*.py"))
        if (names := server_starts(ast.parse(path.read_text(encoding="utf-8"))))
        and path.name != Path(__file__).name
    }
    assert found == {}
