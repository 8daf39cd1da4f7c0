"""Where the workers read a user's file, the ingest limits go with the tasks: read from the source.

``score_remote`` takes the limits as ``read=`` (``ReadOptions``: ``max_columns``,
``max_file_mb``); a call in the product that leaves them out scores a file the local path
would refuse. So every call of it in the product either reads a user's file and passes
``read=`` with the limits, or reads a lake file (``kind=LAKE``), which was checked when it
was taken. ``kind=`` with any other value is a user's file: it needs ``read=`` too.

The Dask path reuses the readers' own functions (the batching it replays, the Parquet
``max_file_mb`` check): it imports none of their private names, and only the readers build
the "unpacks to more than" refusal, so it is one fact in one place.
"""

from __future__ import annotations

import ast
from pathlib import Path

from scoring.testing.checkout import ROOT

PRODUCT = ("scoring", "ingest")
LAKE_KIND = "LAKE"  # the name scoring.bulk.remote gives a lake file's kind


def _passes(node: ast.Call, keyword: str) -> ast.expr | None:
    """Return what a call passes as ``keyword`` (None when it does not pass it)."""
    return next((k.value for k in node.keywords if k.arg == keyword), None)


def carries_limits(node: ast.Call) -> bool:
    """Tell whether a ``score_remote`` call passes the limits, or names a lake file's kind."""
    read = _passes(node, "read")
    if read is not None and not (isinstance(read, ast.Constant) and read.value is None):
        return True
    kind = _passes(node, "kind")
    return getattr(kind, "id", getattr(kind, "attr", None)) == LAKE_KIND


def calls_without_limits(root: Path) -> list[str]:
    """List the product's calls of ``score_remote`` passing neither ``read=`` nor ``kind=LAKE``."""
    found = []
    for package in PRODUCT:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if name == "score_remote" and not carries_limits(node):
                    found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_every_worker_read_of_a_users_file_carries_the_ingest_limits():
    assert calls_without_limits(ROOT) == []


def test_the_check_sees_a_call_without_limits(tmp_path):
    (tmp_path / "scoring").mkdir()
    (tmp_path / "ingest").mkdir()
    (tmp_path / "scoring" / "x.py").write_text(
        "score_remote(c, s, d, r, batch_rows=1, fmt='csv')\n"
        "score_remote(c, s, d, r, batch_rows=1, fmt='csv', read=o)\n"
        "score_remote(c, s, d, r, batch_rows=1, fmt='csv', kind=TABLE)\n"
        "score_remote(c, s, d, r, batch_rows=1, fmt='csv', kind=LAKE)\n"
        "remote.score_remote(c, s, d, r, batch_rows=1, fmt='csv', kind=remote.LAKE)\n"
        "score_remote(c, s, d, r, batch_rows=1, fmt='csv', kind='table', read=None)\n"
    )
    assert calls_without_limits(tmp_path) == ["scoring/x.py:1", "scoring/x.py:3", "scoring/x.py:6"]


def private_reader_imports(root: Path) -> list[str]:
    """List imports of the readers' private names (``_x``) from outside ``ingest.readers``."""
    found = []
    for package in PRODUCT:
        for path in sorted((root / package).rglob("*.py")):
            if path.parent == root / "ingest" / "readers":
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "ingest.readers"
                ):
                    found += [
                        f"{path.relative_to(root)}:{node.lineno} {a.name}"
                        for a in node.names
                        if a.name.startswith("_")
                    ]
    return found


def refusals_built_outside_readers(root: Path) -> list[str]:
    """List calls of ``unpacked_too_large`` outside ``ingest.readers``: the check is theirs."""
    found = []
    for package in PRODUCT:
        for path in sorted((root / package).rglob("*.py")):
            if path.parent == root / "ingest" / "readers":
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                name = getattr(node, "id", getattr(node, "attr", getattr(node, "name", "")))
                if name == "unpacked_too_large" and not isinstance(node, ast.alias):
                    found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_the_dask_path_uses_the_readers_public_functions():
    assert private_reader_imports(ROOT) == []


def test_only_the_readers_build_the_decoded_size_refusal():
    assert refusals_built_outside_readers(ROOT) == []


def test_the_structure_checks_see_a_private_import_and_a_copied_check(tmp_path):
    (tmp_path / "scoring").mkdir()
    (tmp_path / "ingest" / "readers").mkdir(parents=True)
    (tmp_path / "ingest" / "readers" / "table.py").write_text(
        "from ingest.readers.common import _as_array, unpacked_too_large\n"
        "raise unpacked_too_large('f', 1, 2)\n"
    )
    (tmp_path / "scoring" / "x.py").write_text(
        "from ingest.readers.delimited import CutLayout, _coalesce\n"
        "from ingest.readers.common import unpacked_too_large\n"
        "raise unpacked_too_large('f', 1, 2)\n"
    )
    assert private_reader_imports(tmp_path) == ["scoring/x.py:1 _coalesce"]
    assert refusals_built_outside_readers(tmp_path) == ["scoring/x.py:3"]
