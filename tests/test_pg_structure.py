"""Where PostgreSQL and the scheduler's election live, read from the source with ``ast``.

The driver is reached by the lock module alone among the stores (the engine goes through
SQLAlchemy's URL), the server's advisory locks by the two state modules alone, and only the
leader starts or stops the scheduler: a ``serve`` that started its ``Schedule`` itself would run
it on every replica.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from .test_imports import module_names
from .test_locks import imported_modules

ROOT = Path(__file__).resolve().parents[1]


def importers(module: str) -> list[str]:
    """Name every library module that imports ``module`` (or one of its submodules)."""
    return sorted(
        name
        for name, path in module_names().items()
        if any(m == module or m.startswith(module + ".") for m in imported_modules(path))
    )


def test_the_driver_is_imported_by_the_lock_module_alone() -> None:
    # and by the test server's helper, which makes and drops the tests' databases
    assert importers("psycopg") == ["ingest.state.locks", "scoring.testing.postgres"]


def test_advisory_locks_are_taken_in_the_state_modules_alone() -> None:
    """The write lock (``db``) and the named locks (``locks``): nowhere else locks the server."""
    found = sorted(
        name for name, path in module_names().items() if "pg_advisory" in path.read_text("utf-8")
    )
    assert found == ["ingest.state.db", "ingest.state.locks"]


def schedule_calls(path: Path) -> list[str]:
    """List the ``<something schedule>.start()``/``.stop()`` calls in a source file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = ast.unparse(node.func.value)
        if node.func.attr in ("start", "stop") and owner.split(".")[-1].endswith("schedule"):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {owner}.{node.func.attr}")
    return found


def test_only_the_leader_starts_or_stops_the_scheduler() -> None:
    calls = [c for path in module_names().values() for c in schedule_calls(path)]
    assert calls and all(c.startswith("scoring/service/leader.py:") for c in calls), calls


def test_rows_are_locked_for_a_claim_only_by_next_unclaimed() -> None:
    """A claim locks its row in ``claiming()`` (``StateDB.next_unclaimed``), never inside
    ``write()``, whose schema lock would queue it behind every write of the schema."""
    found = sorted(
        name
        for name, path in module_names().items()
        if "with_for_update" in path.read_text("utf-8")
    )
    assert found == ["ingest.state.db"]


COUNT_COLUMN = re.compile(r"(^|_)(rows|size|bytes)(_|$)")


def test_sizes_and_row_counts_are_wide_integers() -> None:
    """A size or a row count may pass 2**31: declared ``WIDE_INTEGER`` (BIGINT on PostgreSQL),
    never ``Integer`` (32-bit there)."""
    narrow = []
    for name, path in module_names().items():
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Column"):
                continue
            args = node.args
            if (
                len(args) >= 2
                and isinstance(args[0], ast.Constant)
                and COUNT_COLUMN.search(str(args[0].value))
                and getattr(args[1], "id", "") == "Integer"
            ):
                narrow.append(f"{name}: {args[0].value}")
    assert narrow == []
