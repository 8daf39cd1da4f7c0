"""A multipart upload reaches the disk once: the front decodes it as it arrives.

The decoding buffer (``scoring.service.multipart``) is checked in-process over random chunkings
of the same bodies (the boundary and the part headers split anywhere); the real ``serve`` and
``api`` are checked for what a client sees and for the bytes their process writes
(``/proc/<pid>/io`` ``wchar``), which was about twice the upload's size before.
"""

from __future__ import annotations

import io
import itertools
import os

import psutil
import pyarrow.parquet as pq
import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.datastructures import FileStorage
from werkzeug.formparser import parse_form_data
from werkzeug.test import encode_multipart

from scoring.service.multipart import MultipartSpool

from ._front import MODES, started
from .test_front_storage import csv_of

MB = 1024 * 1024
BOUNDARY = "dropscore-test-boundary"
# File bytes that look like the start of a boundary, line ends of every kind, and plain text.
PIECES = [b"\r\n", b"\n", b"\r", b"--", f"\r\n--{BOUNDARY}"[:-1].encode(), b"a,b\n", b"1,2\r\n"]


def multipart(content: bytes, fields: dict[str, str] | None = None, name: str = "file") -> bytes:
    """Encode content as the file part (with fields before it), as werkzeug's client does."""
    data: dict[str, object] = dict(fields or {})
    data[name] = FileStorage(io.BytesIO(content), "up.csv", content_type="text/csv")
    _boundary, body = encode_multipart(data, boundary=BOUNDARY)
    return body


def chunks(body: bytes, cuts: list[int]) -> list[bytes]:
    """Split body at the given offsets."""
    points = sorted({0, len(body), *(c % (len(body) + 1) for c in cuts)})
    return [body[a:b] for a, b in itertools.pairwise(points)]


def received(body: bytes, cuts: list[int]) -> MultipartSpool:
    """Feed body to a fresh buffer in chunks, as the front does."""
    spool = MultipartSpool(BOUNDARY.encode(), None)
    for chunk in chunks(body, cuts):
        spool.append(chunk)
    return spool


def werkzeug_file(body: bytes) -> bytes | None:
    """Parse body with werkzeug's own form parser; return field 'file' or None."""
    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": f"multipart/form-data; boundary={BOUNDARY}",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    _stream, _form, files = parse_form_data(environ)
    upload = files.get("file")
    return None if upload is None else upload.read()


contents = st.lists(st.sampled_from(PIECES) | st.binary(max_size=40), max_size=40).map(b"".join)
cut_lists = st.lists(st.integers(min_value=0, max_value=10_000), max_size=30)


@given(content=contents, cuts=cut_lists, fields=st.booleans())
def test_any_chunking_gives_the_same_file_and_the_same_raw_body(content, cuts, fields) -> None:
    body = multipart(content, {"note": "a\r\nb", "n": "1"} if fields else None)
    spool = received(body, cuts)
    try:
        reader = spool.getfile()
        assert reader.read() == body  # the raw body, whole, for any other reader
        upload = reader.upload
        if upload is None:  # an edge of werkzeug's decoder: the app parses the raw body
            return
        assert upload.size == len(content)
        assert os.pread(upload.fileno, upload.size, 0) == content == werkzeug_file(body)
        assert upload.filename == "up.csv"
        assert dict(upload.fields) == ({"note": b"a\r\nb", "n": b"1"} if fields else {})
    finally:
        spool.close()


@given(content=st.binary(min_size=1).filter(lambda b: b"\r" not in b), cuts=cut_lists)
def test_a_plain_file_is_decoded_whatever_the_chunking(content, cuts) -> None:
    body = multipart(content)
    edge = body.rindex(b"--\r\n") + 1  # the decoder's edge (the next test): left to the app
    spool = received(body, [c for c in cuts if c % (len(body) + 1) != edge])
    try:
        upload = spool.getfile().upload
        assert upload is not None
        assert upload.size == len(content)
        assert os.pread(upload.fileno, upload.size, 0) == content
    finally:
        spool.close()


def test_a_chunk_ending_one_dash_into_the_closing_boundary_is_not_taken_for_content() -> None:
    """werkzeug's decoder then takes the CR of the CRLF before the boundary for content."""
    content = b"a,b\n1,2"
    body = multipart(content)
    cut = body.rindex(b"--\r\n") + 1
    spool = received(body, [cut])
    try:
        reader = spool.getfile()
        assert reader.upload is None  # the app parses the raw body: content without the CR
        assert reader.read() == body
        assert werkzeug_file(body) == content
    finally:
        spool.close()


# cut from the closing "\r\n--BOUNDARY--\r\n" at least all but its first byte: it never ends
@given(content=contents, cuts=cut_lists, cut=st.integers(len(BOUNDARY) + 7, len(BOUNDARY) + 400))
def test_a_body_cut_short_is_not_an_upload_and_stays_whole(content, cuts, cut) -> None:
    body = multipart(content)[:-cut]
    spool = received(body, cuts)
    try:
        reader = spool.getfile()
        assert reader.upload is None
        assert werkzeug_file(body) is None  # werkzeug finds no file either: the app's 400
        assert reader.read() == body
    finally:
        spool.close()


@given(cuts=cut_lists)
def test_a_second_file_part_leaves_the_body_to_werkzeug(cuts) -> None:
    first = FileStorage(io.BytesIO(b"a,b\n1,2\n"), "one.csv", content_type="text/csv")
    second = FileStorage(io.BytesIO(b"c\n3\n"), "two.csv", content_type="text/csv")
    _b, body = encode_multipart({"other": first, "file": second}, boundary=BOUNDARY)
    spool = received(body, cuts)
    try:
        reader = spool.getfile()
        assert reader.upload is None
        assert reader.read() == body
    finally:
        spool.close()


def test_big_fields_before_the_file_are_stored_raw_in_the_spool_file(tmp_path) -> None:
    """Past 64 KB of fields with no file part yet, the body goes to disk as it arrives."""
    body = multipart(b"a\n1\n", {"big": "x" * 200_000})
    spool = MultipartSpool(BOUNDARY.encode(), tmp_path)
    for at in range(0, len(body), 8192):
        spool.append(body[at : at + 8192])
    try:
        assert len(spool.head) == 0 and spool.file is not None
        reader = spool.getfile()
        assert reader.upload is None
        assert reader.read() == body
    finally:
        spool.close()
    assert list(tmp_path.iterdir()) == []  # unnamed: nothing left behind


def test_an_endless_epilogue_or_part_head_is_stored_raw_never_held_in_memory(tmp_path) -> None:
    """After the file: 1 MB of epilogue, or a part head that never ends, is not kept in memory.

    werkzeug's decoder keeps what it cannot decode yet in its buffer; the decoding stops (the
    app parses the raw body, as werkzeug's own bounded parser) once that passes 64 KB.
    """
    for tail in (
        b"x" * MB,
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; ".encode() + b"y" * MB,
    ):
        body = multipart(b"a\n1\n") + tail
        spool = MultipartSpool(BOUNDARY.encode(), tmp_path)
        try:
            for at in range(0, len(body), 8192):
                spool.append(body[at : at + 8192])
                held = 0 if spool.decoding is None else len(spool.decoding.decoder.buffer)
                assert held <= 64 * 1024 + 8192
            assert spool.decoding is None
            reader = spool.getfile()
            assert reader.upload is None and reader.read() == body
        finally:
            spool.close()


def _json_error(response: requests.Response, status: int, code: str, fragment: str) -> None:
    assert response.status_code == status, response.text[:300]
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code
    assert fragment in error["message"], error["message"]


def _written(procs: list, mode: str) -> int:
    """Bytes the serving processes have written so far (serve; api's master and workers)."""
    root = psutil.Process(procs[0].pid)
    family = [root] if mode == "serve" else [root, *root.children(recursive=True)]
    return sum(p.io_counters().write_chars for p in family)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_a_40_mb_multipart_upload_is_written_once_and_scores_as_a_raw_one(mode, tmp_path) -> None:
    body = csv_of(40 * MB)
    with started(mode, tmp_path) as (url, procs):
        before = _written(procs, mode)
        sent = requests.post(
            url + "/score-file?format=parquet",
            files={"file": ("big.csv", body, "text/csv")},
            timeout=600,
        )
        written = _written(procs, mode) - before
        assert sent.status_code == 200, sent.text[:300]
        raw = requests.post(
            url + "/score-file?format=parquet",
            data=body,
            headers={"Content-Type": "text/csv"},
            timeout=600,
        )
        assert raw.status_code == 200, raw.text[:300]
        assert list((tmp_path / "data").glob(".upload-*")) == []
    for name in ("X-Rows-Scored", "X-Rows-Failed", "X-Model-Version"):
        assert sent.headers[name] == raw.headers[name]
    assert pq.read_table(io.BytesIO(sent.content)).equals(pq.read_table(io.BytesIO(raw.content)))
    # the upload once, its scored file (to disk, then to the socket), logs and the database;
    # before, the upload was written twice (the front's buffer, then werkzeug's part file)
    assert written < 1.5 * len(body), (written, len(body), len(sent.content))


@pytest.mark.slow
def test_multipart_refusals_over_the_real_front(tmp_path) -> None:
    """A malformed body is a 400, one over the cap a 413, a chunked one is decoded too."""
    body = csv_of(2 * MB)
    with started("serve", tmp_path, DROPSCORE__SERVER__MAX_UPLOAD_MB="3") as (url, _procs):
        kind = f"multipart/form-data; boundary={BOUNDARY}"
        broken = multipart(body)[:-200]  # the closing boundary never comes
        response = requests.post(
            url + "/score-file", data=broken, headers={"Content-Type": kind}, timeout=120
        )
        _json_error(response, 400, "bad_request", "multipart field 'file'")
        over = multipart(csv_of(4 * MB))
        response = requests.post(
            url + "/score-file", data=over, headers={"Content-Type": kind}, timeout=120
        )
        _json_error(response, 413, "too_large", "max_upload_mb")
        whole = multipart(body)
        chunked = requests.post(  # a generator: sent with Transfer-Encoding: chunked
            url + "/score-file?format=csv",
            data=(whole[at : at + 100_000] for at in range(0, len(whole), 100_000)),
            headers={"Content-Type": kind},
            timeout=120,
        )
        assert chunked.status_code == 200, chunked.text[:300]
        assert int(chunked.headers["X-Rows-Scored"]) == body.count(b"\n") - 1
        assert requests.get(url + "/health", timeout=30).status_code == 200
        assert list((tmp_path / "data").glob(".upload-*")) == []
