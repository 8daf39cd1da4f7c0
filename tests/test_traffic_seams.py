"""Who answers a request is chosen in one place, read from the source with ``ast``.

A canary applies to every protocol only if every protocol asks the dataplane
(``Dataplane.model``) which version answers: a view that took the champion itself
(``….champion.current()``, ``model_for(…)``) would never send a request to the challenger.
The traffic store is a store like the others: built by ``scoring/models/factory.py`` only
(``tests/test_store_construction.py`` lists it).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Where the champion may be taken directly: the holder itself, the core the dataplane calls,
# the dataplane, and the traffic router that makes the choice.
ALLOWED = {
    ROOT / "scoring" / "lifecycle" / "champion.py",
    ROOT / "scoring" / "inference" / "core.py",
    ROOT / "scoring" / "inference" / "dataplane.py",
    ROOT / "scoring" / "traffic" / "router.py",
}
SERVING = ("scoring/api", "scoring/bulk", "scoring/inference", "scoring/traffic")


def direct_choices(tree: ast.AST) -> list[int]:
    """Lines that take the champion (``x.champion.current()``) or call ``model_for`` directly."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        direct = isinstance(func, ast.Name) and func.id == "model_for"
        taken = (
            isinstance(func, ast.Attribute)
            and func.attr == "current"
            and isinstance(func.value, ast.Attribute)
            and func.value.attr == "champion"
        )
        if direct or taken:
            found.append(node.lineno)
    return found


def test_every_protocol_asks_the_dataplane_which_version_answers():
    found = []
    for folder in SERVING:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path in ALLOWED:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            found += [f"{path.relative_to(ROOT)}:{line}" for line in direct_choices(tree)]
    assert found == [], "ask s.dataplane.model(...) instead: the canary is chosen there"


def test_the_check_sees_a_direct_choice():
    tree = ast.parse("def view():\n    model = s.model().champion.current()\n    model_for(v)")
    assert direct_choices(tree) == [2, 3]
