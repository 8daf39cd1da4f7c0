"""A drop another process deferred for a full disk is taken by a running watcher's next rescan.

``dropscore ingest`` runs in a child process whose ``RLIMIT_FSIZE`` stands in for a full disk
(Python ignores SIGXFSZ, so the lake write past the limit raises ``OSError(EFBIG)`` as ENOSPC
would): the copy of the small gzip input fits, its lake file does not. The CLI must say the drop
was deferred and exit non-zero; the claim stays in processing/ with a ``received`` row, and a
watcher already running in this process (whose own intake never deferred anything) takes it on
a rescan, now that the child is gone and the room is there; never while a live process holds
the claim.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ingest.base.config import IngestConfig
from ingest.base.layout import DataLayout
from ingest.pipeline.intake import Intake
from ingest.pipeline.watcher import Watcher
from ingest.state.claims import try_hold
from ingest.state.ledger import FileRecord, Ledger
from scoring.testing.waiting import wait_for

ROWS = 1_000_000  # a few kB gzipped; megabytes of lake file (``_row`` alone is 8 bytes a row)
LIMIT = 1 << 20  # the child's file size limit: its "full disk"

CLI = textwrap.dedent(
    """
    import resource, sys
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))
    from scoring.service.cli import main
    main(sys.argv[2:], prog_name="dropscore")
    """
)


def _defer(tmp_path: Path, ledger: Ledger, watched: bool = False) -> tuple[Path, FileRecord]:
    """Run ``dropscore ingest`` on a full disk; check it said deferred; return the input, row."""
    root = tmp_path / "data"
    settings = tmp_path / "settings.toml"
    settings.write_text(
        f'[paths]\ndata_dir = "{root}"\n[training]\nbootstrap_data = ""\n', encoding="utf-8"
    )
    big = tmp_path / "big.csv.gz"
    big.write_bytes(gzip.compress(b"x\n" + b"1\n" * ROWS))
    assert big.stat().st_size < LIMIT
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPSCORE")}
    args = ["--settings", str(settings), "ingest", str(big), "--kind", "score"]
    cli = subprocess.run(
        [sys.executable, "-c", CLI, str(LIMIT), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    out = cli.stdout.strip().splitlines()
    assert cli.returncode != 0, cli.stdout + cli.stderr[-2000:]
    assert len(out) == 1 and "deferred" in out[0] and "disk is full" in out[0], out
    [record] = ledger.list(limit=None)
    assert out[0].startswith(f"{big}: #{record.id} deferred")
    if not watched:  # a running watcher may take it as soon as the child lets go of its claim
        assert record.state == "received"
        assert record.error is not None and record.error["code"] == "disk_full"
    return big, record


def _assert_taken(root: Path, ledger: Ledger, record: FileRecord, big: Path) -> None:
    """Wait for the running watcher to take the deferred drop; check where everything went."""
    done = wait_for(
        lambda: ledger.get(record.id).state == "normalized" and ledger.get(record.id),
        timeout=120,
        what="the running watcher to take the drop another process deferred",
    )
    assert done.rows == ROWS and done.error is None
    assert list((root / "quarantine").iterdir()) == []
    assert [p for p in (root / "processing" / "score").rglob("*") if p.is_file()] == []
    archived = ledger.resolve(done.archive_path)
    assert archived is not None and archived.read_bytes() == big.read_bytes()


def _config(tmp_path: Path) -> tuple[IngestConfig, Ledger]:
    """Build a small-timing config over a fresh data folder and open its ledger."""
    config = IngestConfig(DataLayout(tmp_path / "data"), stable_seconds=0.2, rescan_seconds=0.5)
    config.make_dirs()
    return config, Ledger.at(config.db_path)


@pytest.mark.slow
def test_a_drop_another_process_deferred_is_taken_by_a_running_watcher(tmp_path: Path) -> None:
    config, ledger = _config(tmp_path)
    watcher = Watcher(config, Intake(config, ledger))
    watcher.start()  # before the drop: its start-up recovery cannot be what takes it
    try:
        big, record = _defer(tmp_path, ledger, watched=True)
        # the child is gone: only a rescan of the running watcher can take its drop now
        _assert_taken(tmp_path / "data", ledger, record, big)
    finally:
        assert watcher.stop(timeout=30)


@pytest.mark.slow
def test_a_deferred_drop_a_live_process_holds_is_left_to_it(tmp_path: Path) -> None:
    config, ledger = _config(tmp_path)
    big, record = _defer(tmp_path, ledger)
    claimed = ledger.resolve(record.processing_path)
    assert claimed is not None
    hold = try_hold(claimed)  # a live process (this one's own lock) is working on it
    assert hold is not None
    watcher = Watcher(config, Intake(config, ledger))
    watcher.start()
    try:
        scans = watcher.status()["scans"]
        wait_for(lambda: watcher.status()["scans"] >= scans + 3, what="three rescans")
        assert ledger.get(record.id).state == "received" and claimed.is_file()
        hold.release()
        _assert_taken(tmp_path / "data", ledger, record, big)
    finally:
        hold.release()
        assert watcher.stop(timeout=30)
