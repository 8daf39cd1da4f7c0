"""An upload the server cannot store gets a 507 with the JSON error body, and service goes on.

A file-size limit (``RLIMIT_FSIZE``, a full disk's stand-in: Python ignores SIGXFSZ, so writes
raise ``OSError(EFBIG)``) applies to a real ``serve`` and a real ``api``; a 26 MB upload then
fails in the front's body buffer, which used to drop the connection without an answer. The
app's own spool (reached when the front had room but the data folder has not) is checked
in-process, on the real file system, under the same kind of limit.
"""

from __future__ import annotations

import io
import resource
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import pytest
import requests
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from scoring.testing.checkout import ROW

from ._front import MODES, started
from .conftest import assert_error
from .test_limits import _app

MB = 1024 * 1024
LIMIT = 20 * MB
HEADER = b"age,sex,bmi,bp,s1,s2,s3,s4,s5,s6\n"
LINE = (",".join(str(v) for v in ROW) + "\n").encode()


def csv_of(size: int) -> bytes:
    """Return a CSV of about ``size`` bytes the model can score."""
    return HEADER + LINE * (size // len(LINE))


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Cap the size of any file this process (and what it starts) writes; then lift it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def _is_507(response: requests.Response) -> None:
    assert response.status_code == 507, response.text[:300]
    error = response.json()["error"]
    assert error["code"] == "insufficient_storage"
    assert "File too large" in error["message"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_an_upload_over_a_file_size_limit_is_507_and_the_service_goes_on(mode, tmp_path) -> None:
    big = csv_of(26 * MB)
    with file_size_limit(LIMIT), started(mode, tmp_path) as (url, _procs):
        raw = requests.post(
            url + "/score-file", data=big, headers={"Content-Type": "text/csv"}, timeout=120
        )
        _is_507(raw)
        multipart = requests.post(
            url + "/score-file", files={"file": ("big.csv", big, "text/csv")}, timeout=120
        )
        _is_507(multipart)
        assert requests.get(url + "/health", timeout=30).status_code == 200
        small = requests.post(
            url + "/score-file?format=csv",
            data=csv_of(2 * MB),
            headers={"Content-Type": "text/csv"},
            timeout=120,
        )
        assert small.status_code == 200, small.text[:300]


def test_the_apps_spool_answers_507_when_its_file_cannot_grow(tmp_path, registry, trained):
    client = _app(tmp_path, registry)
    body = csv_of(2 * MB)
    part = FileStorage(io.BytesIO(body), "big.csv", content_type="text/csv")
    boundary, form = encode_multipart({"file": part})  # in memory, before the limit
    with file_size_limit(MB):
        raw = client.post("/score-file", data=body, content_type="text/csv")
        multipart = client.post(
            "/score-file", data=form, content_type=f"multipart/form-data; boundary={boundary}"
        )
    for response in (raw, multipart):
        error = assert_error(response, 507, "insufficient_storage", "File too large")
        assert error["details"] == []


@pytest.mark.slow
def test_a_raw_upload_reaches_the_disk_once(tmp_path) -> None:
    """The front buffers a large body in the data folder; the app names that file, no copy."""
    body = csv_of(30 * MB)
    with started("serve", tmp_path) as (url, procs):
        server = psutil.Process(procs[0].pid)
        before = server.io_counters().write_chars
        response = requests.post(
            url + "/score-file?format=parquet",
            data=body,
            headers={"Content-Type": "text/csv"},
            timeout=300,
        )
        written = server.io_counters().write_chars - before
    assert response.status_code == 200, response.text[:300]
    # the upload once, its scored file, and a little for the logs and the database
    assert written < len(body) + len(response.content) + 0.25 * len(body), written


def test_a_scored_output_the_disk_cannot_hold_is_507(tmp_path, registry, trained):
    """The upload fits, its scored answer (the input and a prediction per row) does not."""
    client = _app(tmp_path, registry)
    body = HEADER + b"0,0,0,0,0,0,0,0,0,0\n" * 40_000  # 0.8 MB in, about twice that out
    with file_size_limit(MB):
        response = client.post("/score-file?format=csv", data=body, content_type="text/csv")
    error = assert_error(response, 507, "insufficient_storage", "disk is full")
    assert error["details"] == []
    assert client.get("/health").status_code == 200
