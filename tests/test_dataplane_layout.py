"""The shape the dataplane and the protocol declarations keep, read from the source and the app.

- No HTTP view counts rows or predicts on a model itself: every one goes through
  ``scoring.inference.dataplane`` (so an observer sees every scoring), and looks its model up
  there at most once.
- A protocol is declared once, in its adapter's module; the app, the error handlers and auth
  iterate over the declarations and name no protocol.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from scoring.api.adapters import PROTOCOLS
from scoring.api.app import create_app
from scoring.api.auth import ENDPOINT_ROLES, OPEN_ENDPOINTS

from .conftest import make_settings

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "scoring" / "api"
# Where the counter is defined; it is only ever incremented by its observer method there.
COUNTER_HOME = API / "monitoring.py"
# What predicts, explains or looks a version up, called on a model or as core functions.
MODEL_CALLS = frozenset(
    {
        "predict",
        "predict_one",
        "predict_many",
        "predict_row",
        "predict_matrix",
        "predict_proba",
        "predict_values",
        "decision_function",
        "explain",
        "model_for",
    }
)
# The modules that build the app, its error bodies and its auth: they must name no protocol.
GENERIC = ("app.py", "errors.py", "auth.py")


def _api_modules() -> list[Path]:
    return sorted(API.rglob("*.py"))


def _is_dataplane(node: ast.expr) -> bool:
    """``….dataplane`` or a name ``dataplane``: the step's own methods may be called."""
    if isinstance(node, ast.Attribute):
        return node.attr == "dataplane"
    return isinstance(node, ast.Name) and node.id == "dataplane"


def model_calls(tree: ast.AST) -> list[int]:
    """Lines that predict, explain or look a version up other than through the dataplane."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if (isinstance(func, ast.Name) and func.id in MODEL_CALLS) or (
            isinstance(func, ast.Attribute)
            and func.attr in MODEL_CALLS
            and not _is_dataplane(func.value)
        ):
            lines.append(node.lineno)
    return lines


def counter_uses(tree: ast.AST) -> list[int]:
    """Lines that reach the rows-scored counter, ``….monitoring.rows_scored`` (a bulk summary's
    own ``rows_scored`` count is not the counter)."""
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr == "rows_scored"
        and (
            (isinstance(node.value, ast.Attribute) and node.value.attr == "monitoring")
            or (isinstance(node.value, ast.Name) and node.value.id == "monitoring")
        )
    ]


def lookups_per_function(tree: ast.AST) -> dict[str, int]:
    """How many times each function calls ``dataplane.model(…)``."""
    out = {}
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef):
            out[fn.name] = sum(
                1
                for node in ast.walk(fn)
                if isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "model"
                and _is_dataplane(node.func.value)
            )
    return out


@pytest.mark.parametrize("path", _api_modules(), ids=lambda p: str(p.relative_to(API)))
def test_no_view_counts_rows_or_predicts_itself(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    assert not model_calls(tree), f"{path.name} predicts outside the dataplane"
    if path != COUNTER_HOME:
        assert not counter_uses(tree), f"{path.name} counts rows outside the dataplane"
    twice = {name: n for name, n in lookups_per_function(tree).items() if n > 1}
    assert not twice, f"{path.name} looks its model up more than once: {twice}"


def test_the_checks_see_a_view_that_counts_and_predicts():
    old = ast.parse(
        "def view():\n"
        "    model = model_for(m.versions, v)\n"
        "    s.monitoring.rows_scored.labels('predict', m.name).inc(len(X))\n"
        "    out = predict_many(model, X)\n"
        "    return model.predict_row(X), s.dataplane.predict(n, model, X, 'p'), out.rows_scored\n"
        "def twice():\n"
        "    s.dataplane.model(a)\n"
        "    s.dataplane.model(b)\n"
    )
    assert model_calls(old) == [2, 4, 5]
    assert counter_uses(old) == [3]
    assert lookups_per_function(old) == {"view": 0, "twice": 2}


# -- protocols ---------------------------------------------------------------------------------


def _declaring_modules() -> set[str]:
    """The api modules (by file name) that declare a protocol: ``PROTOCOL = Protocol(...)``."""
    out = set()
    for path in _api_modules():
        for node in ast.parse(path.read_text()).body:
            if (
                isinstance(node, ast.Assign | ast.AnnAssign)
                and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Name)
                and node.value.func.id == "Protocol"
            ):
                out.add(path.stem)
    return out


def test_each_protocol_is_declared_once_in_its_own_module():
    declaring = _declaring_modules()
    assert declaring == {"mlflow", "oip", "kserve"}
    names = [p.name for p in PROTOCOLS]
    assert len(names) == len(set(names)) == len(declaring)
    assert len({id(p.blueprint) for p in PROTOCOLS}) == len(PROTOCOLS)


def test_every_route_on_a_protocol_path_is_that_protocols(tmp_path):
    """A blueprint whose routes live under a protocol's paths is that protocol's, declared."""
    app = create_app(make_settings(tmp_path))
    by_name = {p.name: p for p in PROTOCOLS}
    assert {name: app.blueprints.get(name) for name in by_name} == {
        p.name: p.blueprint for p in PROTOCOLS
    }
    for rule in app.url_map.iter_rules():
        blueprint = rule.endpoint.partition(".")[0]
        owners = [p.name for p in PROTOCOLS if p.owns_path(rule.rule)]
        if blueprint in by_name:  # its own paths, or plain ones (MLflow's /ping, /version)
            assert owners in ([], [blueprint]), rule.rule
            protocol = by_name[blueprint]
            declared = protocol.endpoint_roles().keys() | protocol.open_endpoints()
            assert rule.endpoint in declared, f"{rule.endpoint} has no declared role"
        else:
            assert owners == [], f"{rule.rule} ({rule.endpoint}) is on a protocol's path"
    for p in PROTOCOLS:  # the declarations reach auth's one table
        assert p.endpoint_roles().items() <= ENDPOINT_ROLES.items()
        assert p.open_endpoints() <= OPEN_ENDPOINTS


def _names_protocol(path: Path, modules: set[str], names: set[str]) -> list[str]:
    """What a module says of a protocol: imports of its module, or its name in a string."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported = {node.module.rpartition(".")[2], *(a.name for a in node.names)}
            if node.module.startswith("scoring.api") and imported & modules:
                found.append(f"line {node.lineno}: imports {sorted(imported & modules)}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            head = node.value.partition(".")[0]
            if head in names:
                found.append(f"line {node.lineno}: {node.value!r}")
    return found


@pytest.mark.parametrize("name", GENERIC)
def test_app_errors_and_auth_name_no_protocol(name: str):
    modules = _declaring_modules()
    names = {p.name for p in PROTOCOLS}
    assert not _names_protocol(API / name, modules, names)


def test_the_naming_check_sees_an_import_and_an_endpoint_name(tmp_path):
    old = tmp_path / "old.py"
    old.write_text(
        "from scoring.api import health, mlflow\n"
        "from scoring.api.oip import bp\n"
        "OPEN = {'health.health', 'mlflow.ping'}\n"
        "PREFIXES = ('oip.', 'kserve.')\n"
    )
    found = _names_protocol(old, {"mlflow", "oip", "kserve"}, {"mlflow", "oip", "kserve"})
    assert sorted({f.partition(":")[0] for f in found}) == ["line 1", "line 2", "line 3", "line 4"]
