"""The stores reach their database only through ``ingest.state.db``, read from the source.

``sqlite3`` is imported only where SQLite itself is set up (``ingest/state/sqlite.py``, its
pragmas, and ``ingest/state/db.py``); every other module writes SQLAlchemy Core, so a second
backend is a URL and a schema change is a numbered migration, not an edit in eight files. No
module hands SQL text to a connection either, except in migration steps: ``ingest/state/db.py``
(``add_column``, ``run_sql``) and the ledger's table rebuild in ``ingest/state/ledger_schema.py``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ingest", "scoring", "schedules")

SQLITE_HOMES = {"ingest/state/sqlite.py", "ingest/state/db.py"}
# The calls that run SQL handed to them as text.
RUNS_TEXT = {"execute", "executemany", "executescript", "exec_driver_sql"}


def library_files() -> Iterator[tuple[str, ast.Module]]:
    """Yield each library module's path (relative, with /) and its syntax tree."""
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def imports_sqlite3(tree: ast.Module) -> bool:
    """Say whether a module imports ``sqlite3`` anywhere (module level or inside a function)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(
            alias.name.split(".")[0] == "sqlite3" for alias in node.names
        ):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlite3":
            return True
    return False


def sql_text_calls(tree: ast.Module) -> list[int]:
    """Return the lines where SQL text (a literal, an f-string, or ``text()`` of one) is run."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _name(node.func) in RUNS_TEXT and node.args:
            first = node.args[0]
            if isinstance(first, ast.Call) and _name(first.func) == "text" and first.args:
                first = first.args[0]
            if _textual(first):
                found.append(node.lineno)
    return found


def _name(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _textual(node: ast.expr) -> bool:
    return isinstance(node, ast.JoinedStr) or (
        isinstance(node, ast.Constant) and isinstance(node.value, str)
    )


def test_only_the_state_database_modules_import_sqlite3():
    offenders = [
        path
        for path, tree in library_files()
        if imports_sqlite3(tree) and path not in SQLITE_HOMES
    ]
    assert offenders == [], f"use ingest.state.db (StateDB, SQLAlchemy Core) in {offenders}"


def test_no_store_hands_sql_text_to_a_connection():
    homes = {
        "ingest/state/db.py",  # the migration steps' DDL (add_column, run_sql)
        "ingest/state/sqlite.py",  # the pragmas
        "ingest/state/ledger_schema.py",  # a migration step: SQLite rebuilds a table for a CHECK
        "ingest/state/locks.py",  # PostgreSQL's advisory-lock functions, on a lock's own connection
    }
    offenders = {
        path: lines
        for path, tree in library_files()
        if path not in homes and (lines := sql_text_calls(tree))
    }
    assert offenders == {}, f"write SQLAlchemy Core statements, not SQL text: {offenders}"


def test_the_checks_see_what_they_look_for():
    """Each check flags the idioms it exists to keep out, so an empty result means something."""
    tree = ast.parse(
        "import sqlite3\n"
        "def f(conn, table):\n"
        "    conn.execute('SELECT 1')\n"
        "    conn.execute(f'DELETE FROM {table}')\n"
        "    conn.exec_driver_sql('PRAGMA x')\n"
        "    conn.execute(text('UPDATE t SET a = 1'))\n"
        "    conn.execute(select(T))\n"
        "    Column('n', Integer, server_default=text('0'))\n"  # DDL in a table: not run here
    )
    assert imports_sqlite3(tree)
    assert imports_sqlite3(ast.parse("def f():\n    from sqlite3 import Row\n"))
    assert not imports_sqlite3(ast.parse("import sqlalchemy\n"))
    assert sql_text_calls(tree) == [3, 4, 5, 6]
