"""A store handed to a function is typed, never ``Any``: mypy then checks every call on it.

``scoring/api/files.py`` took ``ledger: Any``, so a call the ledger does not offer would have
passed mypy and failed on a request. Read from the source with ``ast``: any parameter named for
a store (a ledger, a registry, a run store) and annotated ``Any`` is reported.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("scoring", "ingest", "schedules")
STORES = {"ledger", "registry", "runs", "run_store"}


def untyped_stores(source: str) -> list[str]:
    """Name each function parameter named for a store and annotated ``Any``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            arguments = node.args
            for arg in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]:
                annotation = ast.unparse(arg.annotation) if arg.annotation else ""
                if arg.arg in STORES and annotation in ("Any", "typing.Any"):
                    found.append(f"{node.name}({arg.arg}: {annotation}) line {node.lineno}")
    return found


def test_the_reader_finds_an_untyped_store():
    source = "def f(ledger: Any, n: Any):\n    pass\ndef g(ledger: Ledger):\n    pass\n"
    assert untyped_stores(source) == ["f(ledger: Any) line 1"]


def test_no_store_is_typed_any():
    found = [
        f"{path.relative_to(ROOT)}: {entry}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for entry in untyped_stores(path.read_text(encoding="utf-8"))
    ]
    assert found == []
