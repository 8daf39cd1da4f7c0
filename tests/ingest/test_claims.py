"""Claims and quarantine records on a real data folder: locks, retries, atomic error records."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ingest.base.config import IngestConfig
from ingest.base.errors import IngestError
from ingest.pipeline.quarantine import (
    DEFAULT_HINT,
    HINTS,
    remove_stale_temporaries,
    too_large,
    write_error_record,
)
from ingest.state.claims import claim_copy, claim_move, try_hold
from ingest.state.ledger import Ledger


def claim_folders(config: IngestConfig, kind: str = "score") -> list[Path]:
    """List the per-claim folders under processing/<kind>/."""
    top = config.processing / kind
    return sorted(top.iterdir()) if top.exists() else []


def test_claim_move_holds_the_file_until_the_block_ends(config: IngestConfig) -> None:
    source = config.inbox("score") / "a.csv"
    source.write_text("x\n1\n")
    with claim_move(config, source, "score") as claimed:
        assert not source.exists() and claimed.read_text() == "x\n1\n"
        assert claimed.parent.parent == config.processing / "score" and claimed.name == "a.csv"
        assert try_hold(claimed) is None  # another holder (resume) is kept off
    hold = try_hold(claimed)
    assert hold is not None
    hold.release()


def test_claim_move_gives_up_on_a_file_another_holder_keeps(config: IngestConfig) -> None:
    source = config.inbox("score") / "a.csv"
    source.write_text("x\n1\n")
    other = try_hold(source)
    assert other is not None
    try:
        with pytest.raises(BlockingIOError), claim_move(config, source, "score"):
            pytest.fail("a held file was claimed")
    finally:
        other.release()
    assert source.read_text() == "x\n1\n"
    assert claim_folders(config) == []


def test_claim_move_of_a_vanished_file_leaves_no_claim(config: IngestConfig) -> None:
    with (
        pytest.raises(FileNotFoundError),
        claim_move(config, config.inbox("score") / "gone", "score"),
    ):
        pytest.fail("a missing file was claimed")
    assert claim_folders(config) == []


def test_claim_copy_keeps_the_source_and_cleans_up(config: IngestConfig, tmp_path: Path) -> None:
    source = tmp_path / "seed.csv"
    source.write_text("x\n1\n")
    archived = config.archive / "seed.csv"
    with claim_copy(config, source, "train") as claimed:
        assert claimed.read_text() == "x\n1\n" and try_hold(claimed) is None
        os.replace(claimed, archived)  # as the intake does once the ledger committed
    assert source.read_text() == "x\n1\n" and archived.is_file()
    assert claim_folders(config, "train") == []


def test_claim_copy_left_in_processing_when_the_block_fails(
    config: IngestConfig, tmp_path: Path
) -> None:
    source = tmp_path / "seed.csv"
    source.write_text("x\n1\n")
    with pytest.raises(RuntimeError), claim_copy(config, source, "train") as claimed:
        raise RuntimeError("crash")
    assert claimed.read_text() == "x\n1\n"  # resume takes it again
    assert [p.name for p in claimed.parent.iterdir()] == ["seed.csv"]  # no .copying left


class _Odd(IngestError):
    code = "no_such_code"


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        (IngestError("whatever"), DEFAULT_HINT),
        (_Odd("odd"), DEFAULT_HINT),
        (too_large("big.csv", 3 * 1024 * 1024, 1.0), HINTS["file_too_large"]),
    ],
)
def test_error_record_says_what_is_wrong_and_what_to_do(
    config: IngestConfig, ledger: Ledger, error: IngestError, hint: str
) -> None:
    record = ledger.receive(
        original_name="x.csv",
        kind="score",
        size_bytes=3,
        sha256=None,
        processing_path=None,
        rejected=error.to_dict(),
    )
    path = write_error_record(config.quarantine, record)
    assert path.name == f"{record.id}__x.csv.error.json"
    body = json.loads(path.read_text())
    assert body["code"] == error.code and body["message"] == error.message
    assert body["what_to_do"] == hint and body["file_id"] == record.id
    assert [p.name for p in config.quarantine.iterdir()] == [path.name]  # no temporary left


def test_too_large_names_the_size_and_the_setting() -> None:
    error = too_large("big.csv", 3 * 1024 * 1024, 1.0)
    assert error.message == "big.csv is 3.0 MB, over the 1 MB limit"
    assert error.expected == "at most 1 MB ([ingest] max_file_mb)"


def test_stale_error_record_temporaries_go_young_ones_stay(config: IngestConfig) -> None:
    old = config.quarantine / ".1__a.csv.error.json.0a1b2c3d.tmp"
    young = config.quarantine / ".2__b.csv.error.json.4e5f6a7b.tmp"
    record = config.quarantine / "3__c.csv.error.json"
    for path in (old, young, record):
        path.write_text("{}")
    os.utime(old, (0, 0))
    remove_stale_temporaries(config.quarantine, older_than=60.0)
    assert sorted(p.name for p in config.quarantine.iterdir()) == sorted([young.name, record.name])
