"""The intake on a real data folder and ledger: every ending, every reason, every crash point."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ingest.base.config import IngestConfig, ReadOptions
from ingest.base.errors import IngestError, TransientIngestError
from ingest.pipeline.intake import Intake
from ingest.state.ledger import DUPLICATE, NORMALIZED, QUARANTINED, IllegalTransition, Ledger

REPO = Path(__file__).resolve().parents[2]
GOOD = "id,Amount,Name\n1,2.5,a\n2,3.5,b\n3,4.5,c\n"


def drop(config: IngestConfig, name: str, content: bytes | str, kind: str = "score") -> Path:
    """Place a file in an inbox the way a producer would."""
    path = config.inbox(kind) / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def claimed_files(config: IngestConfig) -> list[Path]:
    """List files still claimed in processing/ (lock files aside)."""
    top = config.processing
    return [p for p in top.rglob("*") if p.is_file() and p.parent != top]


def lake_rows(config: IngestConfig, kind: str = "score") -> int:
    """Count rows over every lake file, reading each fully so a half file would fail."""
    return sum(pq.read_table(p).num_rows for p in config.lake(kind).glob("*.parquet"))


def assert_settled(config: IngestConfig, ledger: Ledger) -> None:
    """Check every drop is terminal with its original where its row says, nothing left over."""
    assert claimed_files(config) == []
    assert [p.name for p in config.lake("score").glob(".*.tmp")] == []
    for record in ledger.list(limit=None):
        assert record.terminal, record
        where = record.quarantine_path if record.state == QUARANTINED else record.archive_path
        if record.processing_path is not None:
            assert (config.data_dir / where).is_file(), record


@pytest.fixture
def ledger_on(open_state, config: IngestConfig) -> Ledger:
    """The ledger on either backend (the test runs once per backend): a SQLite file, or the
    test's PostgreSQL database; its paths relative to the data folder either way."""
    return Ledger(open_state(None), config.data_dir)


# -- quarantine reasons ----------------------------------------------------------------------

QUARANTINE_CASES = [
    ("empty.csv", b"", "empty_file"),
    ("header_only.csv", b"a,b\n", "no_rows"),
    ("ragged.csv", b"a,b\n1,2\n3,4,5\n", "ragged_rows"),
    (
        "wide.csv",
        (",".join(f"c{i}" for i in range(9)) + "\n" + ",".join("1" * 9) + "\n").encode(),
        "too_many_columns",
    ),
    ("big.csv", b"a\n" + b"1\n" * 600_000, "file_too_large"),
    ("report.csv", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\x00\x01\x02", "format_mismatch"),
    ("table.docx", b"hello", "unsupported_format"),
    ("broken.json", b'[{"a": 1}, {"a": ', "malformed"),
]


@pytest.mark.parametrize(("name", "content", "code"), QUARANTINE_CASES)
def test_bad_files_end_in_quarantine_with_an_error_record(
    config: IngestConfig, ledger: Ledger, name: str, content: bytes, code: str
) -> None:
    config = replace(config, read=ReadOptions(max_columns=8))
    intake = Intake(config, ledger)
    record = intake.take(drop(config, name, content), "score")
    assert record.state == QUARANTINED
    assert record.error is not None and record.error["code"] == code
    original = config.quarantine / f"{record.id}__{name}"
    assert original.read_bytes() == content
    body = json.loads((config.quarantine / f"{record.id}__{name}.error.json").read_text())
    assert body["code"] == code and body["file"] == name and body["kind"] == "score"
    assert body["message"] and body["what_to_do"] and body["size_bytes"] == len(content)
    assert list(config.inbox("score").iterdir()) == []
    assert list(config.lake("score").glob("*.parquet")) == []
    assert_settled(config, ledger)


def test_type_conflict_with_the_training_lake_names_the_column(
    intake: Intake, config: IngestConfig, ledger: Ledger
) -> None:
    first = intake.take(drop(config, "a.csv", "age,bmi\n30,1.5\n40,2.5\n", "train"), "train")
    assert first.state == NORMALIZED
    second = intake.take(drop(config, "b.csv", "age,bmi\nold,1.5\n", "train"), "train")
    assert second.state == QUARANTINED
    assert second.error is not None
    assert second.error["code"] == "type_conflict" and second.error["column"] == "age"
    assert len(list(config.lake("train").glob("*.parquet"))) == 1
    score = intake.take(drop(config, "c.csv", "age,bmi\nold,1.5\n"), "score")
    assert score.state == NORMALIZED  # only the training lake must read back as one dataset


def test_unexpected_exception_quarantines_the_file_not_the_intake(
    intake: Intake, config: IngestConfig, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ingest.readers

    def explode(path, options):
        raise RuntimeError("reader bug")

    monkeypatch.setattr(ingest.readers, "open_table", explode)
    record = intake.take(drop(config, "x.csv", GOOD), "score")
    assert record.state == QUARANTINED
    assert record.error == {
        "code": "internal",
        "message": "unexpected RuntimeError while reading x.csv: reader bug",
    }
    assert (config.quarantine / f"{record.id}__x.csv.error.json").is_file()
    monkeypatch.undo()
    assert intake.take(drop(config, "y.csv", GOOD), "score").state == NORMALIZED


def test_transient_errors_are_retried_then_succeed(
    intake: Intake, config: IngestConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ingest.readers

    real = ingest.readers.open_table
    calls = []

    def flaky(path, options):
        calls.append(path)
        if len(calls) < 3:
            raise TransientIngestError("locked by another program")
        return real(path, options)

    monkeypatch.setattr(ingest.readers, "open_table", flaky)
    record = intake.take(drop(config, "x.csv", GOOD), "score")
    assert (record.state, record.attempts, record.rows) == (NORMALIZED, 3, 3)


def test_transient_errors_give_up_after_max_attempts(
    intake: Intake, config: IngestConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ingest.readers

    def locked(path, options):
        raise PermissionError("locked")

    monkeypatch.setattr(ingest.readers, "open_table", locked)
    record = intake.take(drop(config, "x.csv", GOOD), "score")
    assert record.state == QUARANTINED and record.attempts == config.max_attempts
    assert record.error is not None and record.error["code"] == "retries_exhausted"


def test_a_file_that_vanished_before_its_claim_never_becomes_a_drop(
    intake: Intake, config: IngestConfig, ledger: Ledger
) -> None:
    with pytest.raises(FileNotFoundError):
        intake.take(config.inbox("score") / "gone.csv", "score")
    assert ledger.list() == []
    assert claimed_files(config) == []


# -- normal endings ----------------------------------------------------------------------------


def test_good_file_is_normalized_archived_and_announced(
    config: IngestConfig, ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    seen = []
    intake = Intake(config, ledger, on_normalized=seen.append)
    with caplog.at_level(logging.INFO, logger="dropscore.ingest"):
        record = intake.take(drop(config, "Sales Q1.csv", GOOD), "score")
    assert record.state == NORMALIZED
    assert (record.rows, record.columns, record.format) == (3, 3, "csv")
    assert record.column_map == {"id": "id", "Amount": "amount", "Name": "name"}
    assert record.lake_path == f"lake/score/{record.sha256}.parquet"
    assert (config.archive / f"{record.id}__Sales Q1.csv").read_text() == GOOD
    table = pq.read_table(config.data_dir / record.lake_path)
    assert table.column("_file_id").to_pylist() == [record.id] * 3
    assert seen == [record]
    logged = [r for r in caplog.records if r.getMessage() == "normalized"]
    assert logged and logged[0].file_id == record.id and logged[0].file == "Sales Q1.csv"
    assert_settled(config, ledger)


def test_listener_failure_is_logged_not_raised(
    config: IngestConfig, ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(record):
        raise ValueError("scorer down")

    intake = Intake(config, ledger, on_normalized=broken)
    record = intake.take(drop(config, "x.csv", GOOD), "score")
    assert record.state == NORMALIZED
    assert any(r.getMessage() == "on_normalized failed" for r in caplog.records)


def test_same_content_twice_is_one_lake_file_and_a_duplicate(
    config: IngestConfig, ledger_on: Ledger
) -> None:
    intake, ledger = Intake(config, ledger_on), ledger_on
    first = intake.take(drop(config, "a.csv", GOOD), "score")
    second = intake.take(drop(config, "b.csv", GOOD), "score")
    assert (second.state, second.duplicate_of) == (DUPLICATE, first.id)
    assert len(list(config.lake("score").glob("*.parquet"))) == 1
    assert (config.archive / f"{second.id}__b.csv").read_text() == GOOD
    assert lake_rows(config) == 3
    assert_settled(config, ledger)


def test_same_name_new_content_is_a_new_drop(
    intake: Intake, config: IngestConfig, ledger: Ledger
) -> None:
    first = intake.take(drop(config, "daily.csv", GOOD), "score")
    second = intake.take(drop(config, "daily.csv", GOOD + "4,5.5,d\n"), "score")
    assert first.state == second.state == NORMALIZED and first.id != second.id
    assert len(list(config.lake("score").glob("*.parquet"))) == 2
    assert (config.archive / f"{first.id}__daily.csv").is_file()
    assert (config.archive / f"{second.id}__daily.csv").is_file()


def test_quarantined_content_dropped_again_is_taken_again(
    intake: Intake, config: IngestConfig
) -> None:
    intake.take(drop(config, "a.csv", "age\n1\n", "train"), "train")
    bad = intake.take(drop(config, "b.csv", "age\nold\n", "train"), "train")
    assert bad.state == QUARANTINED
    again = intake.take(drop(config, "b.csv", "age\nold\n", "train"), "train")
    assert again.state == QUARANTINED and again.duplicate_of is None


def test_take_copy_leaves_the_source_where_it_is(
    intake: Intake, config: IngestConfig, ledger: Ledger, tmp_path: Path
) -> None:
    source = tmp_path / "mine.csv"
    source.write_text(GOOD)
    record = intake.take_copy(source, "train")
    assert record.state == NORMALIZED and record.kind == "train"
    assert source.read_text() == GOOD
    assert (config.archive / f"{record.id}__mine.csv").read_text() == GOOD
    assert_settled(config, ledger)


def test_take_copy_of_a_huge_file_records_the_refusal_without_copying(
    intake: Intake, config: IngestConfig, tmp_path: Path
) -> None:
    source = tmp_path / "huge.csv"
    source.write_bytes(b"a\n" + b"1\n" * 600_000)
    record = intake.take_copy(source, "score")
    assert record.state == QUARANTINED and record.error is not None
    assert record.error["code"] == "file_too_large"
    assert source.is_file()
    assert (config.quarantine / f"{record.id}__huge.csv.error.json").is_file()
    assert not (config.quarantine / f"{record.id}__huge.csv").exists()


def test_bootstrap_only_when_the_training_lake_is_empty(
    intake: Intake, config: IngestConfig, ledger: Ledger, tmp_path: Path
) -> None:
    sample = tmp_path / "sample"
    sample.mkdir()
    (sample / "diabetes.csv").write_text("age,target\n50,151\n60,75\n")
    (sample / ".hidden.csv").write_text("ignored")
    record = intake.bootstrap(sample)
    assert record is not None and record.state == NORMALIZED and record.kind == "train"
    assert ledger.list(kind="train") == [record]
    assert intake.bootstrap(sample) is None
    assert len(ledger.list()) == 1


def test_bootstrap_skips_a_lake_that_already_has_data(
    intake: Intake, config: IngestConfig, ledger: Ledger, tmp_path: Path
) -> None:
    intake.take(drop(config, "a.csv", GOOD, "train"), "train")
    seed = tmp_path / "seed.csv"
    seed.write_text("age,target\n50,151\n")
    assert intake.bootstrap(seed) is None
    assert len(ledger.list()) == 1


# -- crash at each step, then resume -----------------------------------------------------------

_CRASHER = """
import os, shutil, sys
from pathlib import Path
from ingest.base.config import DataLayout, IngestConfig
from ingest.pipeline.intake import Intake
from ingest.state.db import StateDB
from ingest.state.ledger import Ledger
import ingest.pipeline.intake
import ingest.lake.store

data_dir, step, kind, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
paths = [Path(p) for p in sys.argv[5:]]
config = IngestConfig(DataLayout(data_dir), max_attempts=3)

def die(*args, **kwargs):
    os._exit(9)  # like kill -9: no cleanup, no finally blocks

def die_after(real):
    def run(*args, **kwargs):
        real(*args, **kwargs)
        os._exit(9)
    return run

targets = {
    "claimed": (Ledger, "receive", die),
    "received": (Ledger, "start_attempt", die),
    "mid_lake_write": (ingest.lake.store, "_publish", die),
    "lake_written": (Ledger, "mark_normalized", die),
    "committed": (Intake, "_settle", die),
    "copy_started": (shutil, "copyfile", die),
    "error_record_written": (
        ingest.pipeline.intake,
        "write_error_record",
        die_after(ingest.pipeline.intake.write_error_record),
    ),
}
owner, attr, replacement = targets[step]
intake = Intake(config, Ledger(StateDB.at(config.db_path)))
for i, path in enumerate(paths):
    if i == len(paths) - 1:
        setattr(owner, attr, replacement)
    (intake.take_copy if mode == "copy" else intake.take)(path, kind)
sys.exit(3)  # the crash point was never reached
"""

CRASH_STEPS = [
    ("claimed", "take", [GOOD]),
    ("received", "take", [GOOD]),
    ("mid_lake_write", "take", [GOOD]),
    ("lake_written", "take", [GOOD]),
    ("committed", "take", [GOOD]),
    ("committed", "take", ["a\n"]),  # a quarantine committed, original not yet moved
    ("error_record_written", "take", ["a\n"]),
    ("committed", "take", [GOOD, GOOD]),  # a duplicate committed, original not yet moved
    ("lake_written", "take", [GOOD, GOOD + "9,9.5,z\n"]),
    ("copy_started", "copy", [GOOD]),
]


@pytest.mark.parametrize(("step", "mode", "contents"), CRASH_STEPS)
def test_resume_finishes_a_drop_killed_at_any_step(
    config: IngestConfig, ledger: Ledger, tmp_path: Path, step: str, mode: str, contents: list
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    paths = []
    for i, content in enumerate(contents):
        folder = outside if mode == "copy" else config.inbox("score")
        path = folder / f"f{i}.csv"
        path.write_text(content)
        paths.append(path)
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            _CRASHER,
            str(config.data_dir),
            step,
            "score",
            mode,
            *map(str, paths),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 9, child.stderr

    recovered = Intake(config, ledger).resume()

    assert_settled(config, ledger)
    records = ledger.list(limit=None)
    if mode == "copy":
        assert records == [] and recovered == []  # nothing was recorded; the source is intact
        assert paths[0].read_text() == contents[0]
        return
    assert len(records) == len(contents)  # one row per drop: none lost, none twice
    assert list(config.inbox("score").iterdir()) == []
    distinct_good = {c for c in contents if c.count("\n") > 1}
    assert lake_rows(config) == sum(c.count("\n") - 1 for c in distinct_good)
    for record in records:
        if record.state == QUARANTINED:
            name = f"{record.id}__{record.original_name}.error.json"
            assert json.loads((config.quarantine / name).read_text())["code"] == "no_rows"
    lake_ids = {
        i
        for p in config.lake("score").glob("*.parquet")
        for i in pq.read_table(p).column("_file_id").to_pylist()
    }
    assert lake_ids == {r.id for r in records if r.state == NORMALIZED}


def test_resume_leaves_a_claim_another_process_holds(
    intake: Intake, config: IngestConfig, ledger: Ledger
) -> None:
    import fcntl
    import os

    claim = config.processing / "score" / "abc" / "x.csv"
    claim.parent.mkdir(parents=True)
    claim.write_text(GOOD)
    fd = os.open(claim, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert intake.resume() == []
        assert claim.is_file() and ledger.list() == []
    finally:
        os.close(fd)
    [record] = intake.resume()
    assert record.state == NORMALIZED and record.original_name == "x.csv"


def test_resume_quarantines_a_received_row_whose_file_is_gone(
    config: IngestConfig, ledger_on: Ledger
) -> None:
    intake, ledger = Intake(config, ledger_on), ledger_on
    row = ledger.receive(
        original_name="lost.csv",
        kind="score",
        size_bytes=3,
        sha256="abc",
        processing_path="processing/score/zz/lost.csv",
    )
    [record] = intake.resume()
    assert record.id == row.id and record.state == QUARANTINED
    assert record.error is not None and record.error["code"] == "internal"


def test_a_file_that_keeps_killing_the_service_is_set_aside(
    intake: Intake, config: IngestConfig, ledger: Ledger
) -> None:
    claim = config.processing / "score" / "abc" / "x.csv"
    claim.parent.mkdir(parents=True)
    claim.write_text(GOOD)
    row = ledger.receive(
        original_name="x.csv",
        kind="score",
        size_bytes=len(GOOD),
        sha256="abc",
        processing_path=claim,
    )
    for _ in range(config.max_attempts):
        ledger.start_attempt(row.id)  # as if each attempt had died mid-way
    [record] = intake.resume()
    assert record.state == QUARANTINED
    assert record.error is not None and record.error["code"] == "retries_exhausted"
    assert (config.quarantine / f"{record.id}__x.csv").read_text() == GOOD


# -- rejection after normalizing (the scorer's missing-features case) --------------------------


class _MissingFeatures(IngestError):
    code = "missing_features"


def test_reject_normalized_moves_the_original_and_the_lake_file_out(
    intake: Intake, config: IngestConfig, ledger: Ledger
) -> None:
    record = intake.take(drop(config, "x.csv", GOOD), "score")
    assert ledger.claim_for_scoring(record.id)
    rejected = intake.reject_normalized(record, _MissingFeatures("column bmi is missing"))
    assert rejected.state == QUARANTINED and rejected.scoring_claimed_at is None
    assert (config.quarantine / f"{record.id}__x.csv").read_text() == GOOD
    assert not (config.archive / f"{record.id}__x.csv").exists()
    body = json.loads((config.quarantine / f"{record.id}__x.csv.error.json").read_text())
    assert body["code"] == "missing_features"
    assert list(config.lake("score").glob("*.parquet")) == []
    with pytest.raises(IllegalTransition):
        intake.reject_normalized(rejected, _MissingFeatures("again"))


def test_resume_finishes_a_rejection_cut_short(
    intake: Intake, config: IngestConfig, ledger: Ledger
) -> None:
    record = intake.take(drop(config, "x.csv", GOOD), "score")
    ledger.mark_score_refused(  # as if killed right after the ledger commit
        record.id,
        error={"code": "missing_features", "message": "m"},
        quarantine_path=config.quarantine / f"{record.id}__x.csv",
    )
    [done] = intake.resume()
    assert done.id == record.id
    assert (config.quarantine / f"{record.id}__x.csv").read_text() == GOOD
    assert (config.quarantine / f"{record.id}__x.csv.error.json").is_file()
    assert list(config.lake("score").glob("*.parquet")) == []
    assert intake.resume() == []


def test_train_drops_can_be_rejected_and_scored_drops_cannot(
    intake: Intake, config: IngestConfig, ledger: Ledger
) -> None:
    train = intake.take(drop(config, "t.csv", GOOD, "train"), "train")
    assert intake.reject_normalized(train, _MissingFeatures("m")).state == QUARANTINED
    assert list(config.lake("train").glob("*.parquet")) == []
    score = intake.take(drop(config, "s.csv", GOOD + "7,7.5,q\n"), "score")
    ledger.mark_scored(score.id, "outbox/s.parquet", "1", 4, 0)
    with pytest.raises(IllegalTransition, match="scored"):
        intake.reject_normalized(score, _MissingFeatures("m"))


@pytest.mark.parametrize("setting", [None, "", "  "])
def test_bootstrap_with_no_setting_does_nothing(
    intake: Intake, ledger: Ledger, setting: str | None
) -> None:
    assert intake.bootstrap(setting) is None
    assert ledger.list() == []
