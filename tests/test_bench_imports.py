"""The helpers tests and benches share live in ``scoring.testing``; ``bench/`` needs nothing else.

Read from the source with ``ast``: no bench module imports from ``tests/`` or edits ``sys.path``
(they run as modules from the checkout, ``python -m bench.NAME``), and no module in either tree
writes its own free-port helper. Then the real thing: each bench's ``--help`` runs as documented,
and importing every ``scoring.testing`` module loads none of the test extras a user lacks.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUTPUT = BENCH / "out"  # what benches write (bench/_venv.py, bench/_mlflow.py), git-ignored
TEST_EXTRAS = ("requests", "psutil", "pytest", "hypothesis")
# Every bench with a command line, at its smallest: --help.
SCRIPTS = sorted(
    p.stem for p in BENCH.glob("*.py") if 'if __name__ == "__main__"' in p.read_text("utf-8")
)


def trees(folder: Path) -> Iterator[tuple[str, ast.Module]]:
    """Yield each Python file below folder (relative name) and its parsed tree."""
    for path in sorted(folder.rglob("*.py")):
        if OUTPUT in path.parents:  # the benches' git-ignored output: their tools' virtualenvs
            continue
        yield str(path.relative_to(ROOT)), ast.parse(path.read_text(encoding="utf-8"))


def imported(tree: ast.Module) -> Iterator[str]:
    """Yield the module each import statement names, wherever it stands (functions too)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def touches_sys_path(tree: ast.Module) -> bool:
    """Tell whether the code reads or changes ``sys.path``."""
    return any(
        isinstance(node, ast.Attribute)
        and node.attr == "path"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
        for node in ast.walk(tree)
    )


def defines(tree: ast.Module, name: str) -> bool:
    """Tell whether the module defines a function of this name (at any depth)."""
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name
        for node in ast.walk(tree)
    )


def test_the_readers_see_imports_and_path_edits():
    tree = ast.parse(
        "import sys\nfrom tests._load import x\ndef f():\n    from tests.conftest import y\n"
        "    sys.path.insert(0, '.')\n    def free_port(): pass\n"
    )
    assert list(imported(tree)) == ["sys", "tests._load", "tests.conftest"]
    assert touches_sys_path(tree) and defines(tree, "free_port")
    assert not touches_sys_path(ast.parse("import os\nos.path.join('a')\n"))


def test_bench_imports_nothing_from_tests():
    found = [
        f"{path}: {module}"
        for path, tree in trees(BENCH)
        for module in imported(tree)
        if module == "tests" or module.startswith("tests.")
    ]
    assert found == []


def test_bench_leaves_sys_path_alone():
    assert [path for path, tree in trees(BENCH) if touches_sys_path(tree)] == []


def test_one_free_port_helper():
    found = [
        path
        for folder in (BENCH, ROOT / "tests", ROOT / "scoring")
        for path, tree in trees(folder)
        if defines(tree, "free_port") and not path.startswith("tests/test_bench_imports")
    ]
    assert found == ["scoring/testing/ports.py"]


def test_the_shared_helpers_load_no_test_extra():
    modules = sorted(
        "scoring.testing." + p.stem
        for p in (ROOT / "scoring" / "testing").glob("*.py")
        if p.stem != "__init__"
    )
    assert modules, "no scoring.testing modules found"
    code = (
        f"import sys\nfor m in {modules!r}:\n    __import__(m)\n"
        f"print(','.join(m for m in {TEST_EXTRAS!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"loaded at import: {done.stdout.strip()}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_bench_starts_as_documented(script):
    """``python -m bench.NAME --help`` from the checkout: its imports resolve, nothing else runs."""
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{script}", "--help"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout.lower()
