"""One atomic writer: files are replaced only through ``ingest.base.atomic`` (issue 17, point 3).

The rule is read from the source: a rename or replace outside the atomic module is a writer of
its own (its own temp naming, its own durability) unless it moves a drop between folders, and
each of those is listed below with its reason. The behaviour tests run the module on a real
folder: a reader never sees a temporary or half a file, and a failure leaves the old file.
"""

from __future__ import annotations

import ast
import os
import threading
from pathlib import Path

import pytest

from ingest.base import atomic
from ingest.base.formats import is_unfinished_name

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ingest", "scoring", "schedules")
ATOMIC = "ingest/base/atomic.py"

# Renames that move a file someone dropped (or its marker) between folders: nothing is rewritten,
# so there is no temporary to name and no content to flush. Counted, so a new writer in one of
# these modules is caught too.
DROP_MOVES = {
    "ingest/state/claims.py": (2, "claims a drop: inbox -> processing/, and a claim's whole copy"),
    "ingest/pipeline/intake.py": (2, "files a taken drop into archive/ or quarantine/"),
    "ingest/pipeline/quarantine.py": (1, "moves a refused symbolic link, not its target"),
    "ingest/pipeline/markers.py": (1, "moves a drop's ready-marker beside its filed original"),
    "scoring/api/files.py": (1, "requeues a quarantined original into the inbox as a new drop"),
    "scoring/api/uploads.py": (1, "names an upload's spooled part in the request's own folder"),
}


def _renames(tree: ast.AST) -> list[str]:
    """List the rename-like calls in a module: os.replace/rename/renames, shutil.move, and a
    ``.rename(x)``/``.replace(x)`` method call with one argument (Path.rename, Path.replace;
    str.replace takes two, dataclasses.replace and datetime.replace take keywords)."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        func = node.func
        owner = func.value.id if isinstance(func.value, ast.Name) else None
        if owner == "os" and func.attr in ("replace", "rename", "renames"):
            found.append(f"os.{func.attr}:{node.lineno}")
        elif owner == "shutil" and func.attr == "move":
            found.append(f"shutil.move:{node.lineno}")
        elif (
            func.attr in ("rename", "replace")
            and owner not in ("os", "dataclasses")
            and len(node.args) == 1
            and not node.keywords
        ):
            found.append(f".{func.attr}:{node.lineno}")
    return found


def _modules() -> dict[str, Path]:
    return {
        str(p.relative_to(ROOT)): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))
    }


def test_files_are_replaced_only_by_the_atomic_module_or_moved_as_drops():
    stray = {}
    for name, path in _modules().items():
        if name == ATOMIC:
            continue
        calls = _renames(ast.parse(path.read_text(encoding="utf-8")))
        if len(calls) != DROP_MOVES.get(name, (0, ""))[0]:
            stray[name] = calls
    assert not stray, f"write through ingest.base.atomic instead: {stray}"


def test_the_listed_drop_moves_exist():
    modules = _modules()
    gone = [n for n in [ATOMIC, *DROP_MOVES] if n not in modules]
    assert not gone, gone


def test_the_rule_sees_every_spelling():
    source = (
        "import os, shutil\n"
        "os.replace(a, b)\nos.rename(a, b)\nshutil.move(a, b)\n"
        "tmp.rename(dest)\nPath(tmp).replace(dest)\n"
        "'x'.replace('a', 'b')\ndataclasses.replace(obj, a=1)\nmoment.replace(tzinfo=None)\n"
    )
    assert [c.split(":")[0] for c in _renames(ast.parse(source))] == [
        "os.replace",
        "os.rename",
        "shutil.move",
        ".rename",
        ".replace",
    ]


# -- behaviour, on a real folder ------------------------------------------------------------


def test_temporaries_are_named_so_nothing_takes_them_for_a_drop(tmp_path):
    tmp = atomic.temporary_for(tmp_path / "data.csv")
    assert tmp.parent == tmp_path and tmp.name.startswith(".data.csv.")
    assert atomic.is_temporary(tmp.name)
    assert is_unfinished_name(tmp.name)  # the watcher, the rescans and init skip it
    assert not atomic.is_temporary("data.csv") and not atomic.is_temporary(".tmp")


def test_a_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text("old\n")
    atomic.write_text(path, "new\n")
    assert path.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["settings.toml"]


def test_the_temporary_never_shows_under_the_name(tmp_path):
    path = tmp_path / "record.json"
    path.write_text("old")
    with atomic.replacing(path) as tmp:
        tmp.write_text("new")
        assert path.read_text() == "old"  # not yet published
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["record.json", tmp.name])
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_a_reader_sees_one_whole_version_or_the_other(tmp_path):
    path = tmp_path / "big.bin"
    versions = [bytes([i]) * 1_000_000 for i in range(2)]
    path.write_bytes(versions[0])
    reads: list[bool] = []  # whether each read found one whole version
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            reads.append(path.read_bytes() in versions)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(10_000):  # until the reader has read often, however slow the machine
            atomic.write_bytes(path, versions[i % 2])
            if i >= 40 and len(reads) >= 20:
                break
    finally:
        stop.set()
        reader.join(timeout=60)
    assert not reader.is_alive()
    assert reads and all(reads)
    assert [p.name for p in tmp_path.iterdir()] == ["big.bin"]


def test_a_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "card.json"
    path.write_text('{"old": true}')
    with pytest.raises(RuntimeError), atomic.open_replacing(path) as fh:
        fh.write(b'{"new": ')
        raise RuntimeError("the writer broke half-way")
    assert path.read_text() == '{"old": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["card.json"]


def test_a_block_that_writes_nothing_publishes_nothing(tmp_path):
    path = tmp_path / "out.csv"
    path.write_text("old")
    with pytest.raises(FileNotFoundError), atomic.replacing(path):
        pass
    assert path.read_text() == "old"


def test_no_replace_refuses_an_existing_file(tmp_path):
    path = tmp_path / "secret"
    atomic.write_text(path, "first", replace=False, mode=0o600)
    with pytest.raises(FileExistsError):
        atomic.write_text(path, "second", replace=False)
    assert path.read_text() == "first"
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


def test_keep_mode_keeps_the_permission_bits(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text("old")
    os.chmod(path, 0o640)
    atomic.write_text(path, "new", keep_mode=True)
    assert path.stat().st_mode & 0o777 == 0o640


def test_a_staged_folder_is_published_whole_or_removed(tmp_path):
    with atomic.staging(tmp_path, "incoming") as folder:
        (folder / "model.skops").write_bytes(b"m")
        atomic.publish_folder(folder, tmp_path / "1")
    with pytest.raises(RuntimeError), atomic.staging(tmp_path, "incoming") as folder:
        (folder / "model.skops").write_bytes(b"half")
        raise RuntimeError("the save broke")
    assert [p.name for p in tmp_path.iterdir()] == ["1"]
    assert (tmp_path / "1" / "model.skops").read_bytes() == b"m"


def test_stale_temporaries_are_removed_young_ones_spared(tmp_path):
    old = atomic.temporary_for(tmp_path / "a.parquet")
    young = atomic.temporary_for(tmp_path / "b.parquet")
    folder = atomic.temporary_for(tmp_path / "incoming")
    for path in (old, young):
        path.write_bytes(b"half")
    folder.mkdir()
    (tmp_path / "keep.parquet").write_bytes(b"x")
    os.utime(old, (0, 0))
    os.utime(folder, (0, 0))
    assert atomic.remove_temporaries(tmp_path, older_than=60.0) == sorted([old, folder])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["keep.parquet", young.name])
    assert atomic.remove_temporaries(tmp_path) == [young]
    assert atomic.remove_temporaries(tmp_path / "missing") == []
