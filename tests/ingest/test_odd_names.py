"""Drops whose names are not UTF-8, or are odd but valid: each ends in a terminal ledger state.

Linux file names are bytes; Python hands undecodable ones over as lone surrogates, which SQLite
refuses. These tests drop such files into a real inbox for the real watcher, and leave them in
processing/ for the real start-up recovery, and follow every place the name lands: the ledger
row, the claim, archive/ or quarantine/ and its ``.error.json``, the JSON a client reads.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path

import pytest

from ingest.base.config import IngestConfig
from ingest.base.names import escape, unescape
from ingest.pipeline.intake import Intake
from ingest.pipeline.quarantine import ERROR_SUFFIX
from ingest.state.claims import claim_move
from ingest.state.ledger import NORMALIZED, QUARANTINED, FileRecord, Ledger
from tests.ingest._watching import MakeWatcher, terminal

GOOD = b"id,x\n1,1.5\n2,2.5\n"
EMPTY = b""  # quarantined as empty_file

NAMES = {
    "not-utf8": b"\xff\xfe\xfdbad.csv",
    "odd-but-valid": "new\nline \"double\" 'single' \xe9 \U0001f389.csv".encode(),
    "backslashes": b"a\\xff\\\\b.csv",  # looks like an escape: must not turn into one
}
LONG = {  # too long for archive/ once ``<id>__`` and ``.error.json`` are added, or escaped
    "long": b"L" * 246 + b".csv",
    "long-not-utf8": b"\xe4\xb8" * 50 + b".csv",  # 104 bytes, 404 once escaped
}
STORED = {
    "not-utf8": "\\xff\\xfe\\xfdbad.csv",
    "odd-but-valid": "new\\x0aline \"double\" 'single' \xe9 \U0001f389.csv",
    "backslashes": "a\\\\xff\\\\\\\\b.csv",
    "long": "L" * 246 + ".csv",
    "long-not-utf8": "\\xe4\\xb8" * 50 + ".csv",
}


def _drop(folder: Path, raw: bytes, content: bytes) -> None:
    """Write a file under a name given as raw bytes, the way a producer on Linux can."""
    fd = os.open(os.path.join(os.fsencode(folder), raw), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)


def _files_under(folder: Path) -> list[bytes]:
    """List every file below a folder by its raw name (no decoding that could hide one).

    The lake locks (``processing/.lake-<kind>.lock``) are no drop's and are left out.
    """
    walked = os.walk(os.fsencode(folder))
    return [n for _root, _dirs, files in walked for n in files if not n.startswith(b".lake-")]


def _assert_settled(config: IngestConfig, ledger: Ledger, record: FileRecord, raw: bytes) -> None:
    """Check the row names the drop losslessly and its original sits where the row says."""
    assert os.fsencode(unescape(record.original_name)) == raw
    json.dumps(record.to_dict(), ensure_ascii=False).encode("utf-8")  # no lone surrogate
    assert _files_under(config.processing) == [], "left in processing/"
    assert _files_under(config.inbox(record.kind)) == [], "left in the inbox"
    if record.state == QUARANTINED:
        kept = ledger.resolve(record.quarantine_path)
        assert kept is not None
        body = json.loads(Path(f"{kept}{ERROR_SUFFIX}").read_text(encoding="utf-8"))
        assert body["file"] == record.original_name and body["code"] == "empty_file"
    else:
        kept = ledger.resolve(record.archive_path)
    assert kept is not None and kept.is_file(), f"the original is not at {kept}"


@pytest.mark.parametrize("content", [GOOD, EMPTY], ids=["taken", "quarantined"])
@pytest.mark.parametrize("which", [*NAMES, *LONG])
def test_watcher_takes_a_drop_of_any_name(
    make_watcher: MakeWatcher,
    config: IngestConfig,
    ledger: Ledger,
    wait_for,
    which: str,
    content: bytes,
) -> None:
    raw = {**NAMES, **LONG}[which]
    watcher = make_watcher("native")
    _drop(config.inbox("score"), raw, content)
    wait_for(  # the row commits first, then the original leaves processing/
        lambda: terminal(ledger) and not _files_under(config.processing),
        timeout=60,
        what="the drop to reach a terminal state and leave processing/",
    )
    [record] = ledger.list()
    assert record.original_name == STORED[which]
    assert record.state == (NORMALIZED if content else QUARANTINED)
    _assert_settled(config, ledger, record, raw)
    json.dumps(watcher.status(), ensure_ascii=False).encode("utf-8")


@pytest.mark.parametrize("which", list(NAMES))
def test_start_up_recovery_finishes_a_claim_of_any_name(
    config: IngestConfig, ledger: Ledger, intake: Intake, which: str, caplog
) -> None:
    """A drop claimed (moved to processing/) when the process died, before its row existed."""
    _drop(config.inbox("score"), NAMES[which], GOOD)
    with claim_move(
        config, Path(os.fsdecode(config.inbox("score"))) / os.fsdecode(NAMES[which]), "score"
    ):
        pass  # the process dies here: the file is in processing/, no ledger row
    assert _files_under(config.processing) != []
    with caplog.at_level(logging.INFO, logger="dropscore.ingest"):
        [record] = intake.resume()
    assert "could not recover" not in caplog.text
    assert (record.state, record.original_name) == (NORMALIZED, STORED[which])
    _assert_settled(config, ledger, record, NAMES[which])


def test_start_up_recovery_renames_a_claim_an_older_release_named_after_raw_bytes(
    config: IngestConfig, ledger: Ledger, intake: Intake, caplog
) -> None:
    """The reported case: the claim is named with bytes that are not UTF-8 and has no row."""
    claim = config.processing / "score" / uuid.uuid4().hex
    claim.mkdir(parents=True)
    raw = NAMES["not-utf8"]
    _drop(claim, raw, GOOD)
    for restart in range(2):  # every restart used to log "could not recover" and keep it
        with caplog.at_level(logging.INFO, logger="dropscore.ingest"):
            done = intake.resume()
        assert "could not recover" not in caplog.text
        assert len(done) == (1 - restart)
    [record] = ledger.list()
    assert (record.state, record.original_name) == (NORMALIZED, STORED["not-utf8"])
    _assert_settled(config, ledger, record, raw)


def test_a_too_large_drop_of_an_undecodable_name_is_quarantined_readably(
    config: IngestConfig, ledger: Ledger, intake: Intake
) -> None:
    """The rejection's message quotes the name as the filesystem gave it: stored as text."""
    raw = NAMES["not-utf8"]
    _drop(config.inbox("score"), raw, b"id,x\n" + b"1,2\n" * 300_000)  # over max_file_mb = 1
    record = intake.take(Path(os.fsdecode(config.inbox("score"))) / os.fsdecode(raw), "score")
    assert record.state == QUARANTINED
    assert record.error is not None and record.error["code"] == "file_too_large"
    assert record.error["message"].startswith(STORED["not-utf8"])
    _assert_settled_large(config, ledger, record)


def _assert_settled_large(config: IngestConfig, ledger: Ledger, record: FileRecord) -> None:
    """Check a too-large drop's original and its error record are in quarantine/."""
    kept = ledger.resolve(record.quarantine_path)
    assert kept is not None and kept.is_file()
    body = json.loads(Path(f"{kept}{ERROR_SUFFIX}").read_text(encoding="utf-8"))
    assert body["file"] == escape(os.fsdecode(NAMES["not-utf8"]))
    assert _files_under(config.processing) == []


def test_start_up_recovery_keeps_the_row_an_older_release_gave_a_claim_with_a_newline(
    config: IngestConfig, ledger: Ledger, intake: Intake
) -> None:
    """An older release named the claim as dropped and stored that path: the row is resumed."""
    claim = config.processing / "score" / uuid.uuid4().hex
    claim.mkdir(parents=True)
    raw = NAMES["odd-but-valid"]
    _drop(claim, raw, GOOD)
    claimed = claim / os.fsdecode(raw)
    received = ledger.receive(
        original_name=claimed.name,
        kind="score",
        size_bytes=len(GOOD),
        sha256="x",
        processing_path=claimed,
    )
    [record] = intake.resume()
    assert (record.id, record.state) == (received.id, NORMALIZED)
    assert [r.id for r in ledger.list()] == [received.id]  # no second row for the same file
    _assert_settled(config, ledger, record, raw)


@pytest.mark.parametrize("which", list(LONG))
def test_start_up_recovery_finishes_a_claim_of_a_long_name(
    config: IngestConfig, ledger: Ledger, intake: Intake, which: str
) -> None:
    """The claim's name was shortened (start, hash, extension): the row records that name."""
    inbox = Path(os.fsdecode(config.inbox("score")))
    _drop(inbox, LONG[which], GOOD)
    with claim_move(config, inbox / os.fsdecode(LONG[which]), "score") as claimed:
        pass  # the process dies here: the file is in processing/, no ledger row
    assert len(claimed.name.encode()) <= 180 and claimed.name.endswith(".csv")
    [record] = intake.resume()
    assert record.state == NORMALIZED and record.original_name == claimed.name
    assert record.original_name.startswith(STORED[which][:100])
    assert _files_under(config.processing) == []
    archived = ledger.resolve(record.archive_path)
    assert archived is not None and archived.read_bytes() == GOOD


def test_start_up_recovery_renames_a_long_raw_byte_claim_an_older_release_left(
    config: IngestConfig, ledger: Ledger, intake: Intake, caplog
) -> None:
    """100 undecodable bytes escape to 400 characters: the renamed claim is shortened to fit."""
    claim = config.processing / "score" / uuid.uuid4().hex
    claim.mkdir(parents=True)
    raw = b"\xff" * 100 + b".csv"
    _drop(claim, raw, GOOD)
    for restart in range(2):  # every restart used to fail the rename (name too long)
        with caplog.at_level(logging.INFO, logger="dropscore.ingest"):
            done = intake.resume()
        assert "could not recover" not in caplog.text
        assert len(done) == (1 - restart)
    [record] = ledger.list()
    assert record.state == NORMALIZED
    assert record.original_name.startswith("\\xff" * 30) and record.original_name.endswith(".csv")
    assert len(record.original_name.encode()) <= 180
    assert _files_under(config.processing) == []
    assert _files_under(config.inbox("score")) == []
    archived = ledger.resolve(record.archive_path)
    assert archived is not None and archived.read_bytes() == GOOD
