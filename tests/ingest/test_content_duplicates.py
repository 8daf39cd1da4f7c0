"""The same rows in another format are a duplicate: through the real watcher, intake, crashes."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.base.config import IngestConfig
from ingest.lake.lakefile import lake_owner
from ingest.lake.store import lake_files, read_lake
from ingest.pipeline.intake import Intake
from ingest.state.ledger import BY_BYTES, BY_CONTENT, DUPLICATE, NORMALIZED, FileRecord, Ledger
from tests.ingest._tables import xlsx_bytes
from tests.ingest._watching import MakeWatcher, terminal

REPO = Path(__file__).resolve().parents[2]
HEADER = ["Patient ID", "Age", "BMI", "Sex", "Visit", "Smoker"]
N = 240


def rows(n: int = N) -> list[list[Any]]:
    """Build rows of every lake type: ints, whole floats, decimals, text, dates, booleans."""
    start = dt.datetime(2024, 1, 1)
    return [
        [
            i,
            float(20 + i % 60),  # a whole float: "20.0" in CSV and JSON, 20 from Excel
            round(18.5 + (i % 97) * 0.25, 2),
            "f" if i % 3 else "m",
            start + dt.timedelta(days=i),
            i % 4 == 0,
        ]
        for i in range(1, n + 1)
    ]


def _text(value: Any) -> Any:
    """Render a value the way a CSV or JSON export writes it."""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def as_csv(table: list[list[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows([[_text(v) for v in row] for row in table])
    return out.getvalue().encode()


def _records(table: list[list[Any]]) -> list[dict[str, Any]]:
    return [
        {h: v if isinstance(v, bool) else _text(v) for h, v in zip(HEADER, row, strict=True)}
        for row in table
    ]


def as_json(table: list[list[Any]]) -> bytes:
    return json.dumps(_records(table)).encode()


def as_jsonl(table: list[list[Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in _records(table)).encode()


def as_xlsx(table: list[list[Any]]) -> bytes:
    return xlsx_bytes([HEADER, *table])  # real openpyxl cells: numbers, dates, booleans


def as_parquet(table: list[list[Any]]) -> bytes:
    columns = {h: [row[i] for row in table] for i, h in enumerate(HEADER)}
    out = pa.BufferOutputStream()
    pq.write_table(pa.table(columns), out)
    return out.getvalue().to_pybytes()


FORMATS = {
    "people.csv": as_csv,
    "people.xlsx": as_xlsx,
    "people.json": as_json,
    "people.jsonl": as_jsonl,
    "people.parquet": as_parquet,
}


def drop(config: IngestConfig, tmp_path: Path, name: str, content: bytes) -> Path:
    """Write a file beside the inbox and rename it in, as a careful producer does."""
    staged = tmp_path / "staging" / name
    staged.parent.mkdir(exist_ok=True)
    staged.write_bytes(content)
    dest = config.inbox("train") / name
    os.rename(staged, dest)
    return dest


def lake_rows(config: IngestConfig) -> int:
    """Count the training lake's rows as a retrain reads them: every file as one dataset."""
    return read_lake(config.lake("train")).num_rows


def assert_a_duplicate_by_content(record: FileRecord, of: FileRecord, config: IngestConfig) -> None:
    """Check a drop was judged a duplicate of ``of`` by content, its original archived."""
    assert (record.state, record.duplicate_of, record.duplicate_by) == (
        DUPLICATE,
        of.id,
        BY_CONTENT,
    ), record
    assert record.content_sha256 == of.content_sha256 is not None
    assert record.lake_path is None
    shown = record.to_dict()  # what GET /files/<id> answers
    assert (shown["duplicate_of"], shown["duplicate_by"]) == (of.id, "content")
    assert (config.archive / f"{record.id}__{record.original_name}").is_file()


# -- through the real watcher ------------------------------------------------------------------


def test_the_same_rows_in_every_format_enter_the_lake_once(
    make_watcher: MakeWatcher, config: IngestConfig, ledger: Ledger, wait_for, tmp_path: Path
) -> None:
    table = rows()
    make_watcher()
    taken: list[FileRecord] = []
    for name, build in FORMATS.items():
        drop(config, tmp_path, name, build(table))
        count = len(taken) + 1
        done = wait_for(
            lambda n=count: len(terminal(ledger)) == n and terminal(ledger),
            what=f"{name} to be taken",
        )
        taken.append(next(r for r in done if r.original_name == name))
    first, *later = taken
    assert first.state == NORMALIZED and first.rows == N and first.content_sha256
    for record in later:
        assert_a_duplicate_by_content(record, first, config)
    assert [lake_owner(p) for p in lake_files(config.lake("train"))] == [first.id]
    assert lake_rows(config) == N  # a retrain sees each row once, not five times

    changed = [list(row) for row in table]
    changed[100][2] += 0.25  # one cell
    drop(config, tmp_path, "people-fixed.csv", as_csv(changed))
    again = drop(config, tmp_path, "people-copy.csv", as_csv(table))
    wait_for(lambda: len(terminal(ledger)) == len(FORMATS) + 2, what="the last two drops")
    by_name = {r.original_name: r for r in ledger.list(limit=None)}
    fixed, copy = by_name["people-fixed.csv"], by_name[again.name]
    assert fixed.state == NORMALIZED and fixed.content_sha256 != first.content_sha256
    assert (copy.state, copy.duplicate_of, copy.duplicate_by) == (DUPLICATE, first.id, BY_BYTES)
    assert len(lake_files(config.lake("train"))) == 2
    assert lake_rows(config) == 2 * N


def test_the_same_rows_dropped_at_once_in_five_formats_are_taken_once(
    make_watcher: MakeWatcher, config: IngestConfig, ledger: Ledger, wait_for, tmp_path: Path
) -> None:
    table = rows()
    for name, build in FORMATS.items():
        drop(config, tmp_path, name, build(table))
    make_watcher()  # the start-up scan finds all five together
    wait_for(lambda: len(terminal(ledger)) == len(FORMATS), what="every drop to be taken")
    records = ledger.list(limit=None)
    [kept] = [r for r in records if r.state == NORMALIZED]
    for record in records:
        if record.id != kept.id:
            assert_a_duplicate_by_content(record, kept, config)
    assert [lake_owner(p) for p in lake_files(config.lake("train"))] == [kept.id]
    assert lake_rows(config) == N
    assert list(config.inbox("train").iterdir()) == []


# -- the intake alone ----------------------------------------------------------------------------


def test_a_score_drop_in_another_format_is_not_scored_again(
    config: IngestConfig, ledger: Ledger, tmp_path: Path
) -> None:
    announced: list[int] = []
    intake = Intake(config, ledger, on_normalized=lambda r: announced.append(r.id))
    table = rows(5)
    first = config.inbox("score") / "a.csv"
    first.write_bytes(as_csv(table))
    second = config.inbox("score") / "a.parquet"
    second.write_bytes(as_parquet(table))
    kept, duplicate = intake.take(first, "score"), intake.take(second, "score")
    assert_a_duplicate_by_content(duplicate, kept, config)
    assert announced == [kept.id]  # only the first goes on to the scorer
    assert len(lake_files(config.lake("score"))) == 1


def test_content_taken_again_after_its_drop_was_refused(
    config: IngestConfig, ledger: Ledger, tmp_path: Path
) -> None:
    from ingest.base.errors import IngestError

    class Refused(IngestError):
        code = "missing_features"

    intake = Intake(config, ledger)
    table = rows(5)
    (config.inbox("score") / "a.csv").write_bytes(as_csv(table))
    first = intake.take(config.inbox("score") / "a.csv", "score")
    intake.reject_normalized(first, Refused("no target"))  # no longer live
    (config.inbox("score") / "a.json").write_bytes(as_json(table))
    again = intake.take(config.inbox("score") / "a.json", "score")
    assert again.state == NORMALIZED and again.duplicate_of is None


# -- crashes and races between the lake write and the commit --------------------------------------

_CHILD = """
import os, sys
from pathlib import Path
from ingest.base.config import DataLayout, IngestConfig
from ingest.pipeline.intake import Intake
from ingest.state.db import StateDB
from ingest.state.ledger import Ledger

data_dir, step, first, second = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
config = IngestConfig(DataLayout(data_dir), max_attempts=3)
commit, settle = Ledger.mark_normalized, Intake._settle

def die(*args, **kwargs):
    os._exit(9)  # like kill -9: no cleanup, no finally blocks

def racing(self, file_id, **values):
    # this drop's lake file is published; another process commits the same table first
    Ledger.mark_normalized = commit
    Intake(config, Ledger(StateDB.at(config.db_path))).take(second, "train")
    if step == "race_then_kill":
        Intake._settle = die  # this drop's commit says duplicate; die before its cleanup
    return commit(self, file_id, **values)

intake = Intake(config, Ledger(StateDB.at(config.db_path)))
if step == "kill_before_commit":
    Ledger.mark_normalized = die
elif step in ("race", "race_then_kill"):
    Ledger.mark_normalized = racing
intake.take(first, "train")
if step == "kill_after_duplicate":
    Intake._settle = die
    intake.take(second, "train")
sys.exit(0 if step == "race" else 3)
"""


def _run_child(config: IngestConfig, step: str, first: Path, second: Path) -> int:
    """Run the intake in a child process that dies (or races) at ``step``."""
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(config.data_dir), step, str(first), str(second)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode in (0, 9), child.stderr
    return child.returncode


@pytest.mark.parametrize(
    ("step", "code", "lake_files_before_resume"),
    [
        ("kill_before_commit", 9, 1),  # the CSV's lake file is published, its row not committed
        ("race", 0, 1),  # both published; the later commit is the duplicate and cleans up
        ("race_then_kill", 9, 2),  # ... killed after that commit, before its lake file went
        ("kill_after_duplicate", 9, 1),  # a duplicate committed, its original not yet archived
    ],
)
def test_a_kill_or_a_race_around_the_commit_still_keeps_the_rows_once(
    config: IngestConfig,
    ledger: Ledger,
    step: str,
    code: int,
    lake_files_before_resume: int,
) -> None:
    table = rows(50)
    first, second = config.inbox("train") / "a.csv", config.inbox("train") / "a.xlsx"
    first.write_bytes(as_csv(table))
    second.write_bytes(as_xlsx(table))

    assert _run_child(config, step, first, second) == code
    assert len(lake_files(config.lake("train"))) == lake_files_before_resume  # the kill's moment
    intake = Intake(config, ledger)
    if step == "kill_before_commit":
        intake.take(second, "train")  # another process takes the same table meanwhile
    intake.resume()

    records = {r.original_name: r for r in ledger.list(limit=None)}
    assert sorted(records) == ["a.csv", "a.xlsx"] and all(r.terminal for r in records.values())
    kept = next(r for r in records.values() if r.state == NORMALIZED)
    [duplicate] = [r for r in records.values() if r is not kept]
    assert_a_duplicate_by_content(duplicate, kept, config)
    assert (config.archive / f"{kept.id}__{kept.original_name}").is_file()
    assert [lake_owner(p) for p in lake_files(config.lake("train"))] == [kept.id]
    assert lake_rows(config) == len(table)
    assert [p for p in config.processing.rglob("*") if p.is_file() and p.suffix != ".lock"] == []
    assert list(config.inbox("train").iterdir()) == []
