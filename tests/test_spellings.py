"""Facts spelled once in the library: the file kinds, the key roles, the settings-file variable.

Read from the source with ``ast``: a literal tuple, list or set holding exactly the kinds (or the
roles) anywhere but their home is a second spelling that will drift; so is the variable's name
in any string but the constant that holds it (docstrings, which only talk about it, aside).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.base.layout import KINDS
from scoring.keys_protocol import ROLES
from scoring.settings import ENV_FILE

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("scoring", "ingest", "schedules")


def sources() -> Iterator[tuple[str, ast.Module]]:
    """Yield every library module's path (relative to the checkout) and its parsed tree."""
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield str(path.relative_to(ROOT)), ast.parse(path.read_text(encoding="utf-8"))


def literal_sets(tree: ast.Module) -> Iterator[frozenset[str]]:
    """Yield the set of strings of each literal tuple, list or set made only of strings."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple | ast.List | ast.Set) and node.elts:
            items = [e.value for e in node.elts if isinstance(e, ast.Constant)]
            if len(items) == len(node.elts) and all(isinstance(i, str) for i in items):
                yield frozenset(items)


def docstrings(tree: ast.Module) -> set[int]:
    """Return the ids of the docstring nodes of the module, its classes and functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def strings(tree: ast.Module) -> Iterator[str]:
    """Yield every string constant in the code that is not a docstring."""
    skip = docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            yield node.value


@pytest.mark.parametrize(
    ("fact", "home"),
    [(frozenset(KINDS), "ingest/base/layout.py"), (frozenset(ROLES), "scoring/keys_protocol.py")],
    ids=["kinds", "roles"],
)
def test_a_list_of_names_is_spelled_in_its_home_only(fact, home):
    where = sorted(path for path, tree in sources() if fact in set(literal_sets(tree)))
    assert where == [home]


def test_the_settings_file_variable_is_named_in_one_place():
    where = sorted(path for path, tree in sources() if any(ENV_FILE in s for s in strings(tree)))
    assert where == ["scoring/settings.py"]


def test_the_readers_see_what_they_look_for():
    tree = ast.parse('"""Doc with DROPSCORE_SETTINGS."""\nX = ("b", "a")\nY = ["a", 1]\nZ = "z"\n')
    assert list(literal_sets(tree)) == [frozenset({"a", "b"})]
    assert sorted(strings(tree)) == ["a", "a", "b", "z"]


def public_functions(path: Path) -> set[str]:
    """Name the module-level public functions a module defines."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")
    }


def test_answers_and_the_openapi_document_have_their_own_names():
    """A view imports from both; ``json_response`` once named an answer and a schema."""
    answers = public_functions(ROOT / "scoring" / "api" / "jsonio.py")
    document = public_functions(ROOT / "scoring" / "api" / "openapi.py")
    assert "json_response" in answers and "response_object" in document
    assert answers & document == set()
