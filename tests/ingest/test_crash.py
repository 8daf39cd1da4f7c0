"""Kill -9 a real ``python -m ingest`` at different moments; every drop still ends exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ingest.base.config import IngestConfig
from ingest.base.layout import DataLayout
from ingest.state.ledger import DUPLICATE, NORMALIZED, Ledger

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ROWS = 400


def _content(i: int) -> str:
    """Build a distinct score file of ROWS rows (consistent types across files)."""
    lines = ["id,value,label"] + [f"{i * ROWS + r},{r}.25,l{r % 7}" for r in range(ROWS)]
    return "\n".join(lines) + "\n"


def _as_jsonl(i: int) -> str:
    """Build the same table as ``_content(i)`` as JSON Lines: other bytes, the same rows."""
    records = [{"id": i * ROWS + r, "value": r + 0.25, "label": f"l{r % 7}"} for r in range(ROWS)]
    return "".join(json.dumps(record) + "\n" for record in records)


def _stage(
    folder: Path, count: int, duplicates: int, converted: int = 0
) -> tuple[dict[str, str], dict[str, int]]:
    """Write files outside the inbox: name → content, and name → which table it holds.

    Some tables come again under new names: ``duplicates`` as the same bytes, ``converted`` as
    JSON Lines (a duplicate by content).
    """
    folder.mkdir()
    files = {f"drop{i:03d}.csv": _content(i) for i in range(count)}
    tables = {name: i for i, name in enumerate(files)}
    for j in range(duplicates):
        files[f"again{j:03d}.csv"] = _content(j * 3)
        tables[f"again{j:03d}.csv"] = j * 3
    for j in range(converted):
        files[f"converted{j:03d}.jsonl"] = _as_jsonl(j * 3 + 1)
        tables[f"converted{j:03d}.jsonl"] = j * 3 + 1
    for name, text in files.items():
        (folder / name).write_text(text)
    return files, tables


def claimed_files(top: Path) -> set[Path]:
    """List the files under a folder the child may be emptying: entries may vanish mid-walk.

    ``os.walk`` skips a folder that disappears before it is listed (``rglob`` raises
    FileNotFoundError), and a claim folder holds one file, so nothing present throughout is
    missed.
    """
    return {Path(root) / name for root, _dirs, files in os.walk(top) for name in files}


class Runner:
    """Start and kill ``python -m ingest`` children on one data folder."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.data_dir = data_dir
        self.log = log
        self.proc: subprocess.Popen | None = None

    def starts(self) -> int:
        return self.log.read_text().count('"watcher started"') if self.log.exists() else 0

    def start(self) -> None:
        with open(self.log, "a") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ingest",
                    "--data-dir",
                    str(self.data_dir),
                    "--stable-seconds",
                    "0.2",
                    "--rescan-seconds",
                    "1",
                    "--max-attempts",
                    "20",
                ],
                cwd=REPO,
                stderr=err,
                stdout=subprocess.DEVNULL,
            )

    def kill(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, "child died on its own"
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


def test_kill_9_at_many_moments_loses_nothing_and_doubles_nothing(tmp_path: Path, wait_for) -> None:
    config = IngestConfig(DataLayout(tmp_path / "data"))
    config.make_dirs()
    ledger = Ledger.at(config.db_path)
    staged, table_of = _stage(tmp_path / "staging", count=48, duplicates=6, converted=6)
    names = sorted(staged)
    batches = [names[i::6] for i in range(6)]
    runner = Runner(config.data_dir, tmp_path / "child.log")

    def rows() -> int:
        return len(ledger.list(limit=None)) if config.db_path.exists() else 0

    def claims() -> set[Path]:
        return claimed_files(config.processing / "score")

    def new_claim(before: set[Path]) -> Callable[[], bool]:
        return lambda: bool(claims() - before)

    def drop(batch: list[str]) -> None:
        for name in batch:
            os.rename(tmp_path / "staging" / name, config.inbox("score") / name)

    fast = {"timeout": 30, "interval": 0.002}
    # (wait for the child to be up?, when to kill once the batch is in)
    moments: list[tuple[bool, Callable[[int, set[Path]], None]]] = [
        (False, lambda n, c: None),  # while the child is still starting
        (True, lambda n, c: wait_for(lambda: rows() > n, what="a first row", **fast)),
        (True, lambda n, c: wait_for(new_claim(c), what="a new claim", **fast)),
        (True, lambda n, c: wait_for(lambda: rows() >= n + 4, what="four rows", **fast)),
        (True, lambda n, c: None),  # while resume and the start-up scan run
        (True, lambda n, c: wait_for(new_claim(c), what="a new claim", **fast)),
    ]
    for batch, (up, moment) in zip(batches, moments, strict=True):
        starts = runner.starts()
        runner.start()
        if up:
            wait_for(lambda s=starts: runner.starts() > s, what="the child to start", **fast)
        before, claimed_before = rows(), claims()
        drop(batch)
        moment(before, claimed_before)
        runner.kill()

    runner.start()
    wait_for(
        lambda: rows() == len(names) and all(r.terminal for r in ledger.list(limit=None)),
        timeout=120,
        what="every drop to reach a terminal state",
    )
    assert runner.terminate() == 0

    records = ledger.list(limit=None)
    assert sorted(r.original_name for r in records) == names  # none lost, none twice
    assert list(config.inbox("score").iterdir()) == []
    assert claims() == set()
    for record in records:
        assert record.state in (NORMALIZED, DUPLICATE), record.error
        archived = config.archive / f"{record.id}__{record.original_name}"
        assert archived.read_text() == staged[record.original_name]
    assert len(list(config.archive.iterdir())) == len(names)
    duplicates = [r.duplicate_by for r in records if r.state == DUPLICATE]
    assert sorted(duplicates) == ["bytes"] * 6 + ["content"] * 6

    lake = sorted(config.lake("score").glob("*.parquet"))
    assert [p.name for p in config.lake("score").iterdir() if p.name.startswith(".")] == []
    tables = [pq.read_table(p) for p in lake]  # every lake file reads: no half Parquet
    distinct = set(table_of.values())  # the converted copies are duplicates by content
    assert len(lake) == len(distinct)
    assert sum(t.num_rows for t in tables) == ROWS * len(distinct)
    lake_ids = sorted(i for t in tables for i in set(t.column("_file_id").to_pylist()))
    assert lake_ids == sorted(r.id for r in records if r.state == NORMALIZED)
