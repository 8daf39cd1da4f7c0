"""Where the workers read a user's file, the ingest limits go with the tasks: read from the source.

``score_remote`` takes the limits as ``read=`` (``ReadOptions``: ``max_columns``,
``max_file_mb``); a call in the product that leaves them out scores a file the local path
would refuse. So every call of it in the product passes ``read=`` (a lake file, ``kind=``,
was checked when it was taken).
"""

from __future__ import annotations

import ast
from pathlib import Path

from scoring.testing.checkout import ROOT

PRODUCT = ("scoring", "ingest")


def calls_without_limits(root: Path) -> list[str]:
    """List the product's calls of ``score_remote`` that pass no ``read=``."""
    found = []
    for package in PRODUCT:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                keywords = {k.arg for k in node.keywords}
                if name == "score_remote" and not keywords & {"read", "kind"}:
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
    )
    assert calls_without_limits(tmp_path) == ["scoring/x.py:1"]
