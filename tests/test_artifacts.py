"""The model artifacts' one store (issue 17, point 4): the registry's folders go through it.

The registry reaches its version folders only through ``ArtifactStore`` (read from the source);
the store is run on the local disk under the registry and on a ``pyarrow.fs.SubTreeFileSystem``
over a temporary folder, which stands in for a filesystem that is not the local disk.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from ingest.lake.remote import open_storage
from scoring.lifecycle.artifacts import ArtifactStore
from scoring.lifecycle.registry import CARD_FILE, FOLD_FILE, MODEL_FILE

ROOT = Path(__file__).resolve().parents[1]
FOLDER_CALLS = {"rmtree", "rename", "replace", "mkdtemp", "iterdir", "glob", "read_text", "unlink"}


def test_the_registry_touches_no_folder_itself():
    tree = ast.parse((ROOT / "scoring/lifecycle/registry.py").read_text(encoding="utf-8"))
    calls = sorted(
        f"{node.func.attr}:{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in FOLDER_CALLS
    )
    assert not calls, f"reach the version folders through ArtifactStore: {calls}"


@pytest.fixture(params=["local", "subtree", "s3"])
def store(request, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return ArtifactStore.local(tmp_path / "models")
    if request.param == "s3":  # the session's moto_server: a real object store
        s3 = request.getfixturevalue("s3")
        root = open_storage(s3.url(s3.fresh_prefix("art")), tmp_path, endpoint_url=s3.endpoint,
                            env=s3.env)  # fmt: skip
        return ArtifactStore(root.fs, root.join("models"))
    (tmp_path / "models").mkdir()
    return ArtifactStore(pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem()), "models")


def _names(store: ArtifactStore, folder: str = "") -> list[str]:
    """List a folder of the store through its filesystem (the same on disk and in a bucket)."""
    path = f"{store.root}/{folder}".rstrip("/")
    found = store.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted(i.base_name for i in found)


def _put(store: ArtifactStore, relative: str, data: bytes) -> None:
    """Leave a file in the store as a crash would have (folders made as needed)."""
    path = f"{store.root}/{relative}"
    store.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with store.fs.open_output_stream(path) as sink:
        sink.write(data)


def test_a_version_is_published_whole(store: ArtifactStore, tmp_path: Path) -> None:
    with store.stage() as staged:
        staged.write_bytes(MODEL_FILE, b"model")
        staged.write_json(CARD_FILE, {"version": "1"})
        assert store.versions() == []  # nothing shows before the publish
        store.publish(staged, 1)
    assert store.versions() == [1]
    assert _names(store) == ["1"]
    assert store.read_bytes(1, MODEL_FILE) == b"model"
    assert store.read_json(1, CARD_FILE) == {"version": "1"}
    with store.open(1, MODEL_FILE) as fh:
        assert fh.read() == b"model"
    with pytest.raises(FileNotFoundError):
        store.read_bytes(1, FOLD_FILE)


def test_a_failed_stage_leaves_nothing(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), store.stage() as staged:
        staged.write_bytes(MODEL_FILE, b"half")
        raise RuntimeError("the save broke")
    assert _names(store) == []


def test_an_unindexed_leftover_is_replaced(store: ArtifactStore) -> None:
    for content in (b"crashed", b"kept"):
        with store.stage() as staged:
            staged.write_bytes(MODEL_FILE, content)
            store.publish(staged, 3)
    assert store.read_bytes(3, MODEL_FILE) == b"kept"


def test_a_file_is_added_once(store: ArtifactStore, tmp_path: Path) -> None:
    with store.stage() as staged:
        staged.write_bytes(MODEL_FILE, b"m")
        store.publish(staged, 1)
    assert store.add(1, FOLD_FILE, b"{}") is True
    assert store.add(1, FOLD_FILE, b'{"other": 1}') is False
    assert store.read_bytes(1, FOLD_FILE) == b"{}"
    assert _names(store, "1") == [FOLD_FILE, MODEL_FILE]


def test_crash_leftovers_are_cleaned_ours_and_an_older_release(store, tmp_path) -> None:
    for name in (".incoming-abc", ".incoming.0a1b2c3d4e5f.tmp"):
        _put(store, f"{name}/{MODEL_FILE}", b"half")
    _put(store, f"2/{MODEL_FILE}", b"m")
    assert store.clean_incoming() == [".incoming-abc", ".incoming.0a1b2c3d4e5f.tmp"]
    assert _names(store) == ["2"]
    store.delete(2)
    store.delete(2)  # already gone: no error
    assert store.versions() == []


def test_names_are_file_names_only(store: ArtifactStore) -> None:
    with pytest.raises(ValueError), store.stage() as staged:
        staged.write_bytes("../escape", b"x")
