"""Retrying a quarantined drop, over a real HTTP server, a real ledger file and real inboxes.

A retry takes the same file again, once: the drop becomes ``retried`` and names the drop its
copy became; a second retry, or one racing it, is a 409 that says so. The CLI and the dashboard
say what a duplicate duplicates and what a retry became, in the ledger's words.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from ingest.base.names import unescape
from ingest.state.ledger import Ledger
from scoring.api.app import create_app
from scoring.service.runtime import open_intake
from tests._server import serving
from tests.conftest import make_settings

BROKEN = b"a,b\n1,2,3,4\n5\n"  # ragged rows: quarantined
GOOD = b"id,x\n1,1.5\n2,2.5\n"
GOOD_AS_JSONL = b'{"id": 1, "x": 1.5}\n{"id": 2, "x": 2.5}\n'  # the same table, other bytes


def _error(answer: requests.Response, status: int) -> dict[str, Any]:
    """Check a JSON error answer of this status and return its error object."""
    assert answer.status_code == status, answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert set(error) == {"code", "message", "details"}
    return error


@pytest.fixture
def served(tmp_path: Path) -> Any:
    """A quarantined score drop, and the API over its ledger on a real port."""
    settings = make_settings(tmp_path)
    _, ledger, intake = open_intake(settings)
    inbox = settings.data_dir / "inbox" / "score"
    (inbox / "broken.csv").write_bytes(BROKEN)
    rejected = intake.take(inbox / "broken.csv", "score")
    assert rejected.state == "quarantined"
    with serving(create_app(settings, ledger=ledger)) as url:
        yield settings, ledger, intake, rejected, url


def test_a_drop_is_retried_once_and_names_the_drop_its_retry_made(served: Any) -> None:
    settings, _ledger, intake, rejected, url = served
    first = requests.post(f"{url}/files/{rejected.id}/retry", timeout=30)
    assert first.status_code == 202, first.text
    queued = first.json()["queued_as"]
    copy = settings.data_dir / "inbox" / "score" / queued
    assert copy.read_bytes() == BROKEN

    waiting = _error(requests.post(f"{url}/files/{rejected.id}/retry", timeout=30), 409)
    assert queued in waiting["message"] and "already retried" in waiting["message"]
    assert first.json()["state"] == "retried"

    again = intake.take(copy, "score")  # what the watcher does with the copy
    assert again.original_name == "broken.csv" and again.state == "quarantined"
    source = requests.get(f"{url}/files/{rejected.id}", timeout=30).json()
    assert (source["state"], source["retried_as"]) == ("retried", again.id)

    retried = _error(requests.post(f"{url}/files/{rejected.id}/retry", timeout=30), 409)
    assert retried["message"] == f"file {rejected.id} was already retried as file {again.id}"
    assert retried["details"] == [{"file_id": rejected.id, "retried_as": again.id}]
    listed = requests.get(f"{url}/files?status=retried", timeout=30).json()["files"]
    assert [f["id"] for f in listed] == [rejected.id]
    original = requests.get(f"{url}/files/{rejected.id}/original", timeout=30)
    assert original.status_code == 200 and original.content == BROKEN
    metrics = requests.get(f"{url}/metrics", timeout=30).text
    assert 'dropscore_files{model="default",state="retried"} 1.0' in metrics
    states = requests.get(f"{url}/openapi.json", timeout=30).text
    assert '"retried"' in states

    # the new drop can be retried in its turn: a chain, each link once
    assert requests.post(f"{url}/files/{again.id}/retry", timeout=30).status_code == 202
    [queued_again] = (settings.data_dir / "inbox" / "score").iterdir()
    assert queued_again.name.startswith(f"retry{again.id}-")


def test_concurrent_retries_of_one_drop_let_exactly_one_through(served: Any) -> None:
    settings, _ledger, _intake, rejected, url = served
    start = threading.Barrier(4)
    answers: list[int] = []

    def retry() -> None:
        start.wait(timeout=30)
        answers.append(requests.post(f"{url}/files/{rejected.id}/retry", timeout=60).status_code)

    threads = [threading.Thread(target=retry) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(answers) == [202, 409, 409, 409]
    inbox = settings.data_dir / "inbox" / "score"
    assert [p.name.startswith("retry") for p in inbox.iterdir()] == [True]  # one copy, no tmp


def test_the_dashboard_retry_follows_the_same_rule_and_says_what_it_does(served: Any) -> None:
    settings, _ledger, intake, rejected, url = served
    web = requests.Session()
    page = web.get(f"{url}/ui/files", timeout=30).text
    assert "Retry unchanged" in page
    assert "takes this same file again, as it is" in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    action = f"{url}/ui/files/{rejected.id}/retry"
    first = web.post(action, data={"csrf_token": token.group(1)}, timeout=30)
    assert "put back in the inbox as retry" in first.text
    second = web.post(action, data={"csrf_token": token.group(1)}, timeout=30)
    assert f"not retried: file {rejected.id} was already retried" in second.text
    copy = next((settings.data_dir / "inbox" / "score").glob("retry*"))
    again = intake.take(copy, "score")
    page = web.get(f"{url}/ui/files", timeout=30).text
    assert f"retried as {again.id}" in page
    assert page.count("Retry unchanged") == 1  # only the new quarantined drop offers it


def test_duplicates_and_retries_are_spelled_out_by_the_cli_and_the_dashboard(
    served: Any, tmp_path: Path
) -> None:
    settings, ledger, intake, rejected, url = served
    inbox = settings.data_dir / "inbox" / "score"
    for name, content in [("a.csv", GOOD), ("b.csv", GOOD), ("c.jsonl", GOOD_AS_JSONL)]:
        (inbox / name).write_bytes(content)
        intake.take(inbox / name, "score")
    [a, b, c] = sorted((r for r in ledger.list() if r.original_name != "broken.csv"), key=_id)
    assert (b.duplicate_of, b.duplicate_by, c.duplicate_of, c.duplicate_by) == (
        a.id,
        "bytes",
        a.id,
        "content",
    )
    page = requests.get(f"{url}/ui/files", timeout=30).text
    assert f"same bytes as file {a.id}" in page and f"same content as file {a.id}" in page

    listed = _dropscore(settings, tmp_path, "files")
    assert f"duplicate of {a.id} (same bytes)" in listed
    assert f"duplicate of {a.id} (same content)" in listed
    assert requests.post(f"{url}/files/{rejected.id}/retry", timeout=30).status_code == 202
    waiting = _dropscore(settings, tmp_path, "files")
    assert "retried: its copy waits in the inbox as retry" in waiting


def _id(record: Any) -> int:
    return int(record.id)


def _dropscore(settings: Any, tmp_path: Path, *args: str) -> str:
    """Run the real ``dropscore`` command on the test's data folder; return what it printed."""
    toml = tmp_path / "cli-settings.toml"
    toml.write_text(
        f'[paths]\ndata_dir = "{settings.data_dir}"\n[training]\nbootstrap_data = ""\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPSCORE")}
    env["COLUMNS"] = "400"  # one line a row, so a phrase is never wrapped apart
    done = subprocess.run(
        [sys.executable, "-m", "scoring", "--settings", str(toml), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_non_utf8_name_is_shown_readably_and_retried_under_its_own_bytes(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    _, ledger, intake = open_intake(settings)
    inbox = settings.data_dir / "inbox" / "score"
    raw = b"\xff\xfe\xfdbad.csv"
    with open(os.path.join(os.fsencode(inbox), raw), "wb") as fh:
        fh.write(BROKEN)
    rejected = intake.take(inbox / os.fsdecode(raw), "score")
    assert rejected.original_name == "\\xff\\xfe\\xfdbad.csv"
    assert "\\xff\\xfe\\xfdbad.csv" in _dropscore(settings, tmp_path, "files")
    with serving(create_app(settings, ledger=ledger)) as url:
        row = requests.get(f"{url}/files/{rejected.id}", timeout=30).json()
        assert row["original_name"] == "\\xff\\xfe\\xfdbad.csv"
        assert "\\xff\\xfe\\xfdbad.csv" in requests.get(f"{url}/ui/files", timeout=30).text
        download = requests.get(f"{url}/files/{rejected.id}/original", timeout=30)
        assert download.status_code == 200 and download.content == BROKEN
        answer = requests.post(f"{url}/files/{rejected.id}/retry", timeout=30)
        assert answer.status_code == 202, answer.text
    [copy] = os.listdir(os.fsencode(inbox))
    assert copy.endswith(b"__" + raw)  # the copy carries the dropped bytes, not their escape
    again = intake.take(inbox / os.fsdecode(copy), "score")
    assert again.original_name == rejected.original_name
    assert os.fsencode(unescape(again.original_name)) == raw
    assert ledger.get(rejected.id).retried_as == again.id  # type: ignore[union-attr]


OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    original_name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('train', 'score')),
    size_bytes INTEGER, sha256 TEXT,
    state TEXT NOT NULL
        CHECK (state IN ('received', 'normalized', 'scored', 'quarantined', 'duplicate')),
    rows INTEGER, columns INTEGER, format TEXT, encoding TEXT, delimiter TEXT, column_map TEXT,
    error TEXT, lake_path TEXT, archive_path TEXT, quarantine_path TEXT,
    duplicate_of INTEGER REFERENCES files (id),
    attempts INTEGER NOT NULL DEFAULT 0, processing_path TEXT UNIQUE, output_path TEXT,
    model_version TEXT, rows_scored INTEGER, rows_failed INTEGER, scoring_claimed_at TEXT,
    scoring_claims INTEGER NOT NULL DEFAULT 0, received_at TEXT NOT NULL,
    updated_at TEXT NOT NULL, finished_at TEXT, scored_at TEXT,
    content_sha256 TEXT, duplicate_by TEXT CHECK (duplicate_by IN ('bytes', 'content'))
);
CREATE INDEX IF NOT EXISTS files_kind_sha ON files (kind, sha256);
CREATE INDEX IF NOT EXISTS files_state ON files (state, kind);
"""


def test_a_state_db_of_an_older_release_learns_the_retried_state(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(OLD_SCHEMA)
        for i, state in enumerate(["quarantined", "duplicate", "quarantined"], start=1):
            conn.execute(
                "INSERT INTO files (id, original_name, kind, state, duplicate_of, received_at, "
                "updated_at) VALUES (?, ?, 'score', ?, ?, 't', 't')",
                (i, f"f{i}.csv", state, 1 if state == "duplicate" else None),
            )
        conn.execute("DELETE FROM files WHERE id = 3")  # the counter stays at 3
    conn.close()
    ledger = Ledger.at(db)
    retried = ledger.mark_retried(1, queued_as="retry1-abc__f1.csv")
    assert (retried.state, retried.queued_as) == ("retried", "retry1-abc__f1.csv")
    again = ledger.receive(
        original_name="retry1-abc__f1.csv",
        kind="score",
        size_bytes=1,
        sha256="x",
        processing_path=None,
    )
    assert again.id == 4 and again.original_name == "f1.csv"
    assert ledger.get(1).retried_as == 4  # type: ignore[union-attr]
    assert [r.state for r in ledger.list()] == ["received", "duplicate", "retried"]
    assert ledger.counts_by_state()["retried"] == 1
    with sqlite3.connect(db) as conn:
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"files_kind_sha", "files_state", "files_finished", "files_kind_content"} <= indexes
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()


def test_a_retry_whose_copy_a_crash_lost_can_be_queued_again(served: Any) -> None:
    """The ledger said retried, but the process died before the copy reached the inbox."""
    settings, ledger, _intake, rejected, url = served
    ledger.mark_retried(rejected.id, queued_as=f"retry{rejected.id}-dead00__broken.csv")
    inbox = settings.data_dir / "inbox" / "score"
    assert list(inbox.iterdir()) == []  # nothing will ever be taken: the retry must not be stuck
    answer = requests.post(f"{url}/files/{rejected.id}/retry", timeout=30)
    assert answer.status_code == 202, answer.text
    [copy] = inbox.iterdir()
    assert copy.name == answer.json()["queued_as"] != f"retry{rejected.id}-dead00__broken.csv"
    assert copy.read_bytes() == BROKEN
    waiting = _error(requests.post(f"{url}/files/{rejected.id}/retry", timeout=30), 409)
    assert copy.name in waiting["message"]


def test_a_drop_of_a_long_name_is_retried_under_a_name_the_inbox_accepts(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    _, ledger, intake = open_intake(settings)
    inbox = settings.data_dir / "inbox" / "score"
    long_name = "L" * 246 + ".csv"  # 250 bytes: with the retry's prefix, over 255
    (inbox / long_name).write_bytes(BROKEN)
    rejected = intake.take(inbox / long_name, "score")
    assert rejected.original_name == long_name
    with serving(create_app(settings, ledger=ledger)) as url:
        answer = requests.post(f"{url}/files/{rejected.id}/retry", timeout=30)
        assert answer.status_code == 202, answer.text
    [copy] = inbox.iterdir()
    assert copy.suffix == ".csv" and copy.read_bytes() == BROKEN
    again = intake.take(copy, "score")
    assert again.original_name == long_name
    assert ledger.get(rejected.id).retried_as == again.id  # type: ignore[union-attr]
