"""POST /score-file on a real `dropscore api` (gunicorn, one worker) on 127.0.0.1.

JSON arrays come back as JSON arrays and JSON Lines as JSON Lines, strict; pandas' default
``to_json`` layout is scored; ``?sheet=`` picks a sheet of a real two-sheet workbook; a
multipart upload is written to disk once (the worker's write syscalls, from /proc, stay under
1.5 times the upload plus the answer), and an upload over ``max_upload_mb`` is a 413 whether
it announces its length or not, leaving no spool folder behind.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pandas as pd
import psutil
import pytest
import requests

from .conftest import SAMPLE, free_port
from .test_e2e_serve import Server, cli_env, dropscore

MB = 1024 * 1024
UPLOAD_LIMIT_MB = 16
FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


class Api:
    """A running `dropscore api --workers 1`, its data folder and its worker's pid."""

    def __init__(self, server: Server, data_dir: Path, worker: int) -> None:
        self.server, self.url, self.data_dir, self.worker = server, server.url, data_dir, worker

    def post(self, name: str, data: bytes, **query: str) -> requests.Response:
        """Upload data as multipart field 'file' named name."""
        return requests.post(
            self.url + "/score-file", params=query, files={"file": (name, data)}, timeout=120
        )


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[Api]:
    folder = tmp_path_factory.mktemp("formats")
    port = free_port()
    env = cli_env(folder / "data", port, DROPSCORE__SERVER__MAX_UPLOAD_MB=str(UPLOAD_LIMIT_MB))
    trained = dropscore("train", env=env)
    assert trained.returncode == 0, trained.stderr
    server = Server(["api", "--workers", "1"], env, port, folder / "api.log")
    try:
        server.ready()
        workers = psutil.Process(server.proc.pid).children()
        assert len(workers) == 1, workers
        yield Api(server, folder / "data", workers[0].pid)
    finally:
        if server.proc.poll() is None:
            server.stop()


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return pd.read_csv(SAMPLE)[FEATURES].head(50)


def strict_json(text: str) -> object:
    """Parse text refusing NaN/Infinity, as a strict JSON client does."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_json_array_is_answered_with_a_json_array(api: Api, frame: pd.DataFrame) -> None:
    records = frame.to_dict(orient="records")
    records[3]["bmi"] = "not a number"  # a failed row: null prediction, an error, strict JSON
    response = api.post("rows.json", json.dumps(records).encode())
    assert response.status_code == 200, response.text[:300]
    assert response.headers["Content-Type"] == "application/json"
    assert "scored.json" in response.headers["Content-Disposition"]
    scored = strict_json(response.text)
    assert isinstance(scored, list) and len(scored) == len(frame)
    assert [row["age"] for row in scored] == [r["age"] for r in records]  # input order
    assert scored[3]["prediction"] is None and "bmi" in scored[3]["error"]
    assert all(isinstance(row["prediction"], float) for i, row in enumerate(scored) if i != 3)
    assert response.headers["X-Rows-Failed"] == "1"


def test_json_lines_are_answered_with_json_lines(api: Api, frame: pd.DataFrame) -> None:
    body = frame.to_json(orient="records", lines=True).encode()
    response = api.post("rows.jsonl", body)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["Content-Type"] == "application/x-ndjson"
    lines = response.text.splitlines()
    assert len(lines) == len(frame)
    assert all(isinstance(strict_json(line), dict) for line in lines)


def test_pandas_default_to_json_is_scored(api: Api, frame: pd.DataFrame) -> None:
    response = api.post("frame.json", frame.to_json().encode())  # orient="columns"
    assert response.status_code == 200, response.text[:300]
    scored = strict_json(response.text)
    assert isinstance(scored, list) and len(scored) == len(frame)
    assert scored[0]["age"] == pytest.approx(frame["age"].iloc[0])


def two_sheets(frame: pd.DataFrame) -> bytes:
    """A workbook whose first sheet is notes and whose second holds the rows."""
    book = openpyxl.Workbook()
    notes = book.active
    notes.title = "Notes"
    notes.append(["note", "by"])
    notes.append(["exported for scoring", "finance"])
    data = book.create_sheet("Data")
    data.append(list(frame.columns))
    for row in frame.itertuples(index=False):
        data.append(list(row))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@pytest.mark.parametrize("sheet", ["Data", "1"])
def test_sheet_picks_the_workbook_sheet(api: Api, frame: pd.DataFrame, sheet: str) -> None:
    response = api.post("book.xlsx", two_sheets(frame), sheet=sheet)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["X-Rows-Scored"] == str(len(frame))
    assert len(pd.read_csv(io.StringIO(response.text))) == len(frame)


def test_without_sheet_the_first_sheet_is_read(api: Api, frame: pd.DataFrame) -> None:
    response = api.post("book.xlsx", two_sheets(frame))
    assert response.status_code == 422
    assert "lacks the model's feature columns" in response.json()["error"]["message"]


@pytest.mark.parametrize("sheet", ["Nope", "2"])
def test_a_missing_sheet_is_a_422_listing_the_sheets(
    api: Api, frame: pd.DataFrame, sheet: str
) -> None:
    response = api.post("book.xlsx", two_sheets(frame), sheet=sheet)
    assert response.status_code == 422, response.text[:300]
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    message = error["message"]
    assert "no sheet by the name or index asked for; its sheets are 'Notes', 'Data'" in message
    assert f"'{sheet}'" not in message  # the kind of value, never the value


def csv_of_size(frame: pd.DataFrame, size: int) -> bytes:
    block = frame.to_csv(index=False, header=False).encode()
    header = ",".join(frame.columns).encode() + b"\n"
    return header + block * (size // len(block) + 1)


def written_bytes(pid: int) -> int:
    """Bytes the process passed to write(2) and the like so far (/proc/<pid>/io wchar)."""
    return psutil.Process(pid).io_counters().write_chars


def test_a_multipart_upload_is_written_to_disk_once(api: Api, frame: pd.DataFrame) -> None:
    body = csv_of_size(frame, 12 * MB)
    before = written_bytes(api.worker)
    response = api.post("big.csv", body, format="parquet")
    wrote = written_bytes(api.worker) - before
    assert response.status_code == 200, response.text[:300]
    # Twice since api answers through the front (scoring.service.front), which buffers a body on
    # the data folder's disk before the app parses the part out of it; three times would fail.
    # A raw body is written once: the app names the front's file (test_front_storage.py).
    assert wrote < 2.5 * len(body) + len(response.content), (wrote, len(body))
    assert not list(api.data_dir.glob(".upload-*"))
    before = written_bytes(api.worker)
    raw = requests.post(
        api.url + "/score-file?format=parquet",
        data=body,
        headers={"Content-Type": "text/csv"},
        timeout=120,
    )
    wrote = written_bytes(api.worker) - before
    assert raw.status_code == 200, raw.text[:300]
    assert wrote < 1.5 * len(body) + len(raw.content), (wrote, len(body))


def test_an_upload_over_the_limit_is_413_with_or_without_a_length(
    api: Api, frame: pd.DataFrame
) -> None:
    body = csv_of_size(frame, (UPLOAD_LIMIT_MB + 2) * MB)
    announced = api.post("big.csv", body)
    assert announced.status_code == 413, announced.text[:300]
    assert "max_upload_mb" in announced.json()["error"]["message"]

    multipart = b"--b\r\nContent-Disposition: form-data; name=file; filename=big.csv\r\n\r\n"
    chunks = [multipart, *(body[i : i + MB] for i in range(0, len(body), MB)), b"\r\n--b--\r\n"]
    streamed = requests.post(
        api.url + "/score-file",
        data=iter(chunks),  # a generator: sent chunked, with no Content-Length
        headers={"Content-Type": "multipart/form-data; boundary=b"},
        timeout=120,
    )
    assert streamed.status_code == 413, streamed.text[:300]
    assert "max_upload_mb" in streamed.json()["error"]["message"]
    assert not list(api.data_dir.glob(".upload-*"))
