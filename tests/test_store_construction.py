"""Every store is constructed in one place, ``scoring/models/``, read from the source with ``ast``.

The API, the background work, the CLI, the jobs, the runner and the trainer receive the
per-model object (``scoring.models``) instead of opening stores of their own; a second backend
for a store then changes the factory and nothing else. The dashboard finds a model's jobs
through the models package, never by reaching into the scheduler's.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ingest", "scoring", "schedules")
# The stores kept in a state database, and the handle of the database itself.
STORES = ("Registry", "RunStore", "Ledger", "KeyStore", "AuditLog", "SessionStore", "StateDB",
          "TrafficStore", "JobStore", "DriftStore", "OutcomeStore")
HOME = ROOT / "scoring" / "models"
# Files allowed to construct a store outside scoring/models, each with the reason.
ALLOWED = {
    # `python -m ingest` runs the ingest pipeline alone; ingest may not import scoring.
    ROOT / "ingest" / "__main__.py": "ingest may not import scoring",
    # a state database opens itself again: another schema on its engine, or as another process
    ROOT / "ingest" / "state" / "db.py": "StateDB.for_schema and reopen",
}


def _called_name(node: ast.Call) -> str | None:
    """Name the class a call constructs: ``X(...)`` or ``X.at(...)``, else None."""
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr == "at":
        func = func.value
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def constructions(tree: ast.AST) -> Iterator[tuple[str, int]]:
    """Yield each store constructed in a module: its class name and line."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _called_name(node) in STORES:
            yield str(_called_name(node)), node.lineno


def library_files() -> list[Path]:
    """Every module of the project's packages."""
    return [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]


def test_stores_are_constructed_only_in_the_models_package():
    found = []
    for path in library_files():
        if HOME in path.parents or path in ALLOWED:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found += [f"{path.relative_to(ROOT)}:{line} {name}(" for name, line in constructions(tree)]
    assert found == [], "construct stores in scoring/models/factory.py only"


def test_the_factory_constructs_every_store():
    tree = ast.parse((HOME / "factory.py").read_text(encoding="utf-8"))
    assert {name for name, _ in constructions(tree)} == set(STORES)


@pytest.mark.parametrize(
    ("source", "names"),
    [
        ("Registry(a, b)", ["Registry"]),
        ("x = StateDB.at(p)", ["StateDB"]),
        ("ingest.state.ledger.Ledger(p)", ["Ledger"]),
        ("registry.get(1); CollectorRegistry()", []),
        ("def f():\n    return RunStore(p)", ["RunStore"]),
    ],
)
def test_constructions_are_told_from_other_calls(source: str, names: list[str]):
    assert [name for name, _ in constructions(ast.parse(source))] == names


def test_the_dashboard_does_not_reach_into_the_scheduler():
    pages = ROOT / "scoring" / "api" / "pages"
    reached = []
    for path in sorted(pages.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("schedules"):
                reached.append(f"{path.relative_to(ROOT)}: from {node.module}")
            if isinstance(node, ast.Import):
                reached += [
                    f"{path.relative_to(ROOT)}: import {a.name}"
                    for a in node.names
                    if a.name.startswith("schedules")
                ]
    assert reached == []
