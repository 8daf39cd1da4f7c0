"""The watcher with the real watchdog observers (native and polling) on real folders."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ingest.base.config import IngestConfig
from ingest.state.ledger import DUPLICATE, NORMALIZED, FileRecord, Ledger
from tests.ingest._watching import OBSERVERS, MakeWatcher, terminal

GOOD = "id,x\n1,1.5\n2,2.5\n"


@pytest.mark.parametrize("observer", OBSERVERS)
def test_slow_writer_is_taken_once_with_every_row(
    make_watcher: MakeWatcher, config: IngestConfig, ledger: Ledger, wait_for, observer: str
) -> None:
    make_watcher(observer)
    path = config.inbox("score") / "slow.csv"
    rows = 30
    with open(path, "w") as fh:
        fh.write("id,x\n")
        for i in range(rows):  # ~3 s of appends, each gap well under stable_seconds
            fh.write(f"{i},{i}.5\n")
            fh.flush()
            time.sleep(0.1)
            assert ledger.list() == [], "taken while still being written"
    wait_for(lambda: terminal(ledger), what="the slow file to be taken")
    [record] = ledger.list()
    assert (record.state, record.rows) == (NORMALIZED, rows)


@pytest.mark.parametrize("observer", OBSERVERS)
def test_moved_in_and_renamed_files_are_one_drop_each(
    make_watcher: MakeWatcher,
    config: IngestConfig,
    ledger: Ledger,
    wait_for,
    tmp_path: Path,
    observer: str,
) -> None:
    make_watcher(observer)
    outside = tmp_path / "outside.csv"
    outside.write_text(GOOD)
    os.rename(outside, config.inbox("score") / "moved.csv")
    part = config.inbox("score") / "renamed.csv.part"
    part.write_text(GOOD + "3,3.5\n")
    os.rename(part, config.inbox("score") / "renamed.csv")
    wait_for(lambda: len(terminal(ledger)) == 2, what="both files to be taken")
    names = sorted(r.original_name for r in ledger.list())
    assert names == ["moved.csv", "renamed.csv"]
    assert {r.state for r in ledger.list()} == {NORMALIZED}
    assert list(config.inbox("score").iterdir()) == []


def test_same_content_twice_makes_one_lake_file(
    make_watcher: MakeWatcher, config: IngestConfig, ledger: Ledger, wait_for
) -> None:
    make_watcher()
    (config.inbox("train") / "a.csv").write_text(GOOD)
    (config.inbox("train") / "b.csv").write_text(GOOD)
    wait_for(lambda: len(terminal(ledger)) == 2, what="both drops")
    assert sorted(r.state for r in ledger.list()) == [DUPLICATE, NORMALIZED]
    [lake_file] = config.lake("train").glob("*.parquet")
    assert pq.read_table(lake_file).num_rows == 2


def test_files_that_waited_while_nothing_ran_are_taken_at_start(
    make_watcher: MakeWatcher, config: IngestConfig, ledger: Ledger, wait_for
) -> None:
    for i in range(3):
        (config.inbox("score") / f"waiting{i}.csv").write_text(GOOD + f"{i + 10},0.5\n")
    (config.inbox("train") / "label.csv").write_text(GOOD)
    leftover = config.processing / "score" / "deadbeef" / "claimed.csv"
    leftover.parent.mkdir(parents=True)
    leftover.write_text(GOOD + "99,9.5\n")  # claimed by a run that was killed
    make_watcher()
    wait_for(lambda: len(terminal(ledger)) == 5, what="all five files")
    assert {r.state for r in ledger.list()} == {NORMALIZED}
    assert not leftover.exists()


def test_ignored_names_stay_untouched(
    make_watcher: MakeWatcher, config: IngestConfig, ledger: Ledger, wait_for
) -> None:
    watcher = make_watcher()
    inbox = config.inbox("score")
    ignored = [
        ".hidden.csv",
        "~$book.xlsx",
        "x.csv.tmp",
        "y.csv.part",
        "z.csv.crdownload",
        ".a.csv.swp",
    ]
    for name in ignored:
        (inbox / name).write_text(GOOD)
    (inbox / "sub").mkdir()  # links are refused, not ignored: tests/ingest/test_drop_hazards.py
    (inbox / "marker.csv").write_text(GOOD)
    wait_for(lambda: len(terminal(ledger)) == 1, what="the marker file")
    scans = watcher.status()["scans"]
    wait_for(lambda: watcher.status()["scans"] >= scans + 2, what="two more rescans")
    assert sorted(p.name for p in inbox.iterdir()) == sorted([*ignored, "sub"])
    assert [r.original_name for r in ledger.list()] == ["marker.csv"]


def test_dead_worker_thread_is_restarted(
    make_watcher: MakeWatcher, config: IngestConfig, ledger: Ledger, wait_for
) -> None:
    calls: list[int] = []

    def dies_once(record: FileRecord) -> None:
        calls.append(record.id)
        if len(calls) == 1:
            raise SystemExit("listener pulled the thread down")  # not an Exception: escapes

    watcher = make_watcher(on_normalized=dies_once)
    (config.inbox("score") / "first.csv").write_text(GOOD)
    wait_for(lambda: watcher.status()["restarts"] >= 1, what="the worker to be restarted")
    (config.inbox("score") / "second.csv").write_text(GOOD + "3,3.5\n")
    wait_for(lambda: len(calls) == 2, what="the restarted worker to take the next file")
    assert watcher.is_alive()
    assert {r.state for r in ledger.list()} == {NORMALIZED}


def test_stop_finishes_cleanly_and_takes_nothing_after(
    make_watcher: MakeWatcher, config: IngestConfig, ledger: Ledger, wait_for
) -> None:
    watcher = make_watcher()
    status = watcher.status()
    assert status["alive"] and status["observer"] == "native" and status["restarts"] == 0
    (config.inbox("score") / "a.csv").write_text(GOOD)
    wait_for(lambda: len(terminal(ledger)) == 1, what="the first file")
    assert watcher.status()["last_event"] is not None
    assert watcher.stop(timeout=10) is True
    assert not watcher.is_alive()
    assert not any(t.name.startswith("dropscore-ingest") for t in threading.enumerate())
    (config.inbox("score") / "late.csv").write_text(GOOD + "3,3.5\n")
    assert len(ledger.list()) == 1
    assert (config.inbox("score") / "late.csv").exists()


def test_stop_lets_the_in_flight_file_finish(
    make_watcher: MakeWatcher, config: IngestConfig, ledger: Ledger, wait_for
) -> None:
    entered = threading.Event()
    release = threading.Event()

    def slow_listener(record: FileRecord) -> None:
        entered.set()
        release.wait(10)

    watcher = make_watcher(on_normalized=slow_listener)
    (config.inbox("score") / "a.csv").write_text(GOOD)
    wait_for(entered.is_set, what="the take to be in flight")
    stopper = threading.Thread(target=watcher.stop, kwargs={"timeout": 10})
    stopper.start()
    release.set()
    stopper.join(15)
    assert not stopper.is_alive()
    [record] = ledger.list()
    assert record.state == NORMALIZED


def test_native_observer_failure_falls_back_to_polling(
    make_watcher: MakeWatcher,
    config: IngestConfig,
    ledger: Ledger,
    wait_for,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import ingest.pipeline.watcher

    class ExhaustedInotify(ingest.pipeline.watcher.Observer):  # type: ignore[misc, valid-type]
        def start(self) -> None:
            raise OSError(28, "inotify watch limit reached")

    monkeypatch.setattr(ingest.pipeline.watcher, "Observer", ExhaustedInotify)
    watcher = make_watcher()
    assert watcher.status()["observer"] == "polling"
    assert any("polling instead" in r.getMessage() for r in caplog.records)
    (config.inbox("score") / "a.csv").write_text(GOOD)
    wait_for(lambda: len(terminal(ledger)) == 1, what="the file, via polling")


def test_a_file_with_a_future_mtime_waits_the_full_stability_window(
    make_watcher: MakeWatcher, config: IngestConfig, ledger: Ledger, wait_for
) -> None:
    make_watcher()
    path = config.inbox("score") / "skewed.csv"
    path.write_text(GOOD)
    future = time.time() + 3600
    os.utime(path, (future, future))
    wait_for(lambda: len(terminal(ledger)) == 1, what="the file despite its clock skew")


@pytest.mark.parametrize("observer", OBSERVERS)
def test_a_deleted_and_recreated_inbox_is_watched_again(
    make_watcher: MakeWatcher, config: IngestConfig, ledger: Ledger, wait_for, observer: str
) -> None:
    import shutil

    watcher = make_watcher(observer)
    shutil.rmtree(config.inbox("score"))
    wait_for(lambda: watcher.status()["restarts"] >= 1, what="the observer to be restarted")
    wait_for(watcher.is_alive, what="the watcher to be whole again")
    (config.inbox("score") / "after.csv").write_text(GOOD)
    wait_for(lambda: len(terminal(ledger)) == 1, what="a file in the recreated inbox")
