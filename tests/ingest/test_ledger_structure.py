"""The ledger's shape, read from the source: Core statements on a StateDB, behind a Protocol.

The ledger reaches its database only through ``ingest.state.db`` (no ``sqlite3``, no connection
of its own), writes SQL text only in its migration steps (``ledger_schema``), nothing else in
the library writes SQL on its ``files`` table, and ``FileLedger`` names exactly what ``Ledger``
offers, so a second backend knows what to implement.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

from ingest.state.file_ledger import FileLedger
from ingest.state.ledger import Ledger

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / "ingest" / "state"
LEDGER_MODULES = [
    "ledger.py",
    "ledger_table.py",
    "ledger_schema.py",
    "records.py",
    "file_ledger.py",
]
MIGRATIONS_MODULE = "ledger_schema.py"
_FILES_SQL = re.compile(
    r"\bSELECT\b[^;]*\bFROM\s+files\b|\b(INSERT\s+INTO|UPDATE|ALTER\s+TABLE)\s+files\b"
)


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imported(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _sql_calls(tree: ast.AST) -> list[int]:
    """Lines of calls that run SQL text: ``text(...)``, ``exec_driver_sql``, ``execute("...")``."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        literal = bool(node.args) and isinstance(node.args[0], ast.Constant | ast.JoinedStr)
        if name in {"exec_driver_sql", "executescript"} or (
            name in {"text", "execute"} and literal
        ):
            lines.append(node.lineno)
    return lines


def test_the_ledger_reaches_its_database_only_through_the_state_db() -> None:
    for name in LEDGER_MODULES:
        imported = _imported(_tree(STATE / name))
        assert not imported & {"sqlite3", "ingest.state.sqlite"}, name


def test_sql_text_is_written_only_in_the_migration_steps() -> None:
    for name in LEDGER_MODULES:
        if name != MIGRATIONS_MODULE:
            assert _sql_calls(_tree(STATE / name)) == [], name


def test_nothing_else_in_the_library_writes_sql_on_the_files_table() -> None:
    offenders = []
    for package in ("ingest", "scoring", "schedules"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == STATE / MIGRATIONS_MODULE:
                continue
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno}"
                for node in ast.walk(_tree(path))
                if isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and _FILES_SQL.search(node.value)
            ]
    assert offenders == []


def _public(cls: type) -> set[str]:
    return {
        name
        for name, value in vars(cls).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, property))
    }


def test_the_protocol_names_what_the_ledger_offers() -> None:
    offered = set()
    for cls in inspect.getmro(Ledger):
        if cls.__module__.startswith("ingest.state."):
            offered |= _public(cls)
    offered -= {"at"}  # how a SQLite ledger is opened, not what callers ask of one
    declared = _public(FileLedger) | set(FileLedger.__annotations__)
    assert declared == offered | {"data_dir", "holder"}  # attributes set in __init__
    for name in offered:
        assert inspect.signature(getattr(FileLedger, name)) == inspect.signature(
            getattr(Ledger, name)
        ), name


def test_the_checks_see_what_they_look_for() -> None:
    """The AST checks are not vacuous: they find raw SQL where the migrations keep it."""
    assert _sql_calls(_tree(STATE / MIGRATIONS_MODULE))
    assert "sqlalchemy" in _imported(_tree(STATE / "ledger.py"))
    assert _sql_calls(ast.parse('conn.execute("SELECT 1")')) == [1]
    assert _sql_calls(ast.parse("conn.execute(select(FILES))")) == []
    assert _FILES_SQL.search("SELECT * FROM files WHERE id = ?")
    assert _FILES_SQL.search("UPDATE files SET state = ?")
    assert not _FILES_SQL.search("the files table of state.db")
