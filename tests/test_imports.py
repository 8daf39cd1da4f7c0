"""The layering, read from the source: ingest stays at the bottom and nothing imports in a circle.

The graph is built with ``ast`` from every module of ``ingest``, ``scoring`` and ``schedules``,
so a cycle hidden inside a function (an import placed there only to dodge the cycle) is caught
as surely as one at module level. Imports under ``if TYPE_CHECKING:`` never run and are left out.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ingest", "scoring", "schedules")

Graph = dict[str, set[str]]


def module_names() -> dict[str, Path]:
    """Map every project module's dotted name to its file."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, in_function: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Yield every import node that can run, and whether it sits inside a function."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                yield from _imports(ast.Module(body=[child], type_ignores=[]), in_function)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, in_function
        inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield from _imports(node, inner)


def _targets(node: ast.AST, module: str, is_package: bool, known: set[str]) -> Iterator[str]:
    """Resolve one import statement to the project modules it loads."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name in known:
                yield alias.name
        return
    assert isinstance(node, ast.ImportFrom)
    base = node.module or ""
    if node.level:
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    for alias in node.names:
        name = f"{base}.{alias.name}"
        if name in known:
            yield name
        elif base in known:
            yield base


def import_graphs() -> tuple[Graph, Graph]:
    """Return (module-level edges, function-level edges) between project modules."""
    modules = module_names()
    known = set(modules)
    top: Graph = {m: set() for m in modules}
    local: Graph = {m: set() for m in modules}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node, in_function in _imports(tree):
            for target in _targets(node, module, is_package, known):
                if target != module:
                    (local if in_function else top)[module].add(target)
    return top, local


def find_cycle(graph: Graph) -> list[str] | None:
    """Return one cycle of the graph as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def path_between(graph: Graph, start: str, goal: str) -> list[str] | None:
    """Return a path from start to goal following the graph's edges, or None."""
    seen = {start}
    frontier = [[start]]
    while frontier:
        path = frontier.pop(0)
        if path[-1] == goal:
            return path
        for nxt in sorted(graph.get(path[-1], ())):
            if nxt not in seen:
                seen.add(nxt)
                frontier.append([*path, nxt])
    return None


def test_the_graph_sees_the_project():
    top, local = import_graphs()
    assert "scoring.settings" in top["scoring.lifecycle.runner"]
    assert "ingest.base.config" in top
    assert any(local.values()), "function-level imports were not found"


def test_ingest_imports_nothing_from_scoring_or_schedules():
    top, local = import_graphs()
    wrong = sorted(
        f"{src} -> {dst}"
        for graph in (top, local)
        for src, targets in graph.items()
        if src.split(".")[0] == "ingest"
        for dst in targets
        if dst.split(".")[0] != "ingest"
    )
    assert not wrong, wrong


def test_module_level_imports_have_no_cycle():
    top, _ = import_graphs()
    cycle = find_cycle(top)
    assert cycle is None, " -> ".join(cycle or [])


def test_no_function_level_import_closes_a_cycle():
    top, local = import_graphs()
    both = {m: top[m] | local[m] for m in top}
    closing = []
    for src, targets in local.items():
        for dst in sorted(targets):
            back = path_between(both, dst, src)
            if back:
                closing.append(" -> ".join([src, *back]))
    assert not closing, closing


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"a"}}, ["a", "a"]),
    ],
)
def test_find_cycle(graph: Graph, cycle: list[str] | None):
    assert find_cycle(graph) == cycle


def test_imports_under_type_checking_and_in_functions_are_told_apart():
    source = (
        "from typing import TYPE_CHECKING\n"
        "import ingest.base.config\n"
        "if TYPE_CHECKING:\n    import ingest.state.ledger\n"
        "def f():\n    from ingest.lake.store import store as lake\n"
    )
    found = [(ast.unparse(node), in_function) for node, in_function in _imports(ast.parse(source))]
    assert found == [
        ("from typing import TYPE_CHECKING", False),
        ("import ingest.base.config", False),
        ("from ingest.lake.store import store as lake", True),
    ]
