"""The lake through a filesystem object (issue 17, point 4).

``Lake`` is the one reader and writer of lake files: the rule is read from the source (no
``pyarrow.parquet``/``pyarrow.dataset`` import elsewhere but the modules listed with their
reason), and the lake is run on a ``pyarrow.fs.SubTreeFileSystem`` over a temporary folder and
in a bucket of the session's S3 (moto), so every call goes through the filesystem object and
none through a local path, with the same assertions on both.
"""

from __future__ import annotations

import ast
import posixpath
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from ingest.lake.remote import open_storage
from ingest.lake.store import Lake
from scoring.lifecycle.dataset import load_training_data

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ingest", "scoring", "schedules")
PARQUET_MODULES = ("pyarrow.parquet", "pyarrow.dataset")

# Who else may read or write Parquet: none of them touches a lake file.
PARQUET_ALLOWED = {
    "ingest/lake/store.py": "the lake itself",
    "ingest/readers/parquet.py": "reads a Parquet drop (a file someone dropped), not the lake",
    "ingest/base/writers.py": "writes a scored output file",
    "scoring/bulk/batch.py": "a Parquet input's row count for the progress bar (not the lake)",
    "scoring/inference/payloads.py": "reads a Parquet request body, in memory",
    "scoring/bulk/remote.py": "a Dask worker reads its share of a bulk input, writes its part",
}


def _parquet_imports(tree: ast.AST) -> list[str]:
    """List the Parquet/dataset imports of a module, at any depth (a function's too)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name in PARQUET_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            if node.module in PARQUET_MODULES:
                found.append(node.module)
            elif node.module == "pyarrow":
                found += [
                    f"pyarrow.{a.name}" for a in node.names if a.name in ("parquet", "dataset")
                ]
    return found


def test_only_the_lake_and_the_listed_modules_read_parquet():
    stray = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = str(path.relative_to(ROOT))
            found = _parquet_imports(ast.parse(path.read_text(encoding="utf-8")))
            if found and name not in PARQUET_ALLOWED:
                stray[name] = found
    assert not stray, f"read and write lake files through ingest.lake.store.Lake: {stray}"


def test_the_rule_sees_every_spelling():
    source = (
        "import pyarrow.parquet as pq\n"
        "from pyarrow import dataset\n"
        "def f():\n    from pyarrow.parquet import ParquetFile\n"
        "import pyarrow.compute\n"
    )
    assert sorted(_parquet_imports(ast.parse(source))) == sorted(
        ["pyarrow.parquet", "pyarrow.dataset", "pyarrow.parquet"]
    )


# -- the lake on a filesystem that is not reached by local paths ------------------------------


@pytest.fixture(params=["subtree", "s3"])
def lake(request, tmp_path: Path) -> Lake:
    """The lake on a subtree of a temporary folder, and in a bucket of the session's S3."""
    if request.param == "s3":
        s3 = request.getfixturevalue("s3")
        root = open_storage(s3.url(s3.fresh_prefix("lake")), tmp_path, endpoint_url=s3.endpoint,
                            env=s3.env)  # fmt: skip
        return Lake(root.fs, root.join("lake/train"))
    (tmp_path / "lake" / "train").mkdir(parents=True)
    return Lake(pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem()), "lake/train")


def _listed(lake: Lake, folder: str = "") -> list[str]:
    """List a folder beside or in the lake through its filesystem (folder relative to lake/)."""
    path = posixpath.join(posixpath.dirname(lake.root), folder).rstrip("/")
    found = lake.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted(i.base_name for i in found)


def _put(lake: Lake, name: str, data: bytes) -> None:
    with lake.fs.open_output_stream(lake.path(name)) as sink:
        sink.write(data)


def _batches(*columns: dict) -> list[pa.RecordBatch]:
    return [pa.record_batch(c) for c in columns]


def test_write_list_footer_read_and_delete(lake: Lake, tmp_path: Path) -> None:
    one = _batches({"x": [1, 2], "_file_id": [1, 1]}, {"x": [3], "_file_id": [1]})
    two = _batches({"x": [0.5], "_file_id": [2]})
    assert lake.write("a.parquet", one, one[0].schema) == 3
    assert lake.write("b.parquet", two, two[0].schema) == 1
    assert lake.names() == ["a.parquet", "b.parquet"]
    assert _listed(lake, "train") == ["a.parquet", "b.parquet"]  # under the lake's root
    assert lake.footer("a.parquet").rows == 3
    assert lake.schema("b.parquet") == pa.schema([("x", pa.float64()), ("_file_id", pa.int64())])
    got = [b.column("x").to_pylist() for b in lake.batches("a.parquet", ["x"], batch_rows=2)]
    assert got == [[1, 2], [3]]
    assert lake.first_group("b.parquet", ["_file_id"]).column(0).to_pylist() == [2]
    table = lake.read()
    assert table.schema.field("x").type == pa.float64()  # int and float drift unified
    assert sorted(table.column("x").to_pylist()) == [0.5, 1.0, 2.0, 3.0]
    lake.delete("a.parquet")
    lake.delete("a.parquet")  # already gone: no error
    assert lake.names() == ["b.parquet"]
    assert not lake.exists("a.parquet") and lake.exists("b.parquet")


def test_a_write_widens_refuses_overwrite_and_leaves_no_temporary(lake: Lake, tmp_path) -> None:
    batches = _batches({"x": [1]}, {"x": [2.5]}, {"x": ["word"]})
    assert lake.write("w.parquet", batches, batches[0].schema) == 3
    assert lake.schema("w.parquet") == pa.schema([("x", pa.string())])
    with pytest.raises(FileExistsError):
        lake.write("w.parquet", batches, batches[0].schema)

    def failing():
        yield pa.record_batch({"x": [1]})
        raise RuntimeError("reader broke")

    with pytest.raises(RuntimeError):
        lake.write("f.parquet", failing(), pa.schema([("x", pa.int64())]))
    assert _listed(lake, "train") == ["w.parquet"]


def test_stale_temporaries_are_removed_through_the_filesystem(lake: Lake, tmp_path) -> None:
    _put(lake, ".a.parquet.0a1b2c3d4e5f.tmp", b"half")
    _put(lake, "keep.parquet", b"x")
    assert lake.remove_temporaries() == [".a.parquet.0a1b2c3d4e5f.tmp"]
    assert _listed(lake, "train") == ["keep.parquet"]
    assert Lake(lake.fs, posixpath.dirname(lake.root) + "/missing").names() == []


def test_the_schema_record_lives_beside_the_folder(lake: Lake, tmp_path) -> None:
    first = _batches({"age": [1], "target": [0]})
    lake.write("a.parquet", first, first[0].schema)
    lake.remember("a.parquet", first[0].schema)
    assert lake.record_path() == posixpath.dirname(lake.root) + "/.train.schema.json"
    assert ".train.schema.json" in _listed(lake)
    second = _batches({"age": [2.5], "target": [1]})
    lake.write("b.parquet", second, second[0].schema)
    assert lake.unified_schema() == pa.schema([("age", pa.float64()), ("target", pa.int64())])
    assert not [n for n in _listed(lake, "train") if n.startswith(".")]


def test_a_retrain_reads_a_lake_on_another_filesystem(lake: Lake) -> None:
    for i, ages in enumerate(([1, 2, 3], [4, 5])):
        batch = pa.record_batch(
            {"age": ages, "target": [a * 2 for a in ages], "_file_id": [i] * len(ages)}
        )
        lake.write(f"{i}.parquet", [batch], batch.schema)
    data = load_training_data(lake, target="target", features=["age"], max_rows=4)
    assert len(data.frame) == 4 and list(data.frame.columns[:2]) == ["age", "target"]
    assert data.lake_files == ["0.parquet", "1.parquet"] and data.sampled_from == 5
