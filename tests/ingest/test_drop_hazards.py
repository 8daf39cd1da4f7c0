"""Hazardous drops through the real watcher: links, paused writers, producers using markers."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ingest.base.config import IngestConfig
from ingest.pipeline.intake import Intake
from ingest.state.ledger import NORMALIZED, QUARANTINED, Ledger
from tests.ingest._watching import OBSERVERS, MakeWatcher, terminal

LINK_REASON = "symbolic links are not taken: copy or move the file itself into the inbox"


@pytest.mark.parametrize("observer", OBSERVERS)
def test_a_symlink_is_quarantined_with_its_reason_and_the_link_moved_out(
    make_watcher: MakeWatcher,
    config: IngestConfig,
    ledger: Ledger,
    wait_for,
    tmp_path: Path,
    observer: str,
) -> None:
    target = tmp_path / "secret.csv"
    target.write_text("id,x\n1,1.5\n")
    before = target.stat()
    link = config.inbox("train") / "passwd.csv"
    make_watcher(observer)
    link.symlink_to(target)
    [record] = wait_for(lambda: terminal(ledger), what="the link to be refused")
    # the row is the commit point; the link is moved and its error record written after it
    error_record = config.quarantine / f"{record.id}__passwd.csv.error.json"
    wait_for(error_record.exists, what="the error record, written after the row")
    assert record.state == QUARANTINED
    assert record.error == {"code": "symlink", "message": LINK_REASON}
    assert record.sha256 is None and record.rows is None  # nothing read through the link
    assert not os.path.lexists(link)
    moved = config.quarantine / f"{record.id}__passwd.csv"
    assert moved.is_symlink() and os.readlink(moved) == str(target)
    body = json.loads(error_record.read_text())
    assert body["message"] == LINK_REASON
    assert target.read_text() == "id,x\n1,1.5\n"
    assert (target.stat().st_mtime_ns, target.stat().st_ino) == (
        before.st_mtime_ns,
        before.st_ino,
    )
    assert list(config.lake("train").glob("*.parquet")) == []


def test_a_link_waiting_at_start_is_refused_by_the_start_up_scan(
    make_watcher: MakeWatcher, config: IngestConfig, ledger: Ledger, wait_for, tmp_path: Path
) -> None:
    (config.inbox("score") / "dangling.csv").symlink_to(tmp_path / "nowhere.csv")
    make_watcher()
    [record] = wait_for(lambda: terminal(ledger), what="the dangling link to be refused")
    assert (record.state, record.error["code"]) == (QUARANTINED, "symlink")
    wait_for(lambda: os.listdir(config.inbox("score")) == [], what="the link to leave the inbox")


def _lines(start: int, stop: int) -> str:
    """Data rows ``start`` .. ``stop - 1`` of a two-column CSV."""
    return "".join(f"{i},{i}.5\n" for i in range(start, stop))


def _lake_ids(config: IngestConfig, kind: str) -> list[int]:
    """Every id in the kind's lake, across its files."""
    return sorted(
        i for f in config.lake(kind).glob("*.parquet") for i in pq.read_table(f)["id"].to_pylist()
    )


@pytest.mark.parametrize("observer", OBSERVERS)
def test_a_writer_pausing_longer_than_stable_seconds_loses_no_rows(
    make_watcher: MakeWatcher, config: IngestConfig, ledger: Ledger, wait_for, observer: str
) -> None:
    """The slowgap reproduction: 100 rows, a pause of several stable_seconds, 100 more."""
    make_watcher(observer)
    path = config.inbox("train") / "slowgap.csv"
    with open(path, "w") as fh:
        fh.write("id,x\n" + _lines(0, 100))
        fh.flush()
        time.sleep(config.stable_seconds * 5)  # the writer pauses with the file open
        fh.write(_lines(100, 200))
    [record] = wait_for(lambda: terminal(ledger), what="the slowgap file to be taken")
    assert (record.state, record.rows) == (NORMALIZED, 200)
    assert _lake_ids(config, "train") == list(range(200))
    assert ledger.list() == [record]  # no partial version was ever recorded


def test_a_file_changed_while_being_read_is_taken_again_whole(
    config: IngestConfig, ledger: Ledger, intake: Intake
) -> None:
    """Through the real intake: a writer still holding the file finishes after the claim."""
    path = config.inbox("score") / "growing.csv"
    fh = open(path, "w")  # noqa: SIM115 - held open across the take, closed by the writer thread
    fh.write("id,x\n" + _lines(0, 99))
    fh.flush()

    def finish() -> None:
        time.sleep(config.stable_seconds * 3)
        fh.write(_lines(99, 200))
        fh.close()

    writer = threading.Thread(target=finish)
    writer.start()
    try:
        record = intake.take(path, "score")
    finally:
        writer.join()
    assert (record.state, record.rows, record.attempts) == (NORMALIZED, 200, 2)
    assert record.size_bytes == (config.archive / f"{record.id}__growing.csv").stat().st_size
    assert _lake_ids(config, "score") == list(range(200))


@pytest.mark.parametrize("observer", OBSERVERS)
def test_with_ready_marker_a_file_waits_for_its_marker_which_follows_it(
    make_watcher: MakeWatcher, config: IngestConfig, ledger: Ledger, wait_for, observer: str
) -> None:
    watcher = make_watcher(observer, ready_marker=".done")
    inbox = config.inbox("train")
    data = inbox / "sales.csv"
    data.write_text("id,x\n" + _lines(0, 50))
    scans = watcher.status()["scans"]
    wait_for(lambda: watcher.status()["scans"] >= scans + 2, what="two rescans")
    assert ledger.list() == [] and data.exists()  # whole and still, but not announced
    (inbox / "sales.csv.done").write_text("")
    [record] = wait_for(lambda: terminal(ledger), what="the announced file to be taken")
    assert (record.state, record.rows, record.original_name) == (NORMALIZED, 50, "sales.csv")
    wait_for(lambda: os.listdir(inbox) == [], what="the marker to follow its file")
    assert sorted(os.listdir(config.archive)) == [
        f"{record.id}__sales.csv",
        f"{record.id}__sales.csv.done",
    ]


def test_a_marker_without_its_file_is_never_a_drop_and_is_reported(
    make_watcher: MakeWatcher,
    config: IngestConfig,
    ledger: Ledger,
    wait_for,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from ingest.pipeline.markers import OrphanMarkers

    inbox = config.inbox("score")
    lonely = inbox / "late.csv.done"
    lonely.write_text("")
    watcher = make_watcher(ready_marker=".done")
    scans = watcher.status()["scans"]
    wait_for(lambda: watcher.status()["scans"] >= scans + 2, what="two rescans")
    assert ledger.list() == [] and lonely.exists()
    orphans = OrphanMarkers(".done", after=0.0)
    with caplog.at_level("WARNING", logger="dropscore.ingest"):
        orphans.check(sorted(inbox.iterdir()), "score")
        orphans.check(sorted(inbox.iterdir()), "score")  # reported once, not on every scan
    reports = [r for r in caplog.records if r.getMessage() == "ready marker without its file"]
    assert [(r.file, r.waiting_for) for r in reports] == [("late.csv.done", "late.csv")]


def test_an_unknown_ready_marker_is_refused() -> None:
    from ingest.base.layout import DataLayout

    with pytest.raises(ValueError, match="ready_marker"):
        IngestConfig(DataLayout(Path("data")), ready_marker="/etc/passwd")
