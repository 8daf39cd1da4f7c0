"""The file ledger against a real SQLite file and a real PostgreSQL server (the ``ledger`` tests
run on both): states, refused transitions, racing claims."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ingest.state.db import StateDB, model_schema
from ingest.state.ledger import (
    BY_BYTES,
    BY_CONTENT,
    DUPLICATE,
    NORMALIZED,
    QUARANTINED,
    RECEIVED,
    SCORED,
    IllegalTransition,
    Ledger,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ledger(open_state, tmp_path: Path) -> Ledger:
    """The ledger on each backend: a model's ``state.db``, or the model's schema on PostgreSQL."""
    return Ledger(open_state(model_schema("default")), tmp_path)

# The schema script of the release before the ledger moved onto SQLAlchemy, copied as it was: a
# state.db made by any earlier release holds this table (the columns below added by ALTER TABLE).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    original_name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('train', 'score')),
    size_bytes INTEGER,
    sha256 TEXT,
    state TEXT NOT NULL
        CHECK (state IN ('received', 'normalized', 'scored', 'quarantined', 'duplicate',
                         'retried')),
    rows INTEGER,
    columns INTEGER,
    format TEXT,
    encoding TEXT,
    delimiter TEXT,
    column_map TEXT,
    error TEXT,
    lake_path TEXT,
    archive_path TEXT,
    quarantine_path TEXT,
    duplicate_of INTEGER REFERENCES files (id),
    attempts INTEGER NOT NULL DEFAULT 0,
    processing_path TEXT UNIQUE,
    output_path TEXT,
    model_version TEXT,
    rows_scored INTEGER,
    rows_failed INTEGER,
    scoring_claimed_at TEXT,
    scoring_claims INTEGER NOT NULL DEFAULT 0,
    received_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT,
    scored_at TEXT
);
CREATE INDEX IF NOT EXISTS files_kind_sha ON files (kind, sha256);
CREATE INDEX IF NOT EXISTS files_state ON files (state, kind);
CREATE INDEX IF NOT EXISTS files_finished ON files (finished_at);
"""
_ADDED = """
ALTER TABLE files ADD COLUMN content_sha256 TEXT;
ALTER TABLE files ADD COLUMN duplicate_by TEXT CHECK (duplicate_by IN ('bytes', 'content'));
ALTER TABLE files ADD COLUMN retried_as INTEGER REFERENCES files (id);
ALTER TABLE files ADD COLUMN queued_as TEXT;
CREATE INDEX IF NOT EXISTS files_kind_content ON files (kind, content_sha256);
"""
# What this release adds to that table (a scored drop's drift verdict, issue 20; who claimed a
# drop, issue 19).
_THIS_RELEASE = (
    "ALTER TABLE files ADD COLUMN drift TEXT; ALTER TABLE files ADD COLUMN claimed_by TEXT;"
)


def _receive(ledger: Ledger, name: str = "a.csv", kind: str = "score", sha: str = "s1"):
    return ledger.receive(
        original_name=name,
        kind=kind,
        size_bytes=10,
        sha256=sha,
        processing_path=ledger.data_dir / "processing" / kind / f"{name}-{sha}-{time.time_ns()}",
    )


def _normalize(ledger: Ledger, file_id: int, kind: str = "score"):
    return ledger.mark_normalized(
        file_id,
        rows=3,
        columns=2,
        format="csv",
        encoding="utf-8",
        delimiter=",",
        column_map={"A b": "a_b", "C": "c"},
        lake_path=ledger.data_dir / "lake" / kind / "s1.parquet",
        archive_path=ledger.data_dir / "archive" / f"{file_id}__a.csv",
    )


def test_received_then_normalized_then_scored(ledger: Ledger) -> None:
    record = _receive(ledger)
    assert record.state == RECEIVED and record.attempts == 0
    assert ledger.start_attempt(record.id) == 1
    normalized = _normalize(ledger, record.id)
    assert normalized.state == NORMALIZED
    assert normalized.column_map == {"A b": "a_b", "C": "c"}
    assert normalized.lake_path == "lake/score/s1.parquet"  # stored relative to data_dir
    assert ledger.resolve(normalized.lake_path) == ledger.data_dir / "lake/score/s1.parquet"
    assert normalized.finished_at is not None
    assert [r.id for r in ledger.pending_score()] == [record.id]
    scored = ledger.mark_scored(record.id, ledger.data_dir / "outbox/1.parquet", "3", 3, 0)
    assert (scored.state, scored.model_version, scored.rows_scored) == (SCORED, "3", 3)
    assert ledger.pending_score() == []
    json.dumps(scored.to_dict())  # JSON-ready for GET /files


@pytest.mark.parametrize(
    "action",
    [
        "score_received",
        "normalize_twice",
        "quarantine_normalized",
        "score_twice",
        "attempt_on_terminal",
        "duplicate_normalized",
    ],
)
def test_illegal_transitions_are_refused(ledger: Ledger, action: str) -> None:
    record = _receive(ledger)
    if action != "score_received":
        _normalize(ledger, record.id)
    calls = {
        "score_received": lambda: ledger.mark_scored(record.id, "o", "1", 1, 0),
        "normalize_twice": lambda: _normalize(ledger, record.id),
        "quarantine_normalized": lambda: ledger.mark_quarantined(
            record.id, error={"code": "x", "message": "y"}, quarantine_path="quarantine/q"
        ),
        "score_twice": lambda: (
            ledger.mark_scored(record.id, "o", "1", 1, 0),
            ledger.mark_scored(record.id, "o", "1", 1, 0),
        ),
        "attempt_on_terminal": lambda: ledger.start_attempt(record.id),
        "duplicate_normalized": lambda: ledger.mark_duplicate(
            record.id, duplicate_of=1, archive_path="archive/x"
        ),
    }
    before = ledger.get(record.id)
    with pytest.raises(IllegalTransition, match=f"file {record.id}"):
        calls[action]()
    after = ledger.get(record.id)
    assert after is not None and before is not None
    if action != "score_twice":
        assert after == before  # a refused transition changes nothing


def test_train_drops_are_never_scored(ledger: Ledger) -> None:
    record = _receive(ledger, kind="train")
    _normalize(ledger, record.id, kind="train")
    assert ledger.pending_score() == []
    assert ledger.claim_for_scoring(record.id) is False
    with pytest.raises(IllegalTransition, match="train drop"):
        ledger.mark_scored(record.id, "o", "1", 1, 0)


def test_unknown_id_is_refused(ledger: Ledger) -> None:
    assert ledger.get(999) is None
    with pytest.raises(IllegalTransition, match="no file with id 999"):
        ledger.mark_scored(999, "o", "1", 1, 0)


def test_same_content_is_a_duplicate_of_the_first_live_drop(ledger: Ledger) -> None:
    first = _receive(ledger, "a.csv")
    second = _receive(ledger, "b.csv")
    other_kind = _receive(ledger, "c.csv", kind="train")
    assert (second.state, second.duplicate_of) == (DUPLICATE, first.id)
    assert second.archive_path == f"archive/{second.id}__b.csv"
    assert other_kind.state == RECEIVED  # dedupe is per kind
    assert ledger.find_by_sha("score", "s1") == ledger.get(first.id)


def test_quarantined_content_can_be_dropped_again(ledger: Ledger) -> None:
    first = _receive(ledger)
    ledger.mark_quarantined(
        first.id, error={"code": "malformed", "message": "m"}, quarantine_path="quarantine/1__a.csv"
    )
    assert ledger.find_by_sha("score", "s1") is None
    again = _receive(ledger)
    assert again.state == RECEIVED


def test_rejected_at_receive_is_quarantined_at_once(ledger: Ledger) -> None:
    record = ledger.receive(
        original_name="big.csv",
        kind="score",
        size_bytes=10**10,
        sha256=None,
        processing_path=None,
        rejected={"code": "file_too_large", "message": "too big"},
    )
    assert record.state == QUARANTINED
    assert record.error == {"code": "file_too_large", "message": "too big"}
    assert record.quarantine_path == f"quarantine/{record.id}__big.csv"


def test_listing_counts_and_last_ingest(ledger: Ledger) -> None:
    ids = [_receive(ledger, f"f{i}.csv", sha=f"s{i}").id for i in range(5)]
    _normalize(ledger, ids[1])
    ledger.mark_quarantined(ids[2], error={"code": "c", "message": "m"}, quarantine_path="q")
    assert [r.id for r in ledger.list()] == ids[::-1]
    assert [r.id for r in ledger.list(limit=2, offset=1)] == ids[3:1:-1]
    assert [r.id for r in ledger.list(state=RECEIVED)] == [ids[4], ids[3], ids[0]]
    assert ledger.list(kind="train") == []
    counts = ledger.counts_by_state()
    assert counts == {
        "received": 3,
        "normalized": 1,
        "scored": 0,
        "quarantined": 1,
        "duplicate": 0,
        "retried": 0,
    }
    last = ledger.last_ingest()
    assert last is not None and last.id == ids[2]


def test_concurrent_receives_of_one_content_keep_one_original(ledger: Ledger) -> None:
    ledger.initialize()
    results: list = []
    barrier = threading.Barrier(8)

    def receive(i: int) -> None:
        barrier.wait()
        mine = Ledger(ledger.db.reopen(), ledger.data_dir)
        results.append(_receive(mine, f"f{i}.csv", sha="same"))

    threads = [threading.Thread(target=receive, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    originals = [r for r in results if r.state == RECEIVED]
    assert len(originals) == 1
    assert all(r.duplicate_of == originals[0].id for r in results if r.state == DUPLICATE)


def test_claim_for_scoring_has_one_winner_among_threads(ledger: Ledger) -> None:
    record = _receive(ledger)
    _normalize(ledger, record.id)
    wins: list[bool] = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        barrier.wait()
        wins.append(Ledger(ledger.db.reopen(), ledger.data_dir).claim_for_scoring(record.id))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1


_CLAIMER = """
import json, sys, time
from pathlib import Path
from ingest.state.db import StateDB, model_schema
from ingest.state.ledger import Ledger
where, schema = sys.argv[1], sys.argv[2] or None
go, n = Path(sys.argv[3]), int(sys.argv[4])
db = StateDB(where, schema=schema) if "://" in where else StateDB.at(Path(where))
ledger = Ledger(db, go.parent)
(go.parent / f"ready-{sys.argv[5]}").touch()
while not go.exists():
    time.sleep(0.005)
print(json.dumps([i for i in range(1, n + 1) if ledger.claim_for_scoring(i)]))
"""


def _where(ledger: Ledger) -> tuple[str, str]:
    """Name a ledger's database for a child process: its file, or its URL and schema."""
    db = ledger.db
    return (str(db.path), "") if db.path is not None else (str(db.url), db.schema or "")


def test_claim_for_scoring_has_one_winner_among_processes(
    ledger: Ledger, tmp_path: Path, wait_for
) -> None:
    n = 40
    for i in range(n):
        _normalize(ledger, _receive(ledger, f"f{i}.csv", sha=f"s{i}").id)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIMER, *_where(ledger), str(go), str(n), str(k)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in range(4)
    ]
    wait_for(lambda: len(list(tmp_path.glob("ready-*"))) == 4, what="claimers to start")
    go.touch()  # all start together, so the claims really overlap
    won = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    flat = sorted(i for ids in won for i in ids)
    assert flat == list(range(1, n + 1))  # every drop claimed exactly once


def test_stale_claim_can_be_retaken_and_release_frees_it(ledger: Ledger, wait_for) -> None:
    record = _receive(ledger)
    _normalize(ledger, record.id)
    assert ledger.claim_for_scoring(record.id) is True
    assert ledger.claim_for_scoring(record.id) is False
    wait_for(
        lambda: ledger.claim_for_scoring(record.id, stale_after=0.01),
        timeout=5,
        what="a stale claim to be retaken",
    )
    ledger.release_scoring_claim(record.id)
    assert ledger.claim_for_scoring(record.id) is True
    scored = ledger.mark_scored(record.id, "outbox/x.parquet", "1", 3, 0)
    assert scored.scoring_claimed_at is None and scored.scoring_claims == 3
    assert ledger.claim_for_scoring(record.id, stale_after=0) is False  # scored: nothing to do


def test_schema_lives_beside_other_tables(config) -> None:
    import sqlite3

    ledger = Ledger(StateDB.at(config.db_path))
    conn = sqlite3.connect(ledger.db.path)
    conn.execute("CREATE TABLE models (version INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    _receive(ledger)
    again = Ledger(ledger.db.reopen(), ledger.data_dir)
    assert again.counts_by_state()["received"] == 1
    conn = sqlite3.connect(ledger.db.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


# -- duplicates by content (the normalized table's hash) -----------------------------------------


def _commit(ledger: Ledger, file_id: int, content: str | None):
    return ledger.mark_normalized(
        file_id,
        rows=3,
        columns=2,
        format="csv",
        encoding=None,
        delimiter=None,
        column_map={},
        lake_path=f"lake/train/{file_id}.parquet",
        archive_path=f"archive/{file_id}__a.csv",
        content_sha256=content,
    )


def test_byte_duplicates_say_so(ledger: Ledger) -> None:
    _receive(ledger, "a.csv")
    second = _receive(ledger, "b.csv")
    assert (second.state, second.duplicate_by) == (DUPLICATE, BY_BYTES)


def test_the_commit_makes_a_duplicate_of_content_committed_first_whatever_the_ids(
    ledger: Ledger,
) -> None:
    early = _receive(ledger, "a.csv", kind="train", sha="bytes-a")
    late = _receive(ledger, "a.xlsx", kind="train", sha="bytes-b")
    other_kind = _receive(ledger, "a.json", kind="score", sha="bytes-c")
    kept = _commit(ledger, late.id, "table-1")  # the later id commits first
    duplicate = _commit(ledger, early.id, "table-1")
    assert (kept.state, kept.content_sha256) == (NORMALIZED, "table-1")
    assert (duplicate.state, duplicate.duplicate_of, duplicate.duplicate_by) == (
        DUPLICATE,
        late.id,
        BY_CONTENT,
    )
    assert duplicate.lake_path is None and duplicate.rows is None
    assert duplicate.archive_path == f"archive/{early.id}__a.csv"
    assert _commit(ledger, other_kind.id, "table-1").state == NORMALIZED  # per kind
    assert ledger.find_by_content("train", "table-1") == ledger.get(late.id)
    assert ledger.find_by_content("train", "table-1", excluding=late.id) is None


def test_content_of_a_refused_drop_is_no_longer_live(ledger: Ledger) -> None:
    first = _receive(ledger, "a.csv", sha="bytes-a")
    _commit(ledger, first.id, "table-1")
    ledger.mark_score_refused(
        first.id, error={"code": "x", "message": "y"}, quarantine_path="quarantine/q"
    )
    again = _receive(ledger, "a.json", sha="bytes-b")
    assert _commit(ledger, again.id, "table-1").state == NORMALIZED


def test_concurrent_commits_of_one_table_keep_one(ledger: Ledger) -> None:
    received = [_receive(ledger, f"{i}.csv", kind="train", sha=f"bytes-{i}") for i in range(8)]
    results = []
    barrier = threading.Barrier(len(received))

    def commit(file_id: int) -> None:
        barrier.wait()
        results.append(_commit(ledger, file_id, "table-1"))

    threads = [threading.Thread(target=commit, args=(r.id,)) for r in received]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    [kept] = [r for r in results if r.state == NORMALIZED]
    assert all(
        (r.duplicate_of, r.duplicate_by) == (kept.id, BY_CONTENT) for r in results if r != kept
    )


def test_an_older_state_db_gains_the_columns_and_its_duplicates_say_bytes(
    tmp_path: Path,
) -> None:
    db = tmp_path / "state.db"
    older = sqlite3.connect(db)  # the files table as the first release made it
    older.executescript(_SCHEMA)
    older.execute(
        "INSERT INTO files (original_name, kind, sha256, state, duplicate_of, received_at, "
        "updated_at) VALUES ('a.csv', 'score', 's', 'duplicate', NULL, 't', 't')"
    )
    older.commit()
    older.close()
    ledger = Ledger(StateDB.at(db))
    [record] = ledger.list()
    assert (record.duplicate_by, record.content_sha256) == (BY_BYTES, None)
    fresh = _receive(ledger, "b.csv", sha="other")
    assert _commit(ledger, fresh.id, "table-1").content_sha256 == "table-1"


# -- the state database of the previous release, and races through the new store ----------------


def test_a_state_db_of_the_previous_release_is_read_and_updated_as_it_is(tmp_path: Path) -> None:
    """The table the last release made (script, then its ALTERs), a row in it, ids used up to 9."""
    db = tmp_path / "state.db"
    older = sqlite3.connect(db)
    older.executescript(_SCHEMA + _ADDED)
    for i in range(1, 10):
        older.execute(
            "INSERT INTO files (id, original_name, kind, sha256, state, received_at, updated_at) "
            "VALUES (?, 'gone.csv', 'score', 'g', 'quarantined', 't', 't')",
            (i,),
        )
    older.execute("DELETE FROM files WHERE id != 7")  # the counter stays at 9
    older.execute(
        "UPDATE files SET original_name = 'a.csv', sha256 = 's1', state = 'normalized', "
        "rows = 3, columns = 2, format = 'csv', column_map = '{\"A\": \"a\"}', "
        "lake_path = 'lake/score/7.parquet', archive_path = 'archive/7__a.csv', "
        "content_sha256 = 'c1', attempts = 1, finished_at = '2026-01-01T00:00:00.000000Z'"
    )
    older.commit()
    table_sql = older.execute("SELECT sql FROM sqlite_master WHERE name = 'files'").fetchone()
    older.close()

    ledger = Ledger(StateDB.at(db))
    [record] = ledger.list()
    assert (record.id, record.original_name, record.state) == (7, "a.csv", NORMALIZED)
    assert (record.column_map, record.content_sha256, record.attempts) == ({"A": "a"}, "c1", 1)
    assert ledger.last_ingest() == record == ledger.find_by_sha("score", "s1")
    assert ledger.find_by_content("score", "c1") == record
    assert ledger.pending_score() == [record]
    assert ledger.claim_for_scoring(7) is True
    scored = ledger.mark_scored(7, ledger.data_dir / "outbox/7.parquet", "2", 3, 0)
    assert (scored.state, scored.output_path, scored.scoring_claims) == (
        SCORED,
        "outbox/7.parquet",
        1,
    )
    assert _receive(ledger, "b.csv", sha="s2").id == 10  # ids are never handed out twice
    assert ledger.db.version("ledger") == 10
    check = sqlite3.connect(db)
    [now] = check.execute("SELECT sql FROM sqlite_master WHERE name = 'files'").fetchone()
    # nothing rebuilt: the verdict's and the claimant's columns added
    assert now == table_sql[0][:-1] + ", drift TEXT, claimed_by TEXT)"
    assert check.execute("PRAGMA foreign_key_check").fetchall() == []
    check.close()


def test_a_new_state_db_holds_the_table_the_previous_release_made(tmp_path: Path) -> None:
    """Same columns in the same order, types, defaults, keys and indexes as the old script."""

    def shape(path: Path) -> tuple[list[tuple], list[tuple], set[tuple]]:
        conn = sqlite3.connect(path)
        columns = conn.execute("PRAGMA table_info(files)").fetchall()
        keys = [row[2:5] for row in conn.execute("PRAGMA foreign_key_list(files)")]
        indexes = {
            (row[1], row[2], tuple(c[2] for c in conn.execute(f"PRAGMA index_info('{row[1]}')")))
            for row in conn.execute("PRAGMA index_list(files)")
        }
        conn.close()
        return columns, sorted(keys), indexes

    old = tmp_path / "old.db"
    older = sqlite3.connect(old)
    older.executescript(_SCHEMA + _ADDED + _THIS_RELEASE)
    older.close()
    Ledger(StateDB.at(tmp_path / "new.db")).initialize()
    new_columns, new_keys, new_indexes = shape(tmp_path / "new.db")
    old_columns, old_keys, old_indexes = shape(old)
    assert [c[1:] for c in new_columns] == [c[1:] for c in old_columns]
    assert new_keys == old_keys
    assert {i[2] for i in new_indexes} == {i[2] for i in old_indexes}
    assert {i[0] for i in old_indexes if not i[0].startswith("sqlite_")} <= {
        i[0] for i in new_indexes
    }


def test_two_writers_racing_one_transition_have_one_winner(ledger: Ledger) -> None:
    """Eight retries of one quarantined drop, each through its own ledger: exactly one wins."""
    record = _receive(ledger)
    ledger.mark_quarantined(record.id, error={"code": "c", "message": "m"}, quarantine_path="q")
    barrier = threading.Barrier(8)
    won: list[str] = []
    refused: list[IllegalTransition] = []

    def retry(i: int) -> None:
        mine = Ledger(ledger.db.reopen(), ledger.data_dir)
        barrier.wait()
        try:
            mine.mark_retried(record.id, queued_as=f"retry{i}__a.csv")
            won.append(f"retry{i}__a.csv")
        except IllegalTransition as refusal:
            refused.append(refusal)

    threads = [threading.Thread(target=retry, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(refused) == 7
    assert all("in state 'retried'" in str(refusal) for refusal in refused)
    after = ledger.get(record.id)
    assert after is not None and (after.state, after.queued_as) == ("retried", won[0])


def test_defer_gives_the_attempt_back_and_never_below_zero(ledger: Ledger) -> None:
    record = _receive(ledger)
    assert ledger.start_attempt(record.id) == 1
    waiting = ledger.defer(record.id, error={"code": "disk_full", "message": "no space"})
    assert (waiting.attempts, waiting.error) == (0, {"code": "disk_full", "message": "no space"})
    assert ledger.defer(record.id, error={"code": "disk_full", "message": "again"}).attempts == 0
    ledger.mark_quarantined(record.id, error={"code": "c", "message": "m"}, quarantine_path="q")
    with pytest.raises(IllegalTransition, match="cannot defer"):
        ledger.defer(record.id, error={"code": "x", "message": "y"})


@pytest.mark.parametrize("folder", ["100% data", "x%41y", "what?x=1", "a#b"])
def test_a_data_folder_with_url_characters_in_its_name_holds_the_ledger(
    tmp_path: Path, folder: str
) -> None:
    """The path is a file name, never parsed as a URL: ``%`` and ``?`` are kept as they are."""
    db = tmp_path / folder / "state.db"
    ledger = Ledger(StateDB.at(db))
    record = _receive(ledger)
    assert ledger.get(record.id) == record
    assert ledger.data_dir == db.parent and db.is_file()
    assert [p.name for p in tmp_path.iterdir()] == [folder]  # no other file was made instead
