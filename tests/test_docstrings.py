"""Every public function, method and class in the library packages says what it is for.

Flask views count: they are public functions. Names with a leading underscore, and anything
defined inside a function (closures, local handlers), are private and exempt.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("scoring", "ingest", "schedules")

Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def public_definitions(tree: ast.Module) -> list[tuple[str, Definition]]:
    """List the module's public classes and functions, and the public methods of its classes."""
    found: list[tuple[str, Definition]] = []

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if not isinstance(node, Definition) or node.name.startswith("_"):
                continue
            name = f"{prefix}{node.name}"
            found.append((name, node))
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{name}.")

    visit(tree.body, "")
    return found


def undocumented(source: str) -> list[str]:
    """Name the public definitions in this source that have no docstring."""
    tree = ast.parse(source)
    return [
        f"{name} (line {node.lineno})"
        for name, node in public_definitions(tree)
        if not (ast.get_docstring(node) or "").strip() and not _is_overload(node)
    ]


def _is_overload(node: Definition) -> bool:
    return any(
        isinstance(d, ast.Name | ast.Attribute) and ast.unparse(d).endswith("overload")
        for d in getattr(node, "decorator_list", [])
    )


@pytest.mark.parametrize(
    ("source", "missing"),
    [
        ("def f():\n    return 1\n", ["f (line 1)"]),
        ('def f():\n    """Do it."""\n', []),
        ("def _f():\n    return 1\n", []),
        ("class C:\n    def m(self):\n        pass\n", ["C (line 1)", "C.m (line 2)"]),
        ('class C:\n    """A thing."""\n\n    def _m(self):\n        pass\n', []),
        ("@bp.get('/x')\ndef view():\n    return ''\n", ["view (line 2)"]),
        ('def f():\n    """Do it."""\n\n    def inner():\n        pass\n', []),
        ('def f():\n    """   """\n', ["f (line 1)"]),
        ("async def f():\n    pass\n", ["f (line 1)"]),
    ],
)
def test_the_checker_finds_what_is_missing(source: str, missing: list[str]) -> None:
    assert undocumented(source) == missing


def test_every_public_definition_has_a_docstring() -> None:
    files = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))
    assert files, "no library sources found"
    missing = [
        f"{path.relative_to(ROOT)}: {entry}"
        for path in files
        for entry in undocumented(path.read_text(encoding="utf-8"))
    ]
    assert missing == [], "public definitions without a docstring:\n" + "\n".join(missing)
