"""SIGTERM drains: uploads being received and answers being sent finish; nothing new is accepted.

A real ``serve`` (and a real ``api``) with two ``/score-file`` requests in flight when SIGTERM
arrives: one half-way through its upload, one whose scored answer is half read. Both clients
then get the whole answer (as many bytes as Content-Length, every row parseable), new
connections are refused meanwhile, and the process exits 0. Before, ``serve`` exited within a
second: the answer was cut off and the upload got nothing.
"""

from __future__ import annotations

import http.client
import io
import signal
import socket
from pathlib import Path

import pandas as pd
import pytest

from scoring.testing.waiting import wait_for

from ._front import MODES, started
from .test_e2e_score import make_csv

pytestmark = pytest.mark.slow

UPLOAD_MB = 30  # its scored CSV is larger than every buffer between the server and the client


def _open_upload(port: int, size: int) -> http.client.HTTPConnection:
    """Start a raw CSV upload to /score-file; the body is the caller's to send."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.putrequest("POST", "/score-file?format=csv")
    conn.putheader("Content-Type", "text/csv")
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    return conn


def _complete(response: http.client.HTTPResponse, head: bytes = b"") -> pd.DataFrame:
    """Read the rest of an answer; check its length against Content-Length and parse it."""
    body = head + response.read()
    assert response.status == 200, body[:300]
    assert len(body) == int(response.headers["Content-Length"])
    frame = pd.read_csv(io.BytesIO(body))
    assert len(frame) == int(response.headers["X-Rows-Scored"])
    return frame


def _refused(port: int) -> bool:
    """True once the listening socket is gone.

    A connection that lands in the backlog just as the listener closes is reset, not refused;
    it was not served either, but it says nothing about the next one, so ask again.
    """
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        return False
    return False


@pytest.mark.parametrize("mode", MODES)
def test_sigterm_lets_an_upload_and_an_answer_in_flight_finish(mode: str, tmp_path: Path) -> None:
    upload = tmp_path / "big.csv"
    rows = make_csv(upload, UPLOAD_MB)
    data = upload.read_bytes()
    env = {"DROPSCORE__SERVER__GRACEFUL_SECONDS": "240"}
    with started(mode, tmp_path, **env) as (url, procs):
        port = int(url.rsplit(":", 1)[1])
        answering = _open_upload(port, len(data))  # uploaded whole; its answer half read
        answering.send(data)
        answer = answering.getresponse()
        head = answer.read(1024 * 1024)
        uploading = _open_upload(port, len(data))  # half its body sent
        uploading.send(data[: len(data) // 2])

        procs[0].send_signal(signal.SIGTERM)
        wait_for(lambda: _refused(port), timeout=60, what="new connections refused")

        uploading.send(data[len(data) // 2 :])
        assert len(_complete(uploading.getresponse())) == rows
        assert len(_complete(answer, head)) == rows
        assert procs[0].wait(timeout=120) == 0
