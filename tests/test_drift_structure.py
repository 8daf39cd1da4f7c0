"""Drift monitoring stays numpy and scipy: no drift library, no pickle, read from the source.

Evidently pulls 79 packages, NannyML 92, alibi-detect pins numpy 1.26 (issue 20): the drift
package may import the standard library, the project, and only the numeric and storage
libraries the rest of dropscore already depends on. Profiles and reports are JSON, never pickle.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "scoring" / "monitoring"
THIRD_PARTY = {"numpy", "scipy", "pyarrow", "sqlalchemy", "pandas"}  # pandas: training frames
PROJECT = {"scoring", "ingest"}
NEVER = {"pickle", "cloudpickle", "dill", "joblib", "shelve", "marshal"}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def test_the_drift_package_imports_no_drift_library_and_no_pickle():
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) >= 5, "scoring/monitoring holds the drift core"
    allowed = THIRD_PARTY | PROJECT | set(sys.stdlib_module_names)
    for path in modules:
        imported = _imports(path)
        assert not imported & NEVER, f"{path.name} imports {imported & NEVER}"
        assert imported <= allowed, f"{path.name} imports {sorted(imported - allowed)}"


SCORERS = {"score_path", "score_lake_file", "score_remote", "score_lake_on_workers"}


def test_every_bulk_scoring_call_hands_its_batches_to_a_drift_watch():
    """A bulk path that scores without ``observe=`` records no drift (jobs and s3:// did not)."""
    calls = []
    for path in sorted((ROOT / "scoring").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in SCORERS:
                calls.append(f"{path.relative_to(ROOT)}:{node.lineno}")
                kw = {k.arg for k in node.keywords}
                assert "observe" in kw, f"{calls[-1]} calls {name} without observe="
    assert len(calls) >= 6, calls


def _calls(name: str) -> list[tuple[str, ast.Call]]:
    found = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                called = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
                if called == name:
                    found.append((f"{path.name}:{node.lineno}", node))
    return found


def test_the_drift_statistics_stay_cheap_on_large_samples():
    """A drop's report paid scipy's exact KS (its default up to 10,000 rows a side, ~20 ms a
    feature) and BLAS's dot on 10,000 values (1.5 to 20 ms a call on a loaded machine): a KS
    call names its method, and no BLAS call is made for a sum of products (issue 20's cost)."""
    for where, call in _calls("ks_2samp"):
        assert "method" in {k.arg for k in call.keywords}, f"{where}: ks_2samp without method="
    for name in ("dot", "matmul", "vdot", "inner", "einsum"):
        assert not _calls(name), f"{_calls(name)[0][0]} calls {name}: a sum of products will do"
    assert not [
        node
        for path in sorted(PACKAGE.glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult)
    ], "the @ operator calls BLAS"
