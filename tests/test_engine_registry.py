"""Every bulk engine the product builds gets the serving model's registry, read from the source.

Without it, ``engine_for`` on Dask opens the model's state database for each file it scores (a
pool, and on PostgreSQL a server connection, per drop or upload) just to name the version's
artifact. A score drop's path built its engine without it (issue 19's closing note); this check
keeps every call site passing ``registry=`` with a value that is not the constant None
(``registry=None`` is the missing registry spelled out).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ingest", "scoring", "schedules")


def calls_without_registry(tree: ast.AST) -> list[int]:
    """Give the lines of ``engine_for(...)`` calls that pass no ``registry=``, or ``None``."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if name == "engine_for" and not any(_gives_registry(k) for k in node.keywords):
            found.append(node.lineno)
    return found


def _gives_registry(keyword: ast.keyword) -> bool:
    """Tell whether a keyword passes a registry: ``registry=`` with anything but None."""
    value = keyword.value
    return keyword.arg == "registry" and not (
        isinstance(value, ast.Constant) and value.value is None
    )


def test_every_engine_is_built_with_the_models_registry() -> None:
    missing = {
        str(path.relative_to(ROOT)): lines
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if (lines := calls_without_registry(ast.parse(path.read_text(encoding="utf-8"))))
    }
    assert missing == {}


def test_the_check_sees_what_it_looks_for() -> None:
    assert calls_without_registry(ast.parse("engine_for(settings)")) == [1]
    assert calls_without_registry(ast.parse("engines.engine_for(settings)")) == [1]
    assert calls_without_registry(ast.parse("engine_for(s, registry=m.registry)")) == []
    assert calls_without_registry(ast.parse("engine_for(s, registry=None)")) == [1]
    assert calls_without_registry(ast.parse("engine_for(s, timeout=1, registry=None)")) == [1]
