"""The one lock module: real processes contend for a lock, and a holder's death frees it.

The structure is read from the source: ``fcntl`` is imported by ``ingest/state/locks.py`` alone,
and a retrain walk opens its run store once instead of re-entering the runs module.
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.state.db import StateDB
from ingest.state.locks import FileLocks, locks_beside

from .conftest import ROOT
from .test_imports import module_names

# A process that takes a lock and keeps it until it is killed or its stdin closes. ``try`` says
# "held" or "busy" at once; ``wait`` says "waiting", blocks in acquire, then says "held".
HOLDER = """
import os, sys
from pathlib import Path
from ingest.state.locks import FileLocks

folder, name, how = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
locks = FileLocks(folder)
if how == "wait":
    print("waiting", flush=True)
    lock = locks.acquire(name, holder=f"child {os.getpid()}")
else:
    lock = locks.try_acquire(name, holder=f"child {os.getpid()}")
if lock is None:
    print("busy", flush=True)
    sys.exit(1)
print("held", flush=True)
sys.stdin.read()  # hold until killed, or until the test closes stdin
lock.release()
"""


def holder(folder: Path, name: str, how: str = "try") -> subprocess.Popen[str]:
    """Start a real process that takes ``name`` in ``folder``."""
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder), name, how],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def said(proc: subprocess.Popen[str]) -> str:
    """Read the next line a holder process printed (blocks until it prints or exits)."""
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


def end(proc: subprocess.Popen[str]) -> None:
    """Stop a holder process however far it got."""
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=60)


def test_two_processes_contend_and_the_holders_kill_9_frees_the_lock(tmp_path):
    locks = FileLocks(tmp_path)
    first = holder(tmp_path, "worker.lock")
    second = None
    try:
        assert said(first) == "held"
        assert locks.try_acquire("worker.lock") is None  # this process is refused
        assert locks.holder("worker.lock") == f"child {first.pid}"
        second = holder(tmp_path, "worker.lock")  # and so is another process
        assert said(second) == "busy"
        assert second.wait(timeout=60) == 1
        os.kill(first.pid, signal.SIGKILL)  # the holder dies without releasing anything
        first.wait(timeout=60)
        lock = locks.try_acquire("worker.lock", holder="parent")
        assert lock is not None, "a dead process's lock was not freed"
        with lock:
            assert locks.holder("worker.lock") == "parent"
            third = holder(tmp_path, "worker.lock")
            assert said(third) == "busy"
            assert third.wait(timeout=60) == 1
        fourth = holder(tmp_path, "worker.lock")  # released: another process takes it
        assert said(fourth) == "held"
        end(fourth)
    finally:
        for proc in (first, second):
            if proc is not None:
                end(proc)


def test_a_waiting_process_takes_the_lock_when_it_is_released(tmp_path):
    locks = FileLocks(tmp_path)
    lock = locks.try_acquire("trainer.lock", holder="parent")
    assert lock is not None
    waiter = holder(tmp_path, "trainer.lock", how="wait")
    try:
        assert said(waiter) == "waiting"
        assert locks.holder("trainer.lock") == "parent"  # the waiter has not taken it
        lock.release()
        assert said(waiter) == "held"
        assert locks.try_acquire("trainer.lock") is None
    finally:
        lock.release()
        end(waiter)


def test_a_lock_held_in_this_process_refuses_a_second_take_here_too(tmp_path):
    """Reaping relies on it: the process running a retrain sees its own lock as taken."""
    locks = FileLocks(tmp_path)
    with locks.acquire("retrain.lock") as lock:
        assert lock.name == "retrain.lock"
        assert locks.try_acquire("retrain.lock") is None
    again = locks.try_acquire("retrain.lock")
    assert again is not None
    again.release()
    again.release()  # a second release does nothing


@pytest.mark.parametrize("name", ["../escape.lock", "/etc/passwd", "", "a/../../b"])
def test_a_lock_name_stays_inside_its_folder(tmp_path, name):
    with pytest.raises(ValueError, match="lock name"):
        FileLocks(tmp_path / "locks").try_acquire(name)
    assert not (tmp_path / "escape.lock").exists()


def test_a_sqlite_state_databases_locks_sit_beside_its_file(tmp_path):
    db = StateDB.at(tmp_path / "churn" / "state.db")
    with locks_beside(db).acquire("retrain.lock"):
        assert FileLocks(tmp_path / "churn").try_acquire("retrain.lock") is None
    assert (tmp_path / "churn" / "retrain.lock").is_file()


# -- the structure, from the source ---------------------------------------------------------


def imported_modules(path: Path) -> set[str]:
    """Name every module a source file imports, wherever the import sits."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_fcntl_is_imported_by_the_lock_module_alone():
    importers = sorted(
        name for name, path in module_names().items() if "fcntl" in imported_modules(path)
    )
    assert importers == ["ingest.state.locks"]


def constructions(path: Path, cls: str) -> int:
    """Count the calls that build ``cls`` in a source file (0 when the file does not exist)."""
    if not path.exists():
        return 0
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return sum(
        1
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] == cls
    )


def test_a_retrain_walk_opens_its_run_store_once():
    """The runner opens one model at most and hands its store on; the locks open none."""
    lifecycle = ROOT / "scoring" / "lifecycle"
    assert constructions(lifecycle / "runner.py", "RunStore") == 0
    assert constructions(lifecycle / "runner.py", "open_model") <= 1  # open_runs, one-shot callers
    assert constructions(lifecycle / "run_locks.py", "RunStore") == 0
    assert constructions(lifecycle / "runs.py", "RunStore") == 0


# Where a process already holds its models: a retrain started there must use the model's store,
# or each request opens a database engine of its own (20 POST /train: 20 engines, 17 more fds).
SERVING_CALLERS = (
    "scoring/api/runs.py",
    "scoring/api/pages/views.py",
    "scoring/lifecycle/first_data.py",
    "schedules/scheduler.py",
    "schedules/jobs.py",
    "scoring/service/runtime.py",
    "scoring/service/cli.py",
)
RETRAIN_CALLS = {"begin_retrain": 99, "run_retrain": 7, "record_skipped": 5}  # args to reach runs


def calls_without_runs(path: Path) -> list[str]:
    """List the retrain calls in a file that leave the run store to be opened."""
    missing = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func).split(".")[-1]
        if name not in RETRAIN_CALLS:
            continue
        if len(node.args) < RETRAIN_CALLS[name] and not any(k.arg == "runs" for k in node.keywords):
            missing.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    return missing


def test_serving_paths_hand_the_retrain_their_model_run_store():
    missing = [m for rel in SERVING_CALLERS for m in calls_without_runs(ROOT / rel)]
    assert missing == []


def test_the_run_store_check_sees_a_call_that_opens_its_own(tmp_path: Path):
    source = tmp_path / "x.py"
    source.write_text("begin_retrain(settings, 'api', force=True)\nrecord_skipped(s, t, r, k)\n")
    found = [m.split()[-1] for m in calls_without_runs_at(source)]
    assert found == ["begin_retrain", "record_skipped"]


def calls_without_runs_at(path: Path) -> list[str]:
    """``calls_without_runs`` for a file outside the tree (the check's own test)."""
    text = path.read_text(encoding="utf-8")
    inside = ROOT / "build" / "check_runs.py"
    inside.parent.mkdir(exist_ok=True)
    inside.write_text(text, encoding="utf-8")
    try:
        return calls_without_runs(inside)
    finally:
        inside.unlink()
