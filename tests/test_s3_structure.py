"""Where the lake is opened (issue 19, point 2), read from the source with ``ast``.

A lake opened from a local folder (``Lake.local`` or the local-folder helpers of
``ingest.lake.store``) ignores ``[storage] url``: with the lake in a bucket such a caller would
read an empty local folder and see no data. So only the lake's own package, the ingest config's
default (``IngestConfig.lake_store``) and ``scoring.storage`` (which ``Model.lake`` and
``ingest_config`` use) open one; every other caller asks them.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ingest", "scoring", "schedules")
LOCAL_OPENERS = {
    "lake_files",
    "read_lake",
    "lake_schema",
    "remember_lake_file",
    "remove_stale_temporaries",
}
ALLOWED = {
    "ingest/base/config.py": "IngestConfig.lake_store: the local lake when no store is given",
    "scoring/storage.py": "lake_store: the local lake when [storage] url is empty",
    "ingest/pipeline/quarantine.py": "its own remove_stale_temporaries, of error records",
}


def local_lake_openings(tree: ast.AST) -> list[str]:
    """List each call that opens a lake from a local folder: ``Lake.local(...)`` or a helper."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        receiver = func.value if isinstance(func, ast.Attribute) else None
        if isinstance(receiver, ast.Name) and receiver.id == "Lake" and func.attr == "local":
            found.append(f"Lake.local:{node.lineno}")
        name = func.id if isinstance(func, ast.Name) else None
        if name in LOCAL_OPENERS:
            found.append(f"{name}:{node.lineno}")
    return found


def test_only_the_storage_seam_opens_a_lake_from_a_local_folder() -> None:
    stray = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = str(path.relative_to(ROOT))
            if name.startswith("ingest/lake/") or name in ALLOWED:
                continue
            found = local_lake_openings(ast.parse(path.read_text(encoding="utf-8")))
            if found:
                stray[name] = found
    assert not stray, f"open the lake through Model.lake / lake_store / config.lake_store: {stray}"


def test_the_rule_sees_each_form() -> None:
    source = "Lake.local(p)\nlake_files(p)\nx.lake_files(p)\nLake(fs, root)\n"
    assert local_lake_openings(ast.parse(source)) == ["Lake.local:1", "lake_files:2"]
