"""Reload without a restart, below the processes: what a reload applies, refuses and reports.

Real settings files and real SQLite files; the processes themselves (SIGHUP to ``serve``,
``worker`` and ``api``, ``POST /admin/reload`` under load) are in ``tests/test_e2e_reload.py``.
"""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import pytest

from scoring.errors import NotFound
from scoring.models.factory import open_models
from scoring.service.reload import Reloader, ReloadRefused
from scoring.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
BASE = '[paths]\ndata_dir = "data"\n\n[server]\nport = 8100\n\n[model]\ntarget = "target"\n'
PRICE = '\n[models.price]\ntarget = "price"\nestimator = "ridge"\n'


def write(root: Path, text: str) -> Path:
    path = root / "settings.toml"
    path.write_text(text, encoding="utf-8")
    return path


def reloader_over(root: Path, text: str) -> Reloader:
    """A reloader over the models a file names, reading that file again on each reload."""
    path = write(root, text)
    settings = load_settings(path, env={})

    def reread() -> Settings:
        return load_settings(path, env={})

    return Reloader(reread, open_models(settings))


def test_a_section_added_then_removed_is_served_then_a_404(tmp_path: Path):
    reloader = reloader_over(tmp_path, BASE)
    models = reloader._models
    write(tmp_path, BASE + PRICE)
    report = reloader.reload()
    assert (report.added, report.removed, report.needs_restart) == (("price",), (), ())
    assert models.model("price").settings.model.target == "price"
    assert models.root.model_names == ("default", "price")

    write(tmp_path, BASE)
    assert reloader.reload().removed == ("price",)
    with pytest.raises(NotFound, match="default"):
        models.model("price")
    assert models.model().name == "default"


def test_an_invalid_file_is_refused_in_one_line_and_nothing_changes(tmp_path: Path):
    reloader = reloader_over(tmp_path, BASE + PRICE)
    write(tmp_path, BASE + '\n[models.price]\ntarget = "price"\nestimator = "nope"\n')
    with pytest.raises(ReloadRefused) as refused:
        reloader.reload()
    assert "nope" in str(refused.value) and "\n" not in str(refused.value)
    assert list(reloader._models) == ["default", "price"]


def test_what_cannot_change_live_is_reported_and_not_applied(tmp_path: Path):
    reloader = reloader_over(tmp_path, BASE + PRICE)
    changed = BASE.replace("8100", "8101") + PRICE.replace("ridge", "lasso")
    write(tmp_path, changed + '\n[models.churn]\ntarget = "churned"\n')
    report = reloader.reload()
    assert report.added == ("churn",)
    assert report.needs_restart == ("[server] port", "[models.price]")
    models = reloader._models
    assert models.root.server.port == 8100  # the running configuration, not the file's
    assert models.model("price").settings.model.estimator == "ridge"


def test_lookups_during_adds_and_removes_never_fail(tmp_path: Path):
    reloader = reloader_over(tmp_path, BASE)
    models, stop, errors = reloader._models, threading.Event(), []

    def look() -> None:
        while not stop.is_set():
            try:
                assert models.model("default").name == "default"
                assert "default" in list(models)
            except Exception as exc:  # any failure of a lookup is the bug
                errors.append(exc)

    readers = [threading.Thread(target=look) for _ in range(4)]
    for thread in readers:
        thread.start()
    try:
        for _ in range(8):  # 16 reloads, each racing four readers
            write(tmp_path, BASE + PRICE)
            reloader.reload()
            write(tmp_path, BASE)
            reloader.reload()
    finally:
        stop.set()
        for thread in readers:
            thread.join(timeout=30)
    assert errors == []


def test_a_service_started_without_a_file_has_nothing_to_reload(tmp_path: Path):
    from scoring.api.app import create_app

    from .conftest import make_settings

    client = create_app(make_settings(tmp_path)).test_client()
    refused = client.post("/admin/reload")
    assert refused.status_code == 422
    assert "without a settings file" in refused.get_json()["error"]["message"]


def calls_in(path: Path, function: str) -> set[str]:
    """The names called inside one function of a module (at any depth)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = next(
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == function
    )
    return {
        node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        for node in ast.walk(found)
        if isinstance(node, ast.Call)
    }


@pytest.mark.parametrize(
    "module, function",
    [
        ("scoring/service/runtime.py", "run_serve"),
        ("scoring/service/runtime.py", "run_worker"),
        ("scoring/service/front.py", "front_worker"),  # each gunicorn worker of `api`
    ],
)
def test_every_long_running_process_reloads_on_sighup(module: str, function: str):
    """Without a handler, SIGHUP's default action ends the process: a reload would kill it."""
    assert "reload_on_sighup" in calls_in(ROOT / module, function)
