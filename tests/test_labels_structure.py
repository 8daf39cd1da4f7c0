"""Realized metrics are measured by the trainer's own function, read from the source with ``ast``.

The late labels' metrics must mean what the hold-out's mean, so there is one definition:
``scoring.lifecycle.training.task_metrics``. A second module importing ``sklearn.metrics`` would
be a copy that can drift from it; this check fails on such a copy.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ingest", "scoring", "schedules")
HOME = ROOT / "scoring" / "lifecycle" / "training.py"


def metric_imports(tree: ast.AST) -> Iterator[int]:
    """Yield the line of each import of scikit-learn's metrics, in any spelling."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            if any(a.name == "sklearn.metrics" or a.name.startswith("sklearn.metrics.")
                   for a in node.names):  # fmt: skip
                yield node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module:
            whole = node.module == "sklearn" and any(a.name == "metrics" for a in node.names)
            if whole or node.module.startswith("sklearn.metrics"):
                yield node.lineno


def test_only_the_trainer_imports_the_metric_functions():
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == HOME:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            found += [f"{path.relative_to(ROOT)}:{line}" for line in metric_imports(tree)]
    assert found == [], "measure with scoring.lifecycle.training.task_metrics, not a copy"


def test_the_trainer_is_where_they_are():
    assert list(metric_imports(ast.parse(HOME.read_text(encoding="utf-8"))))


@pytest.mark.parametrize(
    ("source", "count"),
    [
        ("from sklearn import metrics as skm", 1),
        ("import sklearn.metrics", 1),
        ("def f():\n    from sklearn.metrics import r2_score", 1),
        ("from sklearn.metrics._regression import r2_score", 1),
        ("from sklearn import pipeline", 0),
        ("from scoring.lifecycle.training import task_metrics", 0),
    ],
)
def test_the_check_sees_every_spelling(source: str, count: int):
    assert len(list(metric_imports(ast.parse(source)))) == count
